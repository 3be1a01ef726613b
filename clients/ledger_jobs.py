"""`ledger.jobs`: jobs (at most one launch per action), the liveness of action runs and
the reconciler's take-overs of dead ones (claims, continuations, giving up)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, and_, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from clients.ledger_base import Repository, from_ts, to_ts
from clients.ledger_schema import (
    CONTINUED,
    GAVE_UP,
    actions,
    audit,
    continuations,
    decisions,
    heartbeats,
    jobs,
)
from core.records import (
    ActionStatus,
)


def action_component(action_id: str) -> str:
    """The heartbeats row of one action's live run."""
    return f"action:{action_id}"


@dataclass(frozen=True)
class ActionLiveness:
    """What the reconciler needs to know of one action, read in one go."""

    action_id: str
    status: ActionStatus
    heartbeat_at: datetime | None  # the last sign of life of a run handling it
    heartbeat_by: str | None  # that run's id (or the reconciler that claimed it)
    launch_intent: bool  # a launch was (or was about to be) requested
    job_id: str | None
    decision: str | None  # "approve" / "reject", only once Prefect applied it
    continuations: int = 0  # dead runs of it that a fresh run continued
    gave_up: bool = False  # the reconciler stopped continuing it (`record_gave_up`)


class JobRepository(Repository):
    # --- action-run liveness (for the reconciler) -------------------------------------
    async def action_heartbeat(self, action_id: str, *, run_id: str, now: datetime) -> None:
        """A live run handling `action_id` says so (at `now`)."""
        component = action_component(action_id)
        async with self._tx("action heartbeat", write=True, lock=component) as conn:
            done = await conn.execute(
                update(heartbeats)
                .where(heartbeats.c.component == component)
                .values(at=to_ts(now), detail=run_id)
            )
            if done.rowcount == 0:
                await conn.execute(
                    insert(heartbeats).values(component=component, at=to_ts(now), detail=run_id)
                )

    async def action_liveness(self, action_ids: Iterable[str]) -> dict[str, ActionLiveness]:
        """Status, last heartbeat, launch and applied decision of each recorded action."""
        ids = sorted(set(action_ids))
        if not ids:
            return {}
        continued = (
            select(func.count())
            .select_from(continuations)
            .where(continuations.c.action_id == actions.c.action_id)
            .scalar_subquery()
        )
        async with self._tx("read action liveness", write=False) as conn:
            rows = list(
                await conn.execute(
                    select(
                        actions.c.action_id,
                        actions.c.status,
                        actions.c.gave_up_at,
                        continued.label("continuations"),
                        heartbeats.c.at,
                        heartbeats.c.detail,
                        jobs.c.intent_at,
                        jobs.c.job_id,
                        decisions.c.decision,
                        decisions.c.applied_at,
                    )
                    .select_from(actions)
                    .outerjoin(
                        heartbeats,
                        heartbeats.c.component == literal("action:", String) + actions.c.action_id,
                    )
                    .outerjoin(jobs, jobs.c.action_id == actions.c.action_id)
                    .outerjoin(decisions, decisions.c.action_id == actions.c.action_id)
                    .where(actions.c.action_id.in_(ids))
                )
            )
        return {
            r.action_id: ActionLiveness(
                action_id=r.action_id,
                status=ActionStatus(r.status),
                heartbeat_at=from_ts(r.at),
                heartbeat_by=r.detail,
                launch_intent=r.intent_at is not None,
                job_id=r.job_id,
                decision=r.decision if r.applied_at is not None else None,
                continuations=int(r.continuations or 0),
                gave_up=r.gave_up_at is not None,
            )
            for r in rows
        }

    async def claim_dead_action(
        self,
        action_id: str,
        *,
        stale_before: datetime,
        dead_runs: Sequence[str],
        claimant: str,
        now: datetime,
        reclaim_prefix: str | None = None,
        reclaim_before: datetime | None = None,
    ) -> bool:
        """Take over an action whose run died: True for the one caller whose claim lands.

        The claim is a compare-and-set on the action's heartbeat — it succeeds only if
        the last one is older than `stale_before`, was written by one of `dead_runs`
        (runs known to have crashed or failed), or is an earlier claim (its writer starts
        with `reclaim_prefix`) older than `reclaim_before` — and it writes a fresh
        heartbeat by `claimant`, so no other reconciler takes the action meanwhile.
        """
        component = action_component(action_id)
        takeable = [
            heartbeats.c.at < to_ts(stale_before),
            heartbeats.c.detail.in_(list(dead_runs) or [""]),
        ]
        if reclaim_prefix and reclaim_before is not None:
            takeable.append(
                and_(
                    heartbeats.c.detail.startswith(reclaim_prefix, autoescape=True),
                    heartbeats.c.at < to_ts(reclaim_before),
                )
            )
        async with self._tx("claim dead action", write=True, lock=component) as conn:
            row = (
                await conn.execute(select(heartbeats).where(heartbeats.c.component == component))
            ).first()
            if row is None:
                await conn.execute(
                    insert(heartbeats).values(component=component, at=to_ts(now), detail=claimant)
                )
                return True
            done = await conn.execute(
                update(heartbeats)
                .where(heartbeats.c.component == component, or_(*takeable))
                .values(at=to_ts(now), detail=claimant)
            )
            return done.rowcount == 1

    async def record_continuation(
        self, action_id: str, *, dead_run_id: str, detail: dict[str, Any], now: datetime
    ) -> bool:
        """A fresh run continues `dead_run_id`: recorded once per dead run (a
        `continuations` row, and its `reconcile_continued` audit event). True only for
        the caller that recorded it (that one announces the continuation)."""
        async with self._tx(
            "record continuation", write=True, lock=f"continue:{action_id}"
        ) as conn:
            if await _continued(conn, action_id, dead_run_id):
                return False
            await conn.execute(
                insert(continuations).values(
                    action_id=action_id, dead_run_id=dead_run_id, continued_at=to_ts(now)
                )
            )
            await conn.execute(
                insert(audit).values(
                    at=to_ts(now),
                    event=CONTINUED,
                    action_id=action_id,
                    detail=json.dumps(
                        {**detail, "dead_run_id": dead_run_id}, default=str, sort_keys=True
                    ),
                )
            )
            return True

    async def continued_from(self, action_id: str, dead_run_id: str) -> bool:
        """Whether a fresh run was already recorded continuing `dead_run_id`."""
        async with self._tx("read continuation", write=False) as conn:
            return await _continued(conn, action_id, dead_run_id)

    async def record_gave_up(
        self, action_id: str, detail: dict[str, Any], *, now: datetime
    ) -> bool:
        """The reconciler will not continue this action again (it needs a human): recorded
        once, with its `reconcile_gave_up` audit event. True for the caller that did."""
        async with self._tx("record gave up", write=True, lock=f"continue:{action_id}") as conn:
            done = await conn.execute(
                update(actions)
                .where(actions.c.action_id == action_id, actions.c.gave_up_at.is_(None))
                .values(gave_up_at=to_ts(now))
            )
            if done.rowcount != 1:
                return False
            await conn.execute(
                insert(audit).values(
                    at=to_ts(now),
                    event=GAVE_UP,
                    action_id=action_id,
                    detail=json.dumps(detail, default=str, sort_keys=True),
                )
            )
            return True

    # --- jobs: at most one launch per action ---------------------------------------------
    async def claim_launch(
        self,
        *,
        action_id: str,
        host: str,
        runner: str,
        template: str,
        marker: str,
        max_running: int,
        now: datetime,
    ) -> str:
        """Write the launch intent before the launch request, if the host is free and the
        global cap allows. Returns "claimed", "exists" (an intent or job is already
        recorded for this action: never launch again), "host_busy" or "global_cap"."""
        stale = to_ts(now - timedelta(hours=24))
        async with self._tx("claim launch", write=True, lock="launches") as conn:
            if (
                await conn.execute(select(jobs.c.action_id).where(jobs.c.action_id == action_id))
            ).first():
                return "exists"
            running = list(
                await conn.execute(
                    select(jobs.c.action_id, actions.c.host)
                    .join(actions, actions.c.action_id == jobs.c.action_id)
                    .where(jobs.c.finished_at.is_(None), jobs.c.intent_at > stale)
                )
            )
            if any(r.host == host for r in running):
                return "host_busy"
            if len(running) >= max_running:
                return "global_cap"
            await conn.execute(
                insert(jobs).values(
                    action_id=action_id,
                    runner=runner,
                    template=template,
                    marker=marker,
                    intent_at=to_ts(now),
                )
            )
            await conn.execute(
                update(actions)
                .where(actions.c.action_id == action_id)
                .values(status=ActionStatus.LAUNCHING.value, updated_at=to_ts(now))
            )
            return "claimed"

    async def record_job_launched(
        self, action_id: str, *, job_id: str, job_url: str | None, now: datetime
    ) -> None:
        async with self._tx("record job id", write=True) as conn:
            await conn.execute(
                update(jobs)
                .where(jobs.c.action_id == action_id)
                .values(job_id=job_id, job_url=job_url, launched_at=to_ts(now), state="pending")
            )
            await conn.execute(
                update(actions)
                .where(actions.c.action_id == action_id)
                .values(status=ActionStatus.RUNNING.value, updated_at=to_ts(now))
            )

    async def record_job_state(
        self,
        action_id: str,
        *,
        state: str,
        now: datetime,
        finished: bool = False,
        output_tail: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"state": state}
        if finished:
            values["finished_at"] = to_ts(now)
        if output_tail is not None:
            values["output_tail"] = output_tail
        async with self._tx("record job state", write=True) as conn:
            await conn.execute(update(jobs).where(jobs.c.action_id == action_id).values(**values))

    async def launch_count(self) -> int:
        async with self._tx("count launches", write=False) as conn:
            return (
                await conn.execute(
                    select(func.count()).select_from(jobs).where(jobs.c.job_id.is_not(None))
                )
            ).scalar_one()


async def _continued(conn: AsyncConnection, action_id: str, dead_run_id: str) -> bool:
    row = await conn.execute(
        select(continuations.c.action_id).where(
            continuations.c.action_id == action_id, continuations.c.dead_run_id == dead_run_id
        )
    )
    return row.first() is not None
