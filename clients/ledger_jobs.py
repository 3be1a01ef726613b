"""Jobs (at most one launch per action), attempts and relapses."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, and_, func, insert, literal, or_, select, update

from clients.ledger_base import LedgerBase, from_ts, to_ts
from clients.ledger_schema import (
    actions,
    attempts,
    audit,
    decisions,
    heartbeats,
    jobs,
)
from core.records import (
    ActionStatus,
)
from core.vetting import AttemptRecord

CONTINUED = "reconcile_continued"  # the audit event of a dead run's continuation


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


class JobLedger(LedgerBase):
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
        async with self._tx("read action liveness", write=False) as conn:
            rows = list(
                await conn.execute(
                    select(
                        actions.c.action_id,
                        actions.c.status,
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
        """The `reconcile_continued` audit row of one dead run, written once: True only
        for the caller that wrote it (that one announces the continuation)."""
        async with self._tx(
            "record continuation", write=True, lock=f"continue:{action_id}"
        ) as conn:
            rows = await conn.execute(
                select(audit.c.detail).where(
                    audit.c.action_id == action_id, audit.c.event == CONTINUED
                )
            )
            if any(json.loads(d).get("dead_run_id") == dead_run_id for d in rows.scalars()):
                return False
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

    # --- attempts and capacity ---------------------------------------------------------
    async def attempt_history(
        self, fingerprints: Iterable[str], *, since: datetime
    ) -> dict[str, list[AttemptRecord]]:
        """Recorded outcomes per fingerprint since `since` (cooldown and attempt limit)."""
        fps = list(fingerprints)
        if not fps:
            return {}
        async with self._tx("read attempts", write=False) as conn:
            rows = await conn.execute(
                select(attempts)
                .where(attempts.c.fingerprint.in_(fps), attempts.c.recorded_at >= to_ts(since))
                .order_by(attempts.c.recorded_at)
            )
            out: dict[str, list[AttemptRecord]] = {}
            for r in rows:
                out.setdefault(r.fingerprint, []).append(
                    AttemptRecord(at=from_ts(r.recorded_at), outcome=r.outcome, counts=r.counts)
                )
            return out

    # --- outcomes --------------------------------------------------------------------
    async def record_attempt(
        self,
        *,
        action_id: str,
        fingerprints: Sequence[str],
        host: str,
        catalog_key: str,
        outcome: str,
        counts: bool,
        explanation: str,
        now: datetime,
    ) -> None:
        """One outcome per addressed issue (a retry of the same action records nothing new)."""
        async with self._tx("record attempt", write=True) as conn:
            known = set(
                (
                    await conn.execute(
                        select(attempts.c.fingerprint).where(attempts.c.action_id == action_id)
                    )
                ).scalars()
            )
            for fp in fingerprints:
                if fp in known:
                    continue
                await conn.execute(
                    insert(attempts).values(
                        action_id=action_id,
                        fingerprint=fp,
                        host=host,
                        catalog_key=catalog_key,
                        outcome=outcome,
                        counts=counts,
                        explanation=explanation[:2000],
                        recorded_at=to_ts(now),
                    )
                )

    async def record_relapses(
        self, fingerprints: Iterable[str], *, window: timedelta, now: datetime
    ) -> list[str]:
        """Issues back within `window` of an `effective` verdict: each such return is
        recorded as an ineffective attempt (a relapse). Returns the relapsed ones."""
        relapsed = []
        async with self._tx("record relapses", write=True) as conn:
            for fp in fingerprints:
                last = (
                    await conn.execute(
                        select(attempts)
                        .where(attempts.c.fingerprint == fp)
                        .order_by(attempts.c.recorded_at.desc())
                        .limit(1)
                    )
                ).first()
                if (
                    last is None
                    or last.outcome != "effective"
                    or to_ts(now) - last.recorded_at > window.total_seconds()
                ):
                    continue
                await conn.execute(
                    insert(attempts).values(
                        action_id=f"{last.action_id}:relapse",
                        fingerprint=fp,
                        host=last.host,
                        catalog_key=last.catalog_key,
                        outcome="relapse",
                        counts=True,
                        explanation="the issue returned after an effective verdict",
                        recorded_at=to_ts(now),
                    )
                )
                relapsed.append(fp)
        return relapsed
