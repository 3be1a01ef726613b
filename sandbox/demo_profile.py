"""What the demo does, as data: its profiles, the broken hosts, the simulated operator.

Three profiles share one story:
- `demo` (`make demo`): the declared demo policy (`sandbox/demo_policy.yaml`) as is;
- `fast` (the CI smoke test): the same with shorter deadlines, reactions and settle time;
- `manual` (`make demo DEMO_ARGS=--manual`): no simulated operator and deadlines of
  ten minutes, so a person decides every action in the Prefect UI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.policy_file import read_policy_file

POLICY_FILE = Path(__file__).with_name("demo_policy.yaml")

# The broken hosts: a failed unit, a full disk, a runaway process, and a database unit
# whose restart would not fix it (the one the operator rejects).
SCENARIO: dict[str, dict[str, Any]] = {
    "web-02": {"units": {"nginx.service": {"state": "failed"}}},
    "db-01": {
        "mounts": {"/var": {"used_pct": 96, "freeable_pct": 40}},
        "units": {"postgresql.service": {"state": "failed", "restart_fixes": False}},
    },
    "web-01": {
        "cpu_busy_pct": 96,
        "processes": {
            "java": {
                "cpu_cores": 1.8,
                "rss_bytes": 2147483648,
                "baseline_cores": 0.1,
                "baseline_rss_bytes": 536870912,
            }
        },
    },
}

# What Prometheus must show before the cycle can see each breach (raw series, not the
# rules: the rules' sustained-for windows are waited for by querying the checks).
BREACHES = {
    "failed unit nginx.service on web-02": (
        'node_systemd_unit_state{instance="web-02",name="nginx.service",state="failed"} == 1'
    ),
    "failed unit postgresql.service on db-01": (
        'node_systemd_unit_state{instance="db-01",name="postgresql.service",state="failed"} == 1'
    ),
    "/var 96% full on db-01": (
        '100 - node_filesystem_avail_bytes{instance="db-01",mountpoint="/var"}'
        ' / node_filesystem_size_bytes{instance="db-01",mountpoint="/var"} * 100 > 90'
    ),
    "java using 1.8 cores on web-01": (
        'rate(namedprocess_namegroup_cpu_seconds_total{instance="web-01",groupname="java"}[5s]) > 1'
    ),
}


@dataclass(frozen=True)
class Reaction:
    """One simulated person's reaction to one approval request."""

    user: str
    emoji: str
    after: float  # seconds after the request appears in Discord
    why: str = ""


# (catalog key, host) -> reactions. Anything not listed is left to its deadline.
OPERATOR_PLAN: dict[tuple[str, str], tuple[Reaction, ...]] = {
    ("restart_unit", "web-02"): (Reaction("alice", "✅", 3.0, "nginx restart: go"),),
    ("free_disk", "db-01"): (Reaction("bob", "✅", 4.0, "clean /var: go"),),
    ("restart_unit", "db-01"): (
        Reaction("carol", "❌", 5.0, "postgres needs a DBA, not a restart"),
    ),
    ("restart_process", "web-01"): (
        Reaction("alice", "✅", 3.0, "first of two approvers"),
        Reaction("mallory", "✅", 4.0, "not an approver: ignored"),
    ),
}


@dataclass(frozen=True)
class Profile:
    name: str
    deadlines: dict[str, int] = field(default_factory=dict)  # risk -> seconds (overrides)
    reaction_scale: float = 1.0  # multiplies every Reaction.after
    operator: bool = True
    settle_seconds: float = 5.0
    poll_seconds: float = 1.0  # listener, pause and job polls
    scrape_interval: float = 1.0
    budget_seconds: float = 170.0  # from start to summary, before giving up

    def policy(self) -> dict[str, Any]:
        """The demo policy file with this profile's deadline overrides applied."""
        data = read_policy_file(POLICY_FILE)  # the loader every command uses
        for risk, seconds in self.deadlines.items():
            data["risk"][risk]["deadline_seconds"] = seconds
        return data

    def action_settings(self, ui_url: str) -> dict[str, Any]:
        return {
            "pause_poll_seconds": min(self.poll_seconds, 2.0),
            "pause_grace_seconds": 60,
            "job_poll_seconds": self.poll_seconds,
            "settle_seconds": self.settle_seconds,
            "ui_url": ui_url,
            "deployment": "remediate-action/remediate-action",
        }


PROFILES = {
    "demo": Profile("demo"),
    "fast": Profile(
        "fast",
        deadlines={"low": 45, "medium": 45, "high": 15},
        reaction_scale=0.5,
        settle_seconds=2.0,
        budget_seconds=240.0,
    ),
    "manual": Profile(
        "manual",
        deadlines={"low": 600, "medium": 600, "high": 600},
        operator=False,
        budget_seconds=1500.0,
    ),
}
