"""Following the demo as it happens, and its summary table.

Everything here is read from where the pipeline records it: the ledger (actions,
requests, decisions and who made them, jobs, the audit trail with each verdict, the
cycle's report) and the Prefect API (flow-run states). Nothing is inferred from the
demo's own plan, so the summary shows what the system did.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from clients.ledger import Ledger
from clients.ledger_schema import cycles
from core.records import ActionRecord

FINAL_RUN_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
CHANNEL_TITLES = {"discord": "Discord", "slack": "Slack"}


@dataclass
class ActionView:
    """One action as the ledger and Prefect tell it."""

    record: ActionRecord
    verdict: str | None = None
    verdict_at: datetime | None = None
    explanation: str = ""
    run_state: str | None = None
    channel: str = "Discord"  # where approval is asked ("Slack", "Discord and Slack")
    said: set[str] = field(default_factory=set)  # the events already printed

    @property
    def p(self) -> Any:
        return self.record.proposal

    @property
    def label(self) -> str:
        return f"{self.p.catalog_key} on {self.p.host}"

    @property
    def finished(self) -> bool:
        return self.record.status.terminal and self.run_state in FINAL_RUN_STATES

    @property
    def decision_text(self) -> str:
        d = self.record.decision
        if d is None:
            return "-"
        verb = "approved" if d.decision == "approve" else "rejected"
        if d.via == "deadline":
            return f"deadline default: {'ran' if d.decision == 'approve' else 'not run'}"
        if d.via == "ui":
            return f"{verb} in the Prefect UI"
        if d.via in CHANNEL_TITLES:
            return f"{verb} by {d.decider} ({CHANNEL_TITLES[d.via]})"
        if d.via == "chat":  # several channels: each decider's name says where
            return f"{verb} by {d.decider}"
        return f"{verb} by {d.decider} ({d.via})"

    @property
    def job_text(self) -> str:
        j = self.record.job
        if j is None or j.job_id is None:
            return "-"
        return f"{j.runner} #{j.job_id}: {j.state or 'running'}"

    def events(self) -> list[tuple[str, str]]:
        """(key, text) of everything that has happened to this action so far."""
        r, out = self.record, [("proposed", f"proposed ({self.p.risk.value} risk)")]
        if r.request is not None and r.request.message_id:
            deadline = r.request.deadline.strftime("%H:%M:%S")
            out.append(("asked", f"approval requested in {self.channel} (deadline {deadline} UTC)"))
        if r.decision is not None and r.decision.applied_at is not None:
            out.append(("decided", self.decision_text))
        if r.job is not None and r.job.job_id is not None:
            out.append(("launched", f"job launched: {r.job.runner} #{r.job.job_id}"))
        if r.job is not None and r.job.finished_at is not None:
            out.append(("job-done", f"job ended: {r.job.state}"))
        if self.verdict:
            out.append(("verdict", f"verdict: {self.verdict.upper()}"))
        if r.status.terminal:
            out.append(("status", f"done: {r.status.value}"))
        return out


async def cycle_report(ledger: Ledger, cycle_id: str) -> dict[str, Any] | None:
    """The cycle's report as the cycle recorded it at its end (None before that)."""
    async with ledger._tx("read cycle", write=False) as conn:
        row = (await conn.execute(select(cycles).where(cycles.c.cycle_id == cycle_id))).first()
    if row is None or row.report is None:
        return None
    return json.loads(row.report)


async def read_views(
    ledger: Ledger, cycle_id: str, views: dict[str, ActionView], channel: str = "Discord"
) -> None:
    """Refresh `views` from the ledger (new actions added, known ones updated)."""
    for record in await ledger.actions.cycle_actions(cycle_id):
        view = views.setdefault(record.proposal.action_id, ActionView(record, channel=channel))
        view.record = record
        if view.verdict is None:
            for event in await ledger.operations.audit_trail(action_id=record.proposal.action_id):
                if event["event"] == "finished" and event["detail"].get("verdict"):
                    view.verdict = event["detail"]["verdict"]
                    view.explanation = event["detail"].get("explanation") or ""
                    view.verdict_at = event["at"]


