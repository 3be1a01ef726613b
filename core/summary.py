"""The cycle's closing summary (the chart's "Workflow Complete")."""

from __future__ import annotations

from collections.abc import Sequence

from core.records import ActionRecord
from core.wire import Embed, EmbedField

BLUE = 0x3498DB


def _line(r: ActionRecord) -> str:
    d = r.decision
    decided = f"{d.decision} by {d.decider} ({d.via})" if d else r.status.value
    job = f"{r.job.state or '-'}" if r.job else "not launched"
    duration = ""
    if r.job and r.job.launched_at and r.job.finished_at:
        duration = f", {(r.job.finished_at - r.job.launched_at).total_seconds():.0f} s"
    return f"{decided}; job {job}{duration}"


def cycle_summary_rows(
    records: Sequence[ActionRecord], verdicts: dict[str, str]
) -> list[dict[str, str]]:
    return [
        {
            "action": r.proposal.catalog_key,
            "host": r.proposal.host,
            "status": r.status.value,
            "decision": (
                f"{r.decision.decision} by {r.decision.decider} ({r.decision.via})"
                if r.decision
                else "-"
            ),
            "job": (r.job.state or "-") if r.job else "not launched",
            "verdict": verdicts.get(r.proposal.action_id, "-"),
            "total_seconds": f"{(r.updated_at - r.created_at).total_seconds():.0f}",
        }
        for r in records
    ]


def cycle_summary_embed(
    cycle_id: str, records: Sequence[ActionRecord], verdicts: dict[str, str]
) -> Embed:
    fields = [
        EmbedField(
            name=f"{r.proposal.catalog_key} on {r.proposal.host}"[:256],
            value=f"{_line(r)}; verdict {verdicts.get(r.proposal.action_id, '-')}"[:1024],
        )
        for r in records[:25]
    ]
    return Embed(
        title=f"✅ Workflow complete: {len(records)} action(s) of this cycle ended",
        color=BLUE,
        fields=fields,
        footer=f"cycle {cycle_id}",
    )


def cycle_summary_markdown(cycle_id: str, rows: list[dict[str, str]]) -> str:
    head = (
        "| action | host | status | decision | job | verdict | seconds |\n"
        "|---|---|---|---|---|---|---|"
    )
    body = "\n".join(
        f"| `{r['action']}` | {r['host']} | {r['status']} | {r['decision']} | {r['job']} | "
        f"{r['verdict']} | {r['total_seconds']} |"
        for r in rows
    )
    return f"# Cycle `{cycle_id}` complete\n\n{head}\n{body}\n"
