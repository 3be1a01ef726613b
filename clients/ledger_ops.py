"""Audit trail, heartbeats, alert states, cycles and capacity."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update

from clients.ledger_base import LedgerBase, from_ts, to_ts
from clients.ledger_schema import (
    actions,
    alert_states,
    audit,
    cycles,
    heartbeats,
)
from core.records import (
    ActionStatus,
)


class OpsLedger(LedgerBase):
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
        async with self._tx("record audit", write=True) as conn:
            await conn.execute(
                insert(audit).values(
                    at=to_ts(now),
                    event=event_name,
                    action_id=action_id,
                    cycle_id=cycle_id,
                    detail=json.dumps(detail, default=str, sort_keys=True),
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
