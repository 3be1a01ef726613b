"""The remediator's own metrics: built from a cycle report and ledger facts, rendered in
the Prometheus text exposition format (version 0.0.4) for node_exporter's textfile
collector or a Pushgateway, and as rows for a Prefect table artifact.

Every series is a gauge (or a summary over a window): the file is rewritten at the end
of each cycle, so `remediation_cycle_*` describe the last cycle and `remediation_recent_*`,
`remediation_approvals*`, `remediation_jobs*` and `remediation_verdicts` describe the
rolling window of `LedgerFacts.window_seconds` ending at `now`. Known label values are
always present (at 0), so an alert on a series never meets an absent one.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal, get_args

from pydantic import Field

from core.dedup import DropReason
from core.models import Frozen
from core.records import Via
from core.report import CycleOutcome, CycleReport
from core.wire import TokenUsage

PREFIX = "remediation_"
QUANTILES = (0.5, 0.9, 0.99)

# Policy rejection reasons (core.vetting's texts) folded into a small label set.
REJECTION_REASONS: tuple[tuple[str, str], ...] = (
    ("unknown_catalog_key", r"^unknown catalog key"),
    ("no_current_issue", r"has no current issue"),
    ("protected_host", r"is protected from every action"),
    ("maintenance", r"is in maintenance window"),
    ("unknown_fingerprints", r"^fingerprints not among"),
    ("does_not_address", r"does not address any of"),
    ("outside_target_scope", r"is outside the target scope"),
    ("invalid_parameters", r"^invalid parameters"),
    ("out_of_attempts", r"^out of attempts"),
    ("cooldown", r"^in cooldown"),
    ("duplicate", r"^duplicate"),
    ("cycle_limit", r"per-cycle limit"),
    ("host_limit", r"per-host limit"),
    ("approval_capacity", r"^approval capacity"),
)
DROP_REASONS = {
    DropReason.REPORTED_WITHIN_TTL.value: "reported_within_ttl",
    DropReason.ACTION_IN_FLIGHT.value: "action_in_flight",
    DropReason.CLAIMED_BY_OTHER_CYCLE.value: "claimed_by_other_cycle",
}
# Every way a decision is made but "expired" (an expired run was never decided).
APPROVAL_VIAS = tuple(v for v in get_args(Via) if v != "expired")
JOB_STATES = (
    "successful",
    "failed",
    "error",
    "canceled",
    "timeout",
    "unknown",
    "not_launched",
    "refused",
)
VERDICTS = ("effective", "ineffective", "inconclusive", "failed", "relapse", "launch_unknown")
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")
COMPONENTS = ("cycle", "listener", "watchdog")


class ApprovalFact(Frozen):
    """One decided (or expired) approval in the window."""

    outcome: Literal["approved", "rejected", "expired"]
    via: str
    latency_seconds: float | None = Field(default=None, description="Request to decision.")


class JobFact(Frozen):
    """One job that ended in the window."""

    state: str
    duration_seconds: float | None = Field(default=None, description="Launch to end.")


class LedgerFacts(Frozen):
    """What the ledger knows about the recent past (read by `Ledger.metric_facts`)."""

    window_seconds: float
    approvals: list[ApprovalFact] = Field(default_factory=list)
    pending_approvals: int = Field(
        default=0,
        description="Requests no decision was applied to yet (an approved action waiting "
        "for its host is decided: not counted).",
    )
    jobs: list[JobFact] = Field(default_factory=list)
    running_jobs: int = 0
    verdicts: dict[str, int] = Field(default_factory=dict)
    cycles: int = 0
    usage: TokenUsage = Field(default_factory=TokenUsage)
    cost_usd: float = 0.0
    heartbeats: dict[str, datetime] = Field(default_factory=dict)
    alerts: dict[str, bool] = Field(default_factory=dict)


class Sample(Frozen):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    value: float


class Family(Frozen):
    name: str
    type: Literal["gauge", "summary"]
    help: str
    samples: list[Sample]


def rejection_reason(reason: str) -> str:
    """The label for a policy rejection text ("other" when none matches)."""
    return next((label for label, rx in REJECTION_REASONS if re.search(rx, reason)), "other")


def _gauge(name: str, help_: str, values: Iterable[tuple[dict[str, str], float]]) -> Family:
    full = PREFIX + name
    return Family(
        name=full,
        type="gauge",
        help=help_,
        samples=[Sample(name=full, labels=labels, value=v) for labels, v in values],
    )


def _one(name: str, help_: str, value: float) -> Family:
    return _gauge(name, help_, [({}, value)])


def _by(label: str, known: Sequence[str], counts: Counter[str] | dict[str, int]) -> list:
    keys = list(known) + sorted(k for k in counts if k not in known)
    return [({label: k}, float(counts.get(k, 0))) for k in keys]


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (NaN for no values, as Prometheus summaries do)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _summary(name: str, help_: str, values: Sequence[float]) -> Family:
    full = PREFIX + name
    samples = [
        Sample(name=full, labels={"quantile": f"{q:g}"}, value=quantile(values, q))
        for q in QUANTILES
    ]
    samples += [
        Sample(name=full + "_sum", value=float(sum(values))),
        Sample(name=full + "_count", value=float(len(values))),
    ]
    return Family(name=full, type="summary", help=help_, samples=samples)


def _tokens(usage: TokenUsage) -> list[tuple[dict[str, str], float]]:
    values = (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_input_tokens,
        usage.cache_creation_input_tokens,
    )
    return [({"kind": k}, float(v)) for k, v in zip(TOKEN_KINDS, values, strict=True)]


def cycle_families(r: CycleReport) -> list[Family]:
    """The last cycle: issues, dedup drops, proposals and rejections, Claude, timings."""
    finished = r.finished_at or r.started_at
    rejected = Counter(rejection_reason(a.policy) for a in r.actions if a.policy != "allowed")
    dropped = Counter({DROP_REASONS.get(k, k): n for k, n in r.dropped.items()})
    return [
        _one(
            "cycle_last_run_timestamp_seconds", "When the last cycle ended.", finished.timestamp()
        ),
        _one(
            "cycle_duration_seconds",
            "Wall time of the last cycle.",
            (finished - r.started_at).total_seconds(),
        ),
        _gauge(
            "cycle_outcome",
            "1 for the outcome of the last cycle, 0 for the others.",
            [({"outcome": o.name.lower()}, float(o is r.outcome)) for o in CycleOutcome],
        ),
        _one("cycle_issues_found", "Issues detected by the last cycle.", len(r.issues)),
        _one("cycle_issues_new", "Issues the last cycle found new.", len(r.new_issues)),
        _gauge(
            "cycle_issues_dropped",
            "Issues the last cycle dropped (already reported or in flight), by reason.",
            _by("reason", list(DROP_REASONS.values()), dropped),
        ),
        _one("cycle_issues_cleared", "Issues the last cycle saw cleared.", len(r.cleared)),
        _one("cycle_check_errors", "Checks that failed in the last cycle.", len(r.check_errors)),
        _one(
            "cycle_actions_proposed", "Actions Claude proposed in the last cycle.", len(r.actions)
        ),
        _gauge(
            "cycle_actions_rejected",
            "Proposed actions policy rejected in the last cycle, by reason.",
            _by("reason", [label for label, _ in REJECTION_REASONS] + ["other"], rejected),
        ),
        _one(
            "cycle_actions_dispatched",
            "Actions the last cycle dispatched for approval.",
            sum(a.dispatched for a in r.actions),
        ),
        _one("cycle_manual_issues", "Manual issues the last cycle posted.", r.manual_issues),
        _gauge("cycle_claude_tokens", "Claude tokens of the last cycle.", _tokens(r.usage)),
        _one("cycle_claude_cost_usd", "Estimated Claude cost of the last cycle.", r.cost_usd),
        _gauge(
            "cycle_stage_seconds",
            "Seconds spent per stage in the last cycle.",
            [({"stage": k}, v) for k, v in sorted(r.stage_seconds.items())],
        ),
    ]


def window_families(f: LedgerFacts, *, now: datetime, kill_switch: bool) -> list[Family]:
    """The rolling window and current state: approvals, jobs, verdicts, cost, liveness."""
    approvals = Counter((a.outcome, a.via) for a in f.approvals)
    keys = [(o, v) for o in ("approved", "rejected") for v in APPROVAL_VIAS] + [
        ("expired", "timeout")
    ]
    keys += sorted(k for k in approvals if k not in keys)
    jobs = Counter(j.state for j in f.jobs)
    listener = f.heartbeats.get("listener")
    families = [
        _one(
            "recent_window_seconds",
            "Length of the window of the recent_* series.",
            f.window_seconds,
        ),
        _one("recent_cycles", "Cycles started in the window.", f.cycles),
        _gauge(
            "recent_claude_tokens", "Claude tokens of the cycles in the window.", _tokens(f.usage)
        ),
        _one("recent_claude_cost_usd", "Estimated Claude cost in the window.", f.cost_usd),
        _gauge(
            "approvals",
            "Approvals decided in the window, by outcome and how.",
            [({"outcome": o, "via": v}, float(approvals.get((o, v), 0))) for o, v in keys],
        ),
        _one("approvals_pending", "Actions waiting for a decision now.", f.pending_approvals),
        _summary(
            "approval_latency_seconds",
            "Request-to-decision time of approvals decided in the window.",
            [a.latency_seconds for a in f.approvals if a.latency_seconds is not None],
        ),
        _gauge(
            "jobs",
            "Jobs that ended in the window by final state; state=running: running now.",
            [*_by("state", JOB_STATES, jobs), ({"state": "running"}, float(f.running_jobs))],
        ),
        _summary(
            "job_duration_seconds",
            "Launch-to-end time of jobs that ended in the window.",
            [j.duration_seconds for j in f.jobs if j.duration_seconds is not None],
        ),
        _gauge(
            "verdicts",
            "Action outcomes recorded in the window, by verdict.",
            _by("verdict", VERDICTS, f.verdicts),
        ),
        _gauge(
            "heartbeat_timestamp_seconds",
            "Last heartbeat of each component (cycle: last completed cycle).",
            [({"component": c}, t.timestamp()) for c, t in sorted(f.heartbeats.items())],
        ),
        _gauge(
            "alert_firing",
            "1 while one of the remediator's own alerts fires.",
            [({"alert": a}, float(v)) for a, v in sorted(f.alerts.items())],
        ),
        _one("kill_switch_engaged", "1 while the operator kill switch is on.", float(kill_switch)),
    ]
    lag = math.nan if listener is None else max(0.0, (now - listener).total_seconds())
    families.append(
        _one(
            "listener_lag_seconds",
            "Seconds since the approval listener last polled (NaN: it never has).",
            lag,
        )
    )
    return families


def build_metrics(
    report: CycleReport | None, facts: LedgerFacts, *, now: datetime, kill_switch: bool
) -> list[Family]:
    """Every self-metric family (the cycle ones only when a report is given)."""
    cycle = cycle_families(report) if report is not None else []
    return cycle + window_families(facts, now=now, kill_switch=kill_switch)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def render_text(families: Sequence[Family]) -> str:
    """The Prometheus text exposition format (0.0.4), newline-terminated."""
    lines: list[str] = []
    for fam in families:
        lines.append(f"# HELP {fam.name} {_escape_help(fam.help)}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        for s in fam.samples:
            labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in s.labels.items())
            lines.append(
                f"{s.name}{{{labels}}} {_number(s.value)}"
                if labels
                else f"{s.name} {_number(s.value)}"
            )
    return "\n".join(lines) + "\n"


def table_rows(families: Sequence[Family]) -> list[dict[str, str | float | None]]:
    """One row per sample, for a Prefect table artifact (NaN shown as empty)."""
    return [
        {
            "metric": s.name,
            "labels": ",".join(f"{k}={v}" for k, v in s.labels.items()),
            "value": None if math.isnan(s.value) else round(s.value, 6),
        }
        for fam in families
        for s in fam.samples
    ]
