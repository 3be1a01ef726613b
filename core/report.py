"""The cycle report: what one cycle found, dropped, asked, decided and dispatched."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from core.fallback import degrades
from core.models import Frozen, Issue
from core.params import code_span, parameters_json
from core.wire import TokenUsage


class CycleOutcome(StrEnum):
    """Where the cycle ended on the seed chart."""

    NO_ISSUES = "no issues"
    ALL_CACHED = "issues found, all already reported or in flight"
    NO_ACTION_NEEDED = "no action needed"
    MANUAL_ONLY = "manual issues only"
    ACTIONS = "actions dispatched"
    ANALYSIS_UNAVAILABLE = "analysis unavailable: issues posted as manual"
    PROMETHEUS_UNREACHABLE = "Prometheus unreachable"
    PAUSED_BY_OPERATOR = "paused by operator"


class ActionOutcome(Frozen):
    """One proposed action and what policy and dispatch made of it."""

    catalog_key: str
    host: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    risk: str
    policy: str = Field(description="'allowed' or the rejection reason")
    action_id: str | None = None
    dispatched: bool = False
    dispatch_error: str | None = None
    flow_run_id: str | None = None


class CycleReport(Frozen):
    cycle_id: str
    started_at: datetime
    finished_at: datetime | None = None
    outcome: CycleOutcome
    issues: list[Issue] = Field(default_factory=list)
    new_issues: list[str] = Field(default_factory=list)
    dropped: dict[str, int] = Field(default_factory=dict)
    cleared: list[str] = Field(default_factory=list)
    check_errors: dict[str, str] = Field(default_factory=dict)
    log_status: str = "not_needed"
    analysis_summary: str = ""
    analysis_notes: list[str] = Field(default_factory=list)
    issues_omitted_from_prompt: int = 0
    actions: list[ActionOutcome] = Field(default_factory=list)
    manual_issues: int = 0
    coverage: dict[str, str] = Field(
        default_factory=dict, description="Each analysed issue: what accounted for it."
    )
    notices: list[str] = Field(default_factory=list, description="Degradations, visibly.")
    reported: list[str] = Field(default_factory=list)
    usage: TokenUsage = Field(default_factory=TokenUsage)
    cost_usd: float = 0.0
    model: str = ""
    stage_seconds: dict[str, float] = Field(default_factory=dict)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


@degrades("cycle report", "markdown")
def cycle_markdown(r: CycleReport) -> str:
    """The cycle report as Markdown (a Prefect artifact)."""
    lines = [
        f"# Remediation cycle `{r.cycle_id}`",
        "",
        f"**Outcome:** {r.outcome.value}  ",
        f"**Started:** {r.started_at.isoformat()}  ",
        f"**Issues detected:** {len(r.issues)} · **new:** {len(r.new_issues)} · "
        f"**cleared:** {len(r.cleared)}",
    ]
    if r.dropped:
        lines += ["", "## Dropped (dedup)", ""]
        lines += [f"- {reason}: {n}" for reason, n in sorted(r.dropped.items())]
    if r.check_errors:
        lines += ["", "## Checks that failed", ""]
        lines += [f"- `{c}`: {_cell(e)}" for c, e in sorted(r.check_errors.items())]
    if r.notices:
        lines += ["", "## Notices", ""] + [f"- {_cell(n)}" for n in r.notices]
    if r.analysis_summary or r.analysis_notes:
        lines += ["", "## Analysis", "", _cell(r.analysis_summary) or "(no summary)"]
        lines += [f"- repaired: {_cell(n)}" for n in r.analysis_notes]
        if r.issues_omitted_from_prompt:
            lines.append(
                f"- {r.issues_omitted_from_prompt} issues left out of the prompt (token budget)"
            )
    if r.actions:
        lines += [
            "",
            "## Proposed actions",
            "",
            "| action | host | parameters | risk | policy | dispatched |",
            "|---|---|---|---|---|---|",
        ]
        for a in r.actions:
            dispatched = "yes" if a.dispatched else (a.dispatch_error or "no")
            lines.append(
                f"| `{a.catalog_key}` | {_cell(a.host)} | "
                f"{_cell(code_span(parameters_json(a.parameters), 20000))} | "
                f"{a.risk} | {_cell(a.policy)} | {_cell(dispatched)} |"
            )
    if r.coverage:
        lines += ["", "## Issues accounted for", "", "| issue | covered by |", "|---|---|"]
        lines += [f"| `{_cell(fp)}` | {_cell(how)} |" for fp, how in r.coverage.items()]
    lines += [
        "",
        "## Claude usage",
        "",
        f"- model: `{r.model or '-'}`",
        f"- input {r.usage.input_tokens}, output {r.usage.output_tokens}, "
        f"cache read {r.usage.cache_read_input_tokens}, "
        f"cache write {r.usage.cache_creation_input_tokens}",
        f"- estimated cost: ${r.cost_usd:.4f}",
    ]
    if r.stage_seconds:
        lines += ["", "## Timings", ""]
        lines += [f"- {k}: {v:.2f} s" for k, v in r.stage_seconds.items()]
    return "\n".join(lines) + "\n"


def issue_rows(issues: list[Issue], new: set[str]) -> list[dict[str, Any]]:
    return [
        {
            "fingerprint": i.fingerprint,
            "host": i.host,
            "check": i.check.value,
            "subject": i.subject,
            "severity": i.severity.value,
            "value": None if i.value is None else round(i.value, 3),
            "threshold": i.threshold,
            "new": i.fingerprint in new,
        }
        for i in issues
    ]