def announce(views: dict[str, ActionView], say: Callable[[str], None]) -> None:
    """Print every event not printed before."""
    for view in views.values():
        for key, text in view.events():
            if key not in view.said:
                view.said.add(key)
                say(f"{view.label}: {text}")


def _seconds(a: datetime | None, b: datetime | None) -> str:
    if a is None or b is None:
        return "-"
    return f"{(b - a).total_seconds():.1f}"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]  # fmt: skip
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def action_rows(views: list[ActionView]) -> list[list[str]]:
    rows = []
    for v in views:
        r = v.record
        issues = "; ".join(i.summary or i.fingerprint for i in v.p.issues) or "-"
        req, dec, job = r.request, r.decision, r.job
        rows.append(
            [
                issues[:60],
                f"{v.p.catalog_key} on {v.p.host}",
                v.p.risk.value,
                v.decision_text,
                v.job_text,
                v.verdict or ("not run" if r.status.value == "rejected" else r.status.value),
                _seconds(req.requested_at if req else None, dec.applied_at if dec else None),
                _seconds(job.launched_at if job else None, job.finished_at if job else None),
                _seconds(job.finished_at if job else None, v.verdict_at),
            ]
        )
    return rows


ACTION_HEADERS = [
    "issue",
    "action",
    "risk",
    "decision (who)",
    "job",
    "verdict",
    "ask→decide s",
    "job s",
    "verify s",
]


def summary_text(
    views: list[ActionView],
    stages: list[tuple[str, float]],
    cycle: dict[str, Any] | None,
    links: list[tuple[str, str]],
    chat: list[str] | None = None,
) -> str:
    """The table of actions, the cycle, the stages, what was posted in chat (when the
    demo asks in Slack; None for Discord alone) and the UI links."""
    parts = ["SUMMARY", "", _table(ACTION_HEADERS, action_rows(views)), ""]
    if cycle:
        new = cycle.get("new_issues") or []
        parts.append(
            f"cycle: {cycle.get('outcome')} — {len(new)} new issue(s), "
            f"{len(views)} action(s), {cycle.get('manual_issues', 0)} manual issue(s); "
            "model: " + str(cycle.get("model") or "-")
        )
        inner = cycle.get("stage_seconds") or {}
        if inner:
            parts.append("cycle stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in inner.items()))
        parts.append("")
    parts.append(_table(["stage", "seconds"], [[n, f"{s:.1f}"] for n, s in stages]))
    if chat:
        parts += ["", *chat]
    parts += ["", "Prefect UI (V2):"] + [f"  {name}: {url}" for name, url in links]
    return "\n".join(parts)


@dataclass
class DemoResult:
    views: list[ActionView]
    stages: list[tuple[str, float]]
    cycle: dict[str, Any] | None
    links: list[tuple[str, str]]
    summary: str
    chat: list[str] = field(default_factory=list)
    stopped_pids: list[int] = field(default_factory=list)

    def count(self, test: Callable[[ActionView], bool]) -> int:
        return sum(1 for v in self.views if test(v))

    @property
    def effective(self) -> int:
        return self.count(lambda v: v.verdict == "effective")

    @property
    def rejected(self) -> int:
        return self.count(
            lambda v: (
                v.record.decision is not None
                and v.record.decision.decision == "reject"
                and v.record.decision.via != "deadline"
            )
        )

    @property
    def deadline_defaults(self) -> int:
        return self.count(lambda v: v.record.decision is not None
                          and v.record.decision.via == "deadline")  # fmt: skip

    def shows_the_whole_story(self) -> bool:
        return self.effective >= 1 and self.rejected >= 1 and self.deadline_defaults >= 1
