"""`ledger.operations`: the remediator's operational records — the audit trail, component
heartbeats, its own alerts' states, cycles and approval capacity — plus retention (pruning
old rows) and the recent-history facts the self-metrics read.

Pruning never removes what the remediator still needs: open issue episodes, actions that
have not ended (and their requests, votes, decisions, jobs, continuations and audit rows),
cycles that still own an action, and attempts inside `keep` — the attempt window, cooldown
and relapse horizon the caller derives from the policy. Everything is deleted in one
transaction, by sub-selects (no id lists, so any number of rows works on SQLite).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from clients.ledger_base import Repository, from_ts, to_ts
from clients.ledger_schema import (
    actions,
    alert_states,
    approval_requests,
    attempts,
    audit,
    continuations,
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
ACTION_CHILDREN = (votes, decisions, approval_requests, jobs, continuations)


class OperationsRepository(Repository):
    # --- audit and heartbeats --------------------------------------------------------
    async def record_audit(
        self,
        event_name: str,
        detail: dict[str, Any],
        *,
        now: datetime,
        action_id: str | None = None,
        cycle_id: str | None = None,
    ) -> None:
        text = json.dumps(detail, default=str, sort_keys=True)
        async with self._tx("record audit", write=True) as conn:
            await conn.execute(
                insert(audit).values(
                    at=to_ts(now),
                    event=event_name,
                    action_id=action_id,
                    cycle_id=cycle_id,
                    detail=text,
                )
            )

    async def audit_trail(self, *, action_id: str | None = None) -> list[dict[str, Any]]:
        async with self._tx("read audit", write=False) as conn:
            query = select(audit).order_by(audit.c.id)
            if action_id is not None:
                query = query.where(audit.c.action_id == action_id)
            return [
                {**r._mapping, "at": from_ts(r.at), "detail": json.loads(r.detail)}
                for r in await conn.execute(query)
            ]

    async def heartbeat(self, component: str, *, now: datetime, detail: str = "") -> None:
        async with self._tx("heartbeat", write=True) as conn:
            row = await conn.execute(
                select(heartbeats.c.component).where(heartbeats.c.component == component)
            )
            if row.first() is None:
                await conn.execute(
                    insert(heartbeats).values(component=component, at=to_ts(now), detail=detail)
                )
            else:
                await conn.execute(
                    update(heartbeats)
                    .where(heartbeats.c.component == component)
                    .values(at=to_ts(now), detail=detail)
                )

    async def last_heartbeat(self, component: str) -> datetime | None:
        async with self._tx("read heartbeat", write=False) as conn:
            value = (
                await conn.execute(
                    select(heartbeats.c.at).where(heartbeats.c.component == component)
                )
            ).scalar()
            return from_ts(value)

    # --- cycles ------------------------------------------------------------------------
    async def record_cycle_start(
        self, cycle_id: str, *, flow_run_id: str | None, now: datetime
    ) -> None:
        async with self._tx("record cycle", write=True) as conn:
            exists = (
                await conn.execute(select(cycles.c.cycle_id).where(cycles.c.cycle_id == cycle_id))
            ).first()
            if exists is None:
                await conn.execute(
                    insert(cycles).values(
                        cycle_id=cycle_id,
                        flow_run_id=flow_run_id,
                        started_at=to_ts(now),
                        actions_dispatched=0,
                    )
                )

    async def record_cycle_end(
        self, cycle_id: str, *, actions_dispatched: int, report: dict[str, Any], now: datetime
    ) -> None:
        async with self._tx("record cycle end", write=True) as conn:
            await conn.execute(
                update(cycles)
                .where(cycles.c.cycle_id == cycle_id)
                .values(
                    finished_at=to_ts(now),
                    actions_dispatched=actions_dispatched,
                    report=json.dumps(report, default=str),
                )
            )

    # --- the remediator's own alerts ---------------------------------------------------
    async def set_alert_state(
        self, name: str, *, firing: bool, now: datetime, detail: str = ""
    ) -> bool:
        """Record an alert's state; True only when it changed (so each transition is
        announced exactly once, even with several components noticing at once)."""
        async with self._tx("set alert state", write=True, lock="alerts") as conn:
            row = (
                await conn.execute(select(alert_states.c.firing).where(alert_states.c.name == name))
            ).first()
            if row is None:
                if not firing:
                    return False
                await conn.execute(
                    insert(alert_states).values(
                        name=name, firing=True, changed_at=to_ts(now), detail=detail
                    )
                )
                return True
            if bool(row.firing) == firing:
                return False
            await conn.execute(
                update(alert_states)
                .where(alert_states.c.name == name)
                .values(firing=firing, changed_at=to_ts(now), detail=detail)
            )
            return True

    async def claim_cycle_summary(self, cycle_id: str, *, now: datetime) -> bool:
        """True exactly once, for the caller that finds every action of the cycle ended."""
        terminal = [s.value for s in ActionStatus if s.terminal]
        async with self._tx("claim cycle summary", write=True, lock="cycle-summary") as conn:
            row = (await conn.execute(select(cycles).where(cycles.c.cycle_id == cycle_id))).first()
            if row is None or row.summary_posted_at is not None or row.finished_at is None:
                return False
            statuses = list(
                (
                    await conn.execute(
                        select(actions.c.status).where(actions.c.cycle_id == cycle_id)
                    )
                ).scalars()
            )
            if not statuses or any(s not in terminal for s in statuses):
                return False
            await conn.execute(
                update(cycles)
                .where(cycles.c.cycle_id == cycle_id)
                .values(summary_posted_at=to_ts(now))
            )
            return True

    async def cycle_flow_run(self, cycle_id: str) -> str | None:
        async with self._tx("read cycle", write=False) as conn:
            return (
                await conn.execute(
                    select(cycles.c.flow_run_id).where(cycles.c.cycle_id == cycle_id)
                )
            ).scalar()

    async def pending_approvals(self) -> int:
        """Approval capacity in use (`Policy.max_pending_approvals`): actions awaiting a
        decision, and approved ones still waiting for their host or a job slot — each
        holds a live run (~100 MB) until its launch, and nothing else bounds those
        (`max_running_jobs` counts launched jobs). The metric `approvals_pending` counts
        only the undecided (`metric_facts`)."""
        holding = (ActionStatus.AWAITING_APPROVAL.value, ActionStatus.APPROVED.value)
        async with self._tx("count pending approvals", write=False) as conn:
            return (
                await conn.execute(
                    select(func.count()).select_from(actions).where(actions.c.status.in_(holding))
                )
            ).scalar_one()

    async def suspended_approvals(self, risks: Iterable[str]) -> int:
        """Actions awaiting a decision at the risks whose approvals wait suspended (no
        process: `Policy.max_suspended_approvals`); `pending_approvals` minus these hold
        a paused process each. Once approved, a suspended run is a live process again."""
        wanted = [str(r) for r in risks]
        if not wanted:
            return 0
        async with self._tx("count suspended approvals", write=False) as conn:
            return (
                await conn.execute(
                    select(func.count())
                    .select_from(actions)
                    .where(
                        actions.c.status == ActionStatus.AWAITING_APPROVAL.value,
                        actions.c.risk.in_(wanted),
                    )
                )
            ).scalar_one()

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
