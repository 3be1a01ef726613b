"""The eight checks, the host-down check, and their threshold rules — as data.

Every check is one PromQL query whose number does not grow with the fleet. Threshold
rules are pushed into the query (`expr > 90`), so answers scale with breaches, not hosts,
and a sustained rule ("for 5 minutes") is evaluated by Prometheus in the same query with
a subquery: `min_over_time((expr)[5m:30s]) > 90` holds only if every point in the window
breached — a 10-second spike does not.
"""

from __future__ import annotations

import re
from string import Template
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.models import CheckName, Frozen, Severity

Operator = Literal[">", ">=", "<", "<=", "=="]
DURATION = re.compile(r"^\d+(ms|s|m|h|d|w|y)$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
CONTEXT_CHECKS = ("top_cpu", "top_memory")


class ThresholdRule(Frozen):
    """When a check's value is an issue: `value <operator> threshold` (for `duration`)."""

    check: CheckName
    operator: Operator
    threshold: float
    severity: Severity
    duration: str | None = Field(
        default=None, description="PromQL duration the breach must last, e.g. '5m'."
    )
    enabled: bool = True

    @field_validator("duration")
    @classmethod
    def _promql_duration(cls, v: str | None) -> str | None:
        if v is not None and not DURATION.match(v):
            raise ValueError(f"{v!r} is not a PromQL duration like '5m'")
        return v


DEFAULT_RULES: tuple[ThresholdRule, ...] = (
    ThresholdRule(
        check=CheckName.CPU, operator=">", threshold=90, severity=Severity.WARNING, duration="5m"
    ),
    ThresholdRule(check=CheckName.MEMORY, operator="<", threshold=10, severity=Severity.CRITICAL),
    ThresholdRule(check=CheckName.DISK, operator=">", threshold=90, severity=Severity.CRITICAL),
    ThresholdRule(
        check=CheckName.IO_PRESSURE, operator=">", threshold=25, severity=Severity.WARNING
    ),
    ThresholdRule(
        check=CheckName.FAILED_UNIT, operator="==", threshold=1, severity=Severity.CRITICAL
    ),
    ThresholdRule(
        check=CheckName.INACTIVE_UNIT, operator="==", threshold=1, severity=Severity.CRITICAL
    ),
    ThresholdRule(
        check=CheckName.HOST_DOWN, operator="==", threshold=0, severity=Severity.CRITICAL
    ),
)

# The label naming the check's subject on the host (None: the host itself).
SUBJECT_LABEL: dict[str, str | None] = {
    "cpu": None,
    "memory": None,
    "disk": "mountpoint",
    "io_pressure": None,
    "failed_unit": "name",
    "inactive_unit": "name",
    "host_down": None,
    "top_cpu": "groupname",
    "top_memory": "groupname",
}

UNITS: dict[str, str] = {
    "cpu": "%",
    "memory": "% available",
    "disk": "% used",
    "io_pressure": "% of time waiting",
    "failed_unit": "",
    "inactive_unit": "",
    "host_down": "",
    "top_cpu": "cores",
    "top_memory": "bytes",
}


class DetectionSettings(Frozen):
    """How Stage 1 asks Prometheus: labels, windows, critical units, rules, overrides.

    Base-expression overrides may use `$h` for the host label, `$rate` for the rate
    window, `$fs` for the pseudo-filesystem matcher and `$units` for the critical-unit
    regex (PromQL's own braces stay as they are).
    """

    host_label: str = Field(default="instance", description="Label naming a host.")
    strip_port: bool = Field(
        default=True, description="Strip ':port' from the host label value (web-01:9100)."
    )
    up_selector: str = Field(
        default="up", description="Selector of the scrape targets whose `up` means host up."
    )
    rate_window: str = Field(default="5m", description="Window of rate() in the checks.")
    subquery_step: str = Field(
        default="30s", description="Resolution of the sustained-breach subqueries."
    )
    critical_units: tuple[str, ...] = Field(
        default=("ssh.service", "fail2ban.service", "nginx.service"),
        description="Units that are an issue when inactive.",
    )
    pseudo_fstypes: str = Field(
        default="tmpfs|devtmpfs|overlay|squashfs|ramfs|nsfs|proc|sysfs|autofs|fuse\\..*",
        description="Filesystem types excluded from the disk check (regex).",
    )
    top_n: int = Field(default=5, ge=1, le=50, description="How many top processes to keep.")
    rules: tuple[ThresholdRule, ...] = Field(default=DEFAULT_RULES)
    queries: dict[str, str] = Field(
        default_factory=dict, description="Base PromQL overrides per check name."
    )

    @field_validator("host_label")
    @classmethod
    def _label(cls, v: str) -> str:
        if not LABEL_NAME.match(v):
            raise ValueError(f"{v!r} is not a Prometheus label name")
        return v

    @field_validator("rate_window", "subquery_step")
    @classmethod
    def _duration(cls, v: str) -> str:
        if not DURATION.match(v):
            raise ValueError(f"{v!r} is not a PromQL duration like '5m'")
        return v

    @field_validator("critical_units")
    @classmethod
    def _units(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for unit in v:
            if not unit or any(c in unit for c in '"\\\n{}'):
                raise ValueError(f"{unit!r} is not a unit name")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> DetectionSettings:
        known = {c.value for c in CheckName} | set(CONTEXT_CHECKS)
        unknown = set(self.queries) - known
        if unknown:
            raise ValueError(f"queries: unknown check(s) {sorted(unknown)}")
        checks = [r.check for r in self.rules]
        dupes = {c.value for c in checks if checks.count(c) > 1}
        if dupes:
            raise ValueError(f"rules: more than one rule for {sorted(dupes)}")
        return self

    def rule(self, check: CheckName) -> ThresholdRule | None:
        for r in self.rules:
            if r.check == check and r.enabled:
                return r
        return None


def promql_string(text: str) -> str:
    """`text` as the inside of a PromQL double-quoted string (regexes need `\\.`)."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def base_queries(s: DetectionSettings) -> dict[str, str]:
    h, rate = s.host_label, s.rate_window
    fs = f'fstype!~"{promql_string(s.pseudo_fstypes)}"'
    units = promql_string("|".join(re.escape(u) for u in s.critical_units) or "^$")
    base = {
        "cpu": f'100 - avg by ({h}) (rate(node_cpu_seconds_total{{mode="idle"}}[{rate}])) * 100',
        "memory": "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes * 100",
        "disk": (
            f"100 - node_filesystem_avail_bytes{{{fs}}} / node_filesystem_size_bytes{{{fs}}} * 100"
        ),
        "io_pressure": f"rate(node_pressure_io_waiting_seconds_total[{rate}]) * 100",
        "failed_unit": 'node_systemd_unit_state{state="failed"}',
        "inactive_unit": f'node_systemd_unit_state{{state="inactive",name=~"{units}"}}',
        "host_down": s.up_selector,
        "top_cpu": (
            f"topk({s.top_n}, sum by ({h}, groupname) "
            f"(rate(namedprocess_namegroup_cpu_seconds_total[{rate}])))"
        ),
        "top_memory": (
            f"topk({s.top_n}, sum by ({h}, groupname) "
            f'(namedprocess_namegroup_memory_bytes{{memtype="resident"}}))'
        ),
    }
    for name, override in s.queries.items():
        base[name] = Template(override).safe_substitute(h=h, rate=rate, fs=fs, units=units)
    return base


def _apply_rule(expr: str, rule: ThresholdRule, step: str) -> str:
    """Push the rule into PromQL; a sustained rule keeps the window's least-breaching point."""
    if rule.duration:
        over = "min_over_time" if rule.operator in (">", ">=", "==") else "max_over_time"
        expr = f"{over}(({expr})[{rule.duration}:{step}])"
    else:
        expr = f"({expr})"
    return f"{expr} {rule.operator} {rule.threshold:g}"


def build_queries(s: DetectionSettings) -> dict[str, str]:
    """The PromQL of every check, keyed by check name (rules applied; context checks raw).

    `host_down` returns every target's `up` (not only the down ones): the set of hosts
    that are up is what lets a later cycle clear an episode.
    """
    base = base_queries(s)
    out: dict[str, str] = {}
    for check in CheckName:
        rule = s.rule(check)
        if rule is None:
            continue
        if check is CheckName.HOST_DOWN:
            out[check.value] = base[check.value]
        else:
            out[check.value] = _apply_rule(base[check.value], rule, s.subquery_step)
    for name in CONTEXT_CHECKS:
        out[name] = base[name]
    return out
