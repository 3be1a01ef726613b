"""Retention (pruning old rows) and the recent-history facts the self-metrics read.

Pruning never removes what the remediator still needs: open issue episodes, actions that
have not ended (and their requests, votes, decisions, jobs and audit rows), cycles that
still own an action, and attempts inside `keep` — the attempt window, cooldown and
relapse horizon the caller derives from the policy. Everything is deleted in one
transaction, by sub-selects (no id lists, so any number of rows works on SQLite).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from clients.ledger_base import LedgerBase, from_ts, to_ts
from clients.ledger_schema import (
    actions,
    alert_states,
    approval_requests,
    attempts,
    audit,
    cycles,
    decisions,
    heartbeats,
    issue_episodes,
    jobs,
    votes,
)
from core.cost import add_usage
from core.records import ActionStatus
from core.selfmetrics import ApprovalFact, JobFact, LedgerFacts
from core.wire import TokenUsage

TERMINAL = [s.value for s in ActionStatus if s.terminal]
# Deleted children first, so no row ever points at a deleted action.
ACTION_CHILDREN = (votes, decisions, approval_requests, jobs)


class RetentionLedger(LedgerBase):
    # --- retention -----------------------------------------------------------------------
    async def prune(
        self, *, older_than: timedelta, now: datetime, keep: timedelta = timedelta(0)
    ) -> dict[str, int]:
        """Delete rows older than `max(older_than, keep)`; returns rows deleted per table."""
        cutoff = to_ts(now - max(older_than, keep))
        done: dict[str, int] = {}
        async with self._tx("prune", write=True) as conn:
            old_actions = select(actions.c.action_id).where(
                actions.c.status.in_(TERMINAL), actions.c.updated_at < cutoff
            )
            for table in ACTION_CHILDREN:
                done[table.name] = await _delete(
                    conn, delete(table).where(table.c.action_id.in_(old_actions))
                )
            done["actions"] = await _delete(
                conn,
                delete(actions).where(
                    actions.c.status.in_(TERMINAL), actions.c.updated_at < cutoff
                ),
            )
            kept_ids = select(actions.c.action_id)
            done["audit"] = await _delete(
                conn,
                delete(audit).where(
                    audit.c.at < cutoff,
                    audit.c.action_id.is_(None) | audit.c.action_id.not_in(kept_ids),
                ),
            )
            done["attempts"] = await _delete(
                conn, delete(attempts).where(attempts.c.recorded_at < cutoff)
            )
            done["issue_episodes"] = await _delete(
                conn,
                delete(issue_episodes).where(
                    issue_episodes.c.closed_at.is_not(None), issue_episodes.c.closed_at < cutoff
                ),
            )
            done["cycles"] = await _delete(
                conn,
                delete(cycles).where(
                    cycles.c.started_at < cutoff,
                    cycles.c.cycle_id.not_in(select(actions.c.cycle_id)),
                ),
            )
        return done

    async def row_counts(self) -> dict[str, int]:
        """Rows per table (for the prune report and tests)."""
        tables = (*ACTION_CHILDREN, actions, audit, attempts, issue_episodes, cycles)
        async with self._tx("count rows", write=False) as conn:
            return {
                t.name: (await conn.execute(select(func.count()).select_from(t))).scalar_one()
                for t in tables
            }

    # --- facts for the self-metrics and the dead-man's switch --------------------------------
    async def heartbeat_detail(self, component: str) -> tuple[datetime, str] | None:
        """A component's last heartbeat and the detail it recorded with it."""
        async with self._tx("read heartbeat", write=False) as conn:
            row = (
                await conn.execute(
                    select(heartbeats.c.at, heartbeats.c.detail).where(
                        heartbeats.c.component == component
                    )
                )
            ).first()
        return None if row is None else (from_ts(row.at), row.detail or "")

    async def alert_state(self, name: str) -> tuple[bool, datetime] | None:
        """Whether one of the remediator's own alerts fires, and since when."""
        async with self._tx("read alert state", write=False) as conn:
            row = (
                await conn.execute(
                    select(alert_states.c.firing, alert_states.c.changed_at).where(
                        alert_states.c.name == name
                    )
                )
            ).first()
        return None if row is None else (bool(row.firing), from_ts(row.changed_at))

    async def metric_facts(self, *, now: datetime, window: timedelta) -> LedgerFacts:
        """Approvals, jobs, verdicts, cycles and Claude usage of the window ending `now`,
        plus pending approvals, running jobs, heartbeats and alert states now."""
        since = to_ts(now - window)
        async with self._tx("read metric facts", write=False) as conn:
            approvals = await _approvals(conn, since)
            job_rows = await conn.execute(
                select(jobs.c.state, jobs.c.launched_at, jobs.c.finished_at).where(
                    jobs.c.finished_at >= since
                )
            )
            job_facts = [
                JobFact(
                    state=r.state or "unknown",
                    duration_seconds=(r.finished_at - r.launched_at) if r.launched_at else None,
                )
                for r in job_rows
            ]
            running = await _count(
                conn, select(func.count()).select_from(jobs).where(jobs.c.finished_at.is_(None))
            )
            # Undecided requests only: `approved` (waiting for its host) is decided.
            pending = await _count(
                conn,
                select(func.count())
                .select_from(actions)
                .where(actions.c.status == ActionStatus.AWAITING_APPROVAL.value),
            )
            verdict_rows = await conn.execute(
                select(attempts.c.outcome, func.count(func.distinct(attempts.c.action_id)))
                .where(attempts.c.recorded_at >= since)
                .group_by(attempts.c.outcome)
            )
            verdicts = {outcome: n for outcome, n in verdict_rows}
            reports = list(
                (
                    await conn.execute(select(cycles.c.report).where(cycles.c.started_at >= since))
                ).scalars()
            )
            beats = {r.component: from_ts(r.at) for r in await conn.execute(select(heartbeats))}
            alerts = {
                r.name: bool(r.firing)
                for r in await conn.execute(select(alert_states.c.name, alert_states.c.firing))
            }
        usage, cost = TokenUsage(), 0.0
        for raw in reports:
            data = json.loads(raw) if raw else {}
            usage = add_usage(usage, TokenUsage.model_validate(data.get("usage") or {}))
            cost += float(data.get("cost_usd") or 0.0)
        return LedgerFacts(
            window_seconds=window.total_seconds(),
            approvals=approvals,
            pending_approvals=pending,
            jobs=job_facts,
            running_jobs=running,
            verdicts=verdicts,
            cycles=len(reports),
            usage=usage,
            cost_usd=cost,
            heartbeats=beats,
            alerts=alerts,
        )


