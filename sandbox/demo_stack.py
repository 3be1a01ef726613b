"""Every sandbox server wired together, as `python -m sandbox` and the demo run them.

The stack is: the simulated fleet (node_exporter + process-exporter stand-in), Debian's
real Prometheus scraping it, the sandbox Loki (the fleet pushes its journal there), the
sandbox Discord (a bot, one guild, an approvals channel, three approvers and a member
without the approver role), the sandbox Slack (the same people, a bot, another bot, an
approvers user group, an approvals channel), the sandbox model behind the Anthropic Messages API (a
deterministic simulation, not Claude), and the sandbox AWX and Semaphore running the
real playbooks of `sandbox/playbooks/` against the fleet.

`SandboxStack.env()` answers the `REMEDIATION_*` variables that `remediation-blocks`
reads, so saving blocks that point at the sandbox is one command; `slack_env()` answers
the Slack block's, kept apart so that choosing Slack stays a decision of the demo.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.discord import DiscordServer, SandboxUser
from sandbox.fleet import Fleet
from sandbox.jobs import JobTemplate
from sandbox.loki import LokiServer
from sandbox.slack import SlackSandboxChannel, SlackSandboxUser, SlackServer

DEFAULT_HOSTS = ("web-01", "web-02", "db-01")

# Template ids match core.catalog.DEFAULT_CATALOG (and the demo policy's catalog).
TEMPLATES = {
    10: ("restart_unit", "restart_unit.yml"),
    11: ("free_disk", "free_disk.yml"),
    12: ("restart_process", "restart_process.yml"),
    13: ("kill_process", "kill_process.yml"),
    14: ("reboot_host", "reboot_host.yml"),
    15: ("fence_database", "fence_database.yml"),
    16: ("restart_time_sync", "restart_time_sync.yml"),
}

# Sandbox-only credentials: they guard nothing but loopback stand-ins.
BOT_TOKEN = "MTQwMDAwMDAwMDAwMDAwMDAwMQ.SndBox.sandbox-demo-bot-token-not-secret"
AWX_TOKEN = "sandbox-awx-token-not-secret"
SEMAPHORE_TOKEN = "sandbox-semaphore-token-not-secret"
SEMAPHORE_PROJECT = 1
GUILD_ID = "1400000000000000100"
CHANNEL_ID = "1400000000000000200"
APPROVER_ROLE_ID = "1400000000000000300"
SIMULATED_MODEL = "sandbox-model-simulation"


@dataclass(frozen=True)
class Person:
    name: str
    id: str
    approver: bool


PEOPLE = (
    Person("alice", "1400000000000001001", approver=True),
    Person("bob", "1400000000000001002", approver=True),
    Person("carol", "1400000000000001003", approver=True),
    Person("mallory", "1400000000000001004", approver=False),
)
BOT = SandboxUser("1400000000000000001", "remediation-bot", bot=True, token=BOT_TOKEN)

SLACK_BOT_TOKEN = "xoxb-0000000001-0000000002-sandboxdemobottokennotsecret"
SLACK_CHANNEL_ID = "C0APPROVALS"
SLACK_APPROVERS_GROUP_ID = "S0APPROVERS"
SLACK_BOT = SlackSandboxUser(
    "U0REMEDBOT", "remediation-bot", is_bot=True, bot_id="B0REMEDBOT", token=SLACK_BOT_TOKEN
)
# Another app in the workspace: its reactions must never count as votes.
SLACK_OTHER_BOT = SlackSandboxUser("U0HELPERBOT", "helper-bot", is_bot=True, bot_id="B0HELPERBOT")


def slack_user_id(person: Person) -> str:
    return f"U0{person.name.upper()}"


def slack_users() -> list[SlackSandboxUser]:
    people = [SlackSandboxUser(slack_user_id(p), p.name) for p in PEOPLE]
    return [SLACK_BOT, SLACK_OTHER_BOT, *people]


def slack_server() -> SlackServer:
    """The demo's Slack: everyone in the approvals channel, approvers in one user group."""
    approvers = [slack_user_id(p) for p in PEOPLE if p.approver]
    return SlackServer(
        slack_users(),
        channels=[SlackSandboxChannel(SLACK_CHANNEL_ID, name="remediation-approvals")],
        usergroups={SLACK_APPROVERS_GROUP_ID: approvers},
    )


