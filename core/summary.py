"""Closing summaries: the cycle's "Workflow Complete" summary, and the escalation of an
issue whose remediation attempts ran out (a manual issue with its history)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from core.fallback import degrades
from core.policy import Policy
from core.records import ActionRecord
from core.vetting import AttemptRecord


# --- the cycle summary ---------------------------------------------------------------
def _seconds(start: datetime | None, end: datetime | None) -> str:
    return f"{(end - start).total_seconds():.0f}" if start and end else "-"


def _decision(r: ActionRecord) -> str:
    d = r.decision
    return f"{d.decision} by {d.decider} ({d.via})" if d else "-"


def cycle_summary_rows(
    records: Sequence[ActionRecord], verdicts: Mapping[str, str]
) -> list[dict[str, str]]:
    """Per action: decision, job state, verdict and durations (seconds)."""
    rows = []
    for r in records:
        d, job, req = r.decision, r.job, r.request
        asked = req.requested_at if req else r.created_at
        decided = (d.applied_at or d.intended_at) if d else None
        rows.append(
            {
                "action": r.proposal.catalog_key,
                "host": r.proposal.host,
                "status": r.status.value,
                "decision": _decision(r),
                "job": (job.state or "-") if job else "not launched",
                "verdict": verdicts.get(r.proposal.action_id, "-"),
                "decision_seconds": _seconds(asked, decided),
                "job_seconds": _seconds(
                    job.launched_at if job else None, job.finished_at if job else None
                ),
                "total_seconds": _seconds(r.created_at, r.updated_at),
            }
        )
    return rows


@degrades("workflow-complete summary", "markdown")
def cycle_summary_markdown(cycle_id: str, rows: Sequence[Mapping[str, str]]) -> str:
    head = (
        "| action | host | status | decision | job | verdict | decided in (s) | job (s) "
        "| total (s) |\n|---|---|---|---|---|---|---|---|---|"
    )
    body = "\n".join(
        f"| `{r['action']}` | {r['host']} | {r['status']} | {r['decision']} | {r['job']} | "
        f"{r['verdict']} | {r['decision_seconds']} | {r['job_seconds']} | {r['total_seconds']} |"
        for r in rows
    )
    return f"# Cycle `{cycle_id}` complete\n\n{head}\n{body}\n"


# --- attempts exhausted --------------------------------------------------------------
class AttemptDetail(AttemptRecord):
    """One recorded attempt, with what was tried and what verification said."""

    action_id: str
    catalog_key: str
    explanation: str = ""


def exhausted(
    history: Mapping[str, Sequence[AttemptRecord]], policy: Policy, now: datetime
) -> dict[str, list[AttemptRecord]]:
    """Fingerprints out of attempts (the rule `core.vetting` applies to actions): at
    least `attempts_per_window` counted attempts in the attempt window. Each maps to its
    counted attempts."""
    window = timedelta(seconds=policy.attempt_window_seconds)
    out = {}
    for fp, records in history.items():
        counted = [r for r in records if r.counts and now - r.at < window]
        if len(counted) >= policy.attempts_per_window:
            out[fp] = counted
    return out
