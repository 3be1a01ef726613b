"""The check registry: one `CheckSpec` per check, and the threshold rules over them.

Every check is one PromQL query whose number does not grow with the fleet. Threshold
rules are pushed into the query (`expr > 90`), so answers scale with breaches, not hosts,
and a sustained rule ("for 5 minutes") is evaluated by Prometheus in the same query with
a subquery: `min_over_time((expr)[5m:30s]) > 90` holds only if every point in the window
breached — a 10-second spike does not.

`CHECKS` is the only place a check is described (as node_exporter's collectors register
themselves): `CheckName`, the default rules, the queries, detection's subjects, units,
titles and summaries, which issues get logs, how verification re-checks an issue and
which exporter metrics the sandbox fleet must export all derive from it. Adding a check
is one `CheckSpec` here (plus, to remedy it, a catalog entry in `core.catalog`).
"""

from __future__ import annotations

import re
from enum import StrEnum
from string import Template
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.base import Frozen, Severity

Operator = Literal[">", ">=", "<", "<=", "=="]
DURATION = re.compile(r"^\d+(ms|s|m|h|d|w|y)$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
CHECK_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# What a query template may name: `$h` the host label, `$rate` the rate window, `$fs` the
# pseudo-filesystem matcher, `$units` the critical-unit regex, `$up` the up selector and
# `$top_n` how many top processes (overrides in a policy get the first four).
QUERY_VARIABLES = ("h", "rate", "fs", "units", "up", "top_n")


class CheckKind(StrEnum):
    """What a check's value is, which decides how detection and verification treat it."""

    GAUGE = "gauge"  # a level: re-checked by an instant query after the job
    COUNTER = "counter"  # a rate: re-checked as a rate over exactly the time since the job
    UNIT = "unit"  # a systemd unit's state (subject: the unit): re-checked instantly
    AVAILABILITY = "availability"  # the scrape target's `up`: it alone speaks for down hosts
    CONTEXT = "context"  # no issues: context for the prompt (top processes)


class SummaryStyle(StrEnum):
    """How an issue's one-line summary reads."""

    MEASURED = "measured"  # "Disk used on /var 95.5% (> 90)"
    SUBJECT = "subject"  # "Unit failed: nginx.service"
    TITLE = "title"  # "Host down (scrape target up == 0)"


class DefaultRule(Frozen):
    """A check's threshold rule when the policy does not give one."""

    operator: Operator
    threshold: float
    severity: Severity
    duration: str | None = None


class CheckSpec(Frozen):
    """Everything the project knows about one check."""

    name: str = Field(description="The check's key: CheckName member, fingerprints, policy.")
    kind: CheckKind
    query: str = Field(description="PromQL template; `$h`, `$rate`, ... see QUERY_VARIABLES.")
    metrics: tuple[str, ...] = Field(
        default=(), description="Exporter metrics the query reads (the sandbox exports them)."
    )
    title: str = Field(default="", description="What a breach is called in summaries.")
    subject_label: str | None = Field(
        default=None, description="The label naming the subject on the host (None: the host)."
    )
    unit: str = Field(default="", description="Unit of measure of the value.")
    summary: SummaryStyle = SummaryStyle.MEASURED
    logs: bool = Field(
        default=False, description="Fetch the logs of the subject (a unit) from Loki."
    )
    rule: DefaultRule | None = Field(default=None, description="The default threshold rule.")

    @field_validator("name")
    @classmethod
    def _key(cls, v: str) -> str:
        if not CHECK_KEY.match(v):
            raise ValueError(f"{v!r}: check names are lower-case words joined by underscores")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> CheckSpec:
        issue = self.kind is not CheckKind.CONTEXT
        if issue and not self.title:
            raise ValueError(f"check {self.name!r} raises issues and needs a title")
        if not issue and self.rule is not None:
            raise ValueError(f"context check {self.name!r} cannot have a rule")
        if self.logs and self.subject_label is None:
            raise ValueError(f"check {self.name!r}: logs are read for a subject unit")
        bad = sorted(set(Template(self.query).get_identifiers()) - set(QUERY_VARIABLES))
        if bad:
            raise ValueError(f"check {self.name!r}: unknown query variable(s) {bad}")
        missing = [m for m in self.metrics if m not in self.query]
        if missing:
            raise ValueError(f"check {self.name!r}: the query does not read {missing}")
        return self

    @property
    def raises_issues(self) -> bool:
        return self.kind is not CheckKind.CONTEXT

    def summary_line(self, subject: str, value: float, operator: str, threshold: float,
                     duration: str | None) -> str:  # fmt: skip
        """The issue's one-line summary (`subject` is '-' for the host itself)."""
        if self.summary is SummaryStyle.SUBJECT:
            return f"{self.title}: {subject}"
        if self.summary is SummaryStyle.TITLE:
            return self.title
        where = f" on {subject}" if subject != "-" else ""
        sustained = f" for {duration}" if duration else ""
        unit = self.unit.split(" ")[0]
        return f"{self.title}{where} {value:.1f}{unit} ({operator} {threshold:g}{sustained})"


# --- the registry: one entry per check --------------------------------------------------
CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec(
        name="cpu",
        kind=CheckKind.COUNTER,
        query='100 - avg by ($h) (rate(node_cpu_seconds_total{mode="idle"}[$rate])) * 100',
        metrics=("node_cpu_seconds_total",),
        title="CPU used",
        unit="%",
        rule=DefaultRule(operator=">", threshold=90, severity=Severity.WARNING, duration="5m"),
    ),
    CheckSpec(
        name="memory",
        kind=CheckKind.GAUGE,
        query="node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes * 100",
        metrics=("node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes"),
        title="Memory available",
        unit="% available",
        rule=DefaultRule(operator="<", threshold=10, severity=Severity.CRITICAL),
    ),
    CheckSpec(
        name="disk",
        kind=CheckKind.GAUGE,
        query="100 - node_filesystem_avail_bytes{$fs} / node_filesystem_size_bytes{$fs} * 100",
        metrics=("node_filesystem_avail_bytes", "node_filesystem_size_bytes"),
        title="Disk used",
        subject_label="mountpoint",
        unit="% used",
        rule=DefaultRule(operator=">", threshold=90, severity=Severity.CRITICAL),
    ),
    CheckSpec(
        name="io_pressure",
        kind=CheckKind.COUNTER,
        query="rate(node_pressure_io_waiting_seconds_total[$rate]) * 100",
        metrics=("node_pressure_io_waiting_seconds_total",),
        title="I/O pressure",
        unit="% of time waiting",
        rule=DefaultRule(operator=">", threshold=25, severity=Severity.WARNING),
    ),
    CheckSpec(
        name="failed_unit",
        kind=CheckKind.UNIT,
        query='node_systemd_unit_state{state="failed"}',
        metrics=("node_systemd_unit_state",),
        title="Unit failed",
        subject_label="name",
        summary=SummaryStyle.SUBJECT,
        logs=True,
        rule=DefaultRule(operator="==", threshold=1, severity=Severity.CRITICAL),
    ),
    CheckSpec(
        name="inactive_unit",
        kind=CheckKind.UNIT,
        query='node_systemd_unit_state{state="inactive",name=~"$units"}',
        metrics=("node_systemd_unit_state",),
        title="Critical unit inactive",
        subject_label="name",
        summary=SummaryStyle.SUBJECT,
        logs=True,
        rule=DefaultRule(operator="==", threshold=1, severity=Severity.CRITICAL),
    ),
    CheckSpec(
        name="host_down",
        kind=CheckKind.AVAILABILITY,
        query="$up",
        title="Host down (scrape target up == 0)",
        summary=SummaryStyle.TITLE,
        rule=DefaultRule(operator="==", threshold=0, severity=Severity.CRITICAL),
    ),
    CheckSpec(
        name="top_cpu",
        kind=CheckKind.CONTEXT,
        query=(
            "topk($top_n, sum by ($h, groupname) "
            "(rate(namedprocess_namegroup_cpu_seconds_total[$rate])))"
        ),
        metrics=("namedprocess_namegroup_cpu_seconds_total",),
        subject_label="groupname",
        unit="cores",
    ),
    CheckSpec(
        name="top_memory",
        kind=CheckKind.CONTEXT,
        query=(
            "topk($top_n, sum by ($h, groupname) "
            '(namedprocess_namegroup_memory_bytes{memtype="resident"}))'
        ),
        metrics=("namedprocess_namegroup_memory_bytes",),
        subject_label="groupname",
        unit="bytes",
    ),
    # node_exporter's timex collector. 1 when the kernel says the clock is unsynchronised
    # (the daemon died, or lost its sources) or it is more than 50 ms off (node-mixin's
    # skew limit: TLS, Kerberos and log order start to suffer) — each signal alone misses
    # a case. Five minutes ride out a daemon that is still settling after a (re)start.
    CheckSpec(
        name="clock_sync",
        kind=CheckKind.GAUGE,
        query=(
            "clamp_max((1 - node_timex_sync_status) "
            "+ (abs(node_timex_offset_seconds) > bool 0.05), 1)"
        ),
        metrics=("node_timex_sync_status", "node_timex_offset_seconds"),
        title="Clock out of sync (unsynchronised or offset > 50 ms)",
        summary=SummaryStyle.TITLE,
        rule=DefaultRule(operator="==", threshold=1, severity=Severity.WARNING, duration="5m"),
    ),
)

