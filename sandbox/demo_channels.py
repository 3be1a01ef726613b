"""Which chat channel(s) the demo asks in (`--channel discord|slack|both`), as data.

Everything the choice changes is here: the block names the deployments and the listener
are given (`BlockNames.discord` / `.slack`), the variables and arguments
`remediation-blocks` gets, and where the simulated operator reacts when both channels
ask. Discord (the default) changes nothing: its names and variables are the defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from blocks.names import SLACK_BLOCK

CHANNELS = ("discord", "slack", "both")
TITLES = {"discord": "Discord", "slack": "Slack"}
DISCORD_VARIABLES = "REMEDIATION_DISCORD_"
# Slack-only saves every block but Discord's (naming only these keeps remediation-blocks
# from noting that the flows would need a Discord block: these flows do not).
SLACK_ONLY_KINDS = ("prometheus", "loki", "slack", "claude", "awx", "semaphore", "ledger")

# With both channels, each action is asked in both and the operator reacts in one of
# them; the other request is edited all the same. (key, host) -> the channel reacted in.
REACTS_IN_WHEN_BOTH: dict[tuple[str, str], str] = {
    ("restart_unit", "web-02"): "slack",
    ("free_disk", "db-01"): "discord",
    ("restart_unit", "db-01"): "slack",
    ("restart_process", "web-01"): "discord",
}


@dataclass(frozen=True)
class ChatChoice:
    """The chat channel(s) of one demo run."""

    name: str = "discord"

    def __post_init__(self) -> None:
        if self.name not in CHANNELS:
            raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, not {self.name!r}")

    @property
    def channels(self) -> tuple[str, ...]:
        """The registry names of the channels asked in, Discord first."""
        return ("discord", "slack") if self.name == "both" else (self.name,)

    @property
    def title(self) -> str:
        return " and ".join(TITLES[c] for c in self.channels)

    @property
    def is_default(self) -> bool:
        return self.name == "discord"

    def block_names(self) -> dict[str, str | None]:
        """The `blocks` entries that differ from the deployments' (none for Discord)."""
        if self.name == "slack":
            return {"discord": None, "slack": SLACK_BLOCK}
        if self.name == "both":
            return {"slack": SLACK_BLOCK}
        return {}

    def blocks_env(self, sandbox: dict[str, Any]) -> dict[str, str]:
        """The variables `remediation-blocks` reads: the sandbox's, with Slack's added
        and, for Slack alone, Discord's left out."""
        env = dict(sandbox["env"])
        if "slack" in self.channels:
            env.update(sandbox["slack"]["env"])
        if "discord" not in self.channels:
            env = {k: v for k, v in env.items() if not k.startswith(DISCORD_VARIABLES)}
        return env

    def blocks_args(self) -> list[str]:
        """`remediation-blocks` arguments (none for Discord: the defaults)."""
        if self.is_default:
            return []
        args = ["--blocks", json.dumps(self.block_names())]
        if "discord" not in self.channels:
            args += ["--only", ",".join(SLACK_ONLY_KINDS)]
        return args

    def reacts_in(self, key: str, host: str) -> str:
        """The channel the simulated operator reacts in for this action."""
        if self.name == "both":
            return REACTS_IN_WHEN_BOTH.get((key, host), "discord")
        return self.name