def discord_users() -> list[SandboxUser]:
    people = [
        SandboxUser(p.id, p.name, roles=(APPROVER_ROLE_ID,) if p.approver else ()) for p in PEOPLE
    ]
    return [BOT, *people]


def job_templates() -> list[JobTemplate]:
    return [JobTemplate(tid, name, playbook=pb) for tid, (name, pb) in TEMPLATES.items()]


@dataclass
class SandboxStack:
    """Start with `start()`, stop with `stop()` (Prometheus by its own PID)."""

    hosts: Sequence[str] = DEFAULT_HOSTS
    scrape_interval: float = 1.0
    servers: dict[str, Any] = field(default_factory=dict)

    def start(self) -> SandboxStack:
        # Imported here: the anthropic SDK and the job servers are slow to import, and
        # `python -m sandbox --help` should answer at once.
        from sandbox.anthropic import SANDBOX_API_KEY, AnthropicServer
        from sandbox.awx import AwxServer
        from sandbox.prometheus import PrometheusServer
        from sandbox.semaphore import SemaphoreServer

        self.anthropic_key = SANDBOX_API_KEY
        try:
            loki = self._add("loki", LokiServer().start())
            fleet = self._add("fleet", Fleet(list(self.hosts), loki_url=loki.url).start())
            self._add(
                "discord",
                DiscordServer(discord_users(), guild_id=GUILD_ID, channel_ids=[CHANNEL_ID]).start(),
            )
            self._add("slack", slack_server().start())
            self._add("anthropic", AnthropicServer(api_keys=[SANDBOX_API_KEY]).start())
            for name, cls, kwargs in (
                ("awx", AwxServer, {"token": AWX_TOKEN}),
                ("semaphore", SemaphoreServer, {"token": SEMAPHORE_TOKEN}),
            ):
                templates: Any = job_templates()
                if name == "semaphore":
                    templates = {SEMAPHORE_PROJECT: templates}
                server = cls(templates, inventory=list(self.hosts), **kwargs)
                server.fleet_url = fleet.url
                self._add(name, server.start())
            self._add(
                "prometheus",
                PrometheusServer(fleet, scrape_interval=self.scrape_interval).start(),
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _add(self, name: str, server: Any) -> Any:
        self.servers[name] = server
        return server

    def __getattr__(self, name: str) -> Any:
        servers = self.__dict__.get("servers") or {}
        if name in servers:
            return servers[name]
        raise AttributeError(name)

    def stop(self) -> None:
        """Stop every server, Prometheus first (it scrapes the fleet)."""
        for name in ("prometheus", *[n for n in reversed(self.servers) if n != "prometheus"]):
            server = self.servers.pop(name, None)
            if server is not None:
                server.stop()

    def urls(self) -> dict[str, str]:
        s = self.servers
        return {
            "prometheus": s["prometheus"].url,
            "fleet": s["fleet"].url,
            "loki": s["loki"].url,
            "discord": s["discord"].api_base,
            "slack": s["slack"].api_base,
            "anthropic": s["anthropic"].url,
            "awx": s["awx"].url,
            "semaphore": s["semaphore"].url,
        }

    def env(self) -> dict[str, str]:
        """The `remediation-blocks` variables for blocks that point at this sandbox."""
        u = self.urls()
        return {
            "REMEDIATION_PROMETHEUS_URL": u["prometheus"],
            "REMEDIATION_PROMETHEUS_TIMEOUT_SECONDS": "5",
            "REMEDIATION_LOKI_URL": u["loki"],
            "REMEDIATION_LOKI_TIMEOUT_SECONDS": "5",
            "REMEDIATION_DISCORD_BOT_TOKEN": BOT_TOKEN,
            "REMEDIATION_DISCORD_APPROVALS_CHANNEL_ID": CHANNEL_ID,
            "REMEDIATION_DISCORD_GUILD_ID": GUILD_ID,
            "REMEDIATION_DISCORD_APPROVER_ROLE_IDS": APPROVER_ROLE_ID,
            "REMEDIATION_DISCORD_API_BASE_URL": u["discord"],
            "REMEDIATION_DISCORD_TIMEOUT_SECONDS": "5",
            "REMEDIATION_CLAUDE_API_KEY": self.anthropic_key,
            "REMEDIATION_CLAUDE_BASE_URL": u["anthropic"],
            "REMEDIATION_CLAUDE_MODEL": SIMULATED_MODEL,
            "REMEDIATION_CLAUDE_TIMEOUT_SECONDS": "20",
            "REMEDIATION_CLAUDE_MAX_RETRIES": "1",
            "REMEDIATION_AWX_URL": u["awx"],
            "REMEDIATION_AWX_TOKEN": AWX_TOKEN,
            "REMEDIATION_AWX_TIMEOUT_SECONDS": "5",
            "REMEDIATION_SEMAPHORE_URL": u["semaphore"],
            "REMEDIATION_SEMAPHORE_API_TOKEN": SEMAPHORE_TOKEN,
            "REMEDIATION_SEMAPHORE_PROJECT_ID": str(SEMAPHORE_PROJECT),
            "REMEDIATION_SEMAPHORE_TIMEOUT_SECONDS": "5",
        }

    def slack_env(self) -> dict[str, str]:
        """The Slack block's variables (approvers by user group, as a team would)."""
        return {
            "REMEDIATION_SLACK_BOT_TOKEN": SLACK_BOT_TOKEN,
            "REMEDIATION_SLACK_CHANNEL_ID": SLACK_CHANNEL_ID,
            "REMEDIATION_SLACK_APPROVER_USERGROUP_IDS": SLACK_APPROVERS_GROUP_ID,
            "REMEDIATION_SLACK_API_BASE_URL": self.servers["slack"].api_base,
            "REMEDIATION_SLACK_TIMEOUT_SECONDS": "5",
        }

    def describe(self) -> dict[str, Any]:
        """Everything another process needs: URLs, PIDs, people and the blocks' env."""
        prometheus = self.servers["prometheus"]
        return {
            "urls": self.urls(),
            "prometheus_pid": prometheus.pid,
            "hosts": list(self.hosts),
            "discord": {
                "channel_id": CHANNEL_ID,
                "guild_id": GUILD_ID,
                "approver_role_id": APPROVER_ROLE_ID,
                "bot": BOT.username,
                "bots": [{"id": BOT.id, "name": BOT.username}],
                "people": [{"name": p.name, "id": p.id, "approver": p.approver} for p in PEOPLE],
            },
            "slack": self.describe_slack(),
            "model": f"{SIMULATED_MODEL} (sandbox model: a simulation, not Claude)",
            "env": self.env(),
        }

    def describe_slack(self) -> dict[str, Any]:
        """The sandbox Slack's part of `describe()` (needs only the Slack server)."""
        return {
            "channel_id": SLACK_CHANNEL_ID,
            "approvers_usergroup_id": SLACK_APPROVERS_GROUP_ID,
            "bot": SLACK_BOT.name,
            "other_bot": SLACK_OTHER_BOT.name,
            "bots": [{"id": b.id, "name": b.name} for b in (SLACK_BOT, SLACK_OTHER_BOT)],
            "people": [
                {"name": p.name, "id": slack_user_id(p), "approver": p.approver} for p in PEOPLE
            ],
            "env": self.slack_env(),
        }