SPECS: dict[str, CheckSpec] = {spec.name: spec for spec in CHECKS}
if len(SPECS) != len(CHECKS):
    raise ValueError("two checks share a name")

# The checks that can raise issues, one member per registered check (`CheckName.CPU ==
# "cpu"`), in registry order; policies, issues and catalog entries name checks with it.
CheckName = StrEnum(
    "CheckName",
    [(spec.name.upper(), spec.name) for spec in CHECKS if spec.raises_issues],
    module=__name__,
)
CheckName.__doc__ = "The checks that can raise issues (one per issue-raising CheckSpec)."
CONTEXT_CHECKS: tuple[str, ...] = tuple(s.name for s in CHECKS if not s.raises_issues)


def spec_of(check: str) -> CheckSpec:
    """The spec of a registered check (a `CheckName` or its value)."""
    return SPECS[str(check)]


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


DEFAULT_RULES: tuple[ThresholdRule, ...] = tuple(
    ThresholdRule(check=CheckName(spec.name), **spec.rule.model_dump())
    for spec in CHECKS
    if spec.rule is not None
)


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
        unknown = set(self.queries) - set(SPECS)
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
    """Every registered check's PromQL before its rule is applied, keyed by check name."""
    fs = f'fstype!~"{promql_string(s.pseudo_fstypes)}"'
    units = promql_string("|".join(re.escape(u) for u in s.critical_units) or "^$")
    values = {"h": s.host_label, "rate": s.rate_window, "fs": fs, "units": units}
    base = {
        spec.name: Template(spec.query).substitute(values, up=s.up_selector, top_n=s.top_n)
        for spec in CHECKS
    }
    for name, override in s.queries.items():
        base[name] = Template(override).safe_substitute(values)
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

    The availability check (`host_down`) returns every target's `up` (not only the down
    ones): the set of hosts that are up is what lets a later cycle clear an episode.
    """
    base = base_queries(s)
    out: dict[str, str] = {}
    for check in CheckName:
        rule = s.rule(check)
        if rule is None:
            continue
        if spec_of(check).kind is CheckKind.AVAILABILITY:
            out[check.value] = base[check.value]
        else:
            out[check.value] = _apply_rule(base[check.value], rule, s.subquery_step)
    for name in CONTEXT_CHECKS:
        out[name] = base[name]
    return out