async def _delete(conn: AsyncConnection, statement: object) -> int:
    return max((await conn.execute(statement)).rowcount or 0, 0)


async def _count(conn: AsyncConnection, statement: object) -> int:
    return int((await conn.execute(statement)).scalar_one())


async def _approvals(conn: AsyncConnection, since: float) -> list[ApprovalFact]:
    """Applied decisions in the window (latency from the request), and expiries."""
    rows = await conn.execute(
        select(decisions.c.decision, decisions.c.via, decisions.c.applied_at,
               approval_requests.c.requested_at)
        .select_from(decisions.outerjoin(
            approval_requests, approval_requests.c.action_id == decisions.c.action_id))
        .where(decisions.c.applied_at >= since)
    )  # fmt: skip
    facts = [
        ApprovalFact(
            outcome="approved" if r.decision == "approve" else "rejected",
            via=r.via,
            latency_seconds=(
                max(0.0, r.applied_at - r.requested_at) if r.requested_at is not None else None
            ),
        )
        for r in rows
    ]
    expired = await _count(
        conn,
        select(func.count())
        .select_from(actions)
        .where(actions.c.status == ActionStatus.EXPIRED.value, actions.c.updated_at >= since),
    )
    return facts + [ApprovalFact(outcome="expired", via="timeout")] * expired
