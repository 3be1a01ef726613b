"""Which saved block documents a flow uses (flow parameters carry names, never secrets)."""

from __future__ import annotations

from typing import TypeVar

from prefect.blocks.core import Block
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.errors import ConfigError

B = TypeVar("B", bound=Block)
# What `remediation-blocks` saves the Slack block as when no name is given (Slack is
# opt-in: flows use it once their `blocks.slack` names it).
SLACK_BLOCK = "remediation-slack"
# The fields naming a chat channel's block (`channels.registry` builds each adapter).
CHAT_FIELDS = ("discord", "slack")


class BlockNames(BaseModel):
    """Names of the block documents to load (see `remediation-blocks --help`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prometheus: str = Field(default="remediation-prometheus", description="PrometheusConnection")
    loki: str = Field(default="remediation-loki", description="LokiConnection")
    discord: str | None = Field(
        default="remediation-discord", description="DiscordBot (None: not asked in Discord)"
    )
    slack: str | None = Field(
        default=None,
        description=f"SlackBot (opt-in: name it, e.g. {SLACK_BLOCK!r}, to ask in Slack too)",
    )
    claude: str = Field(default="remediation-claude", description="ClaudeCredentials")
    awx: str | None = Field(default="remediation-awx", description="AwxConnection (optional)")
    semaphore: str | None = Field(
        default="remediation-semaphore", description="SemaphoreConnection (optional)"
    )
    ledger: str = Field(default="remediation-ledger", description="LedgerDatabase")
    policy: str | None = Field(
        default=None,
        description="RemediationPolicy (`remediation-policy apply`); None: the `policy` "
        "parameter, or the built-in defaults when that is empty too",
    )

    @model_validator(mode="after")
    def _names_a_chat_channel(self) -> BlockNames:
        # Every flow asks or reports in chat: with no channel it could not say anything.
        # A ConfigError (not a ValueError) is not wrapped by pydantic, so a run with such
        # parameters fails at its start naming the fields.
        if all(getattr(self, f) is None for f in CHAT_FIELDS):
            raise ConfigError(
                "blocks.discord/blocks.slack",
                "no chat channel is named: set blocks.discord or blocks.slack (or both)",
            )
        return self


async def load_block(cls: type[B], name: str, field: str) -> B:
    """Load a saved block; a missing or invalid one is a ConfigError naming the field."""
    try:
        return await cls.aload(name)
    except ValueError as exc:
        raise ConfigError(f"blocks.{field}", f"cannot load {cls.__name__} {name!r}: {exc}") from exc
    except RuntimeError as exc:  # failed validation of a stored document
        raise ConfigError(f"blocks.{field}", f"{cls.__name__} {name!r}: {exc}") from exc
