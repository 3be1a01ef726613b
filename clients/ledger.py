"""The ledger: dedup episodes, actions, decisions, jobs, attempts and the audit trail.

One small SQL database behind SQLAlchemy (async): a SQLite file by default (WAL mode, a
busy timeout, `BEGIN IMMEDIATE` for writes that must not race), PostgreSQL by URL when
workers run on several machines (an advisory transaction lock serialises the same
critical sections). Unique constraints carry every "at most once": one open episode per
fingerprint, one decision per action, one job per action.

The schema is created and migrated on first use (`clients/ledger_schema.py`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from sqlalchemy import event, func, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from clients.errors import LedgerError
from clients.ledger_schema import (
    MIGRATIONS,
    Migration,
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
    metadata,
    schema_version,
    votes,
)
from core import dedup
from core.models import Issue, Risk
from core.records import (
    ActionRecord,
    ActionStatus,
    ApprovalRequest,
    Decision,
    JobRecord,
    Vote,
)
from core.vetting import AttemptRecord, ProposedAction

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Statuses of an action that is still being handled (its issues are "in flight").
IN_FLIGHT_STATUSES = (
    "proposed",
    "awaiting_approval",
    "approved",
    "launching",
    "running",
    "verifying",
)


def to_ts(value: datetime) -> float:
    return value.timestamp()


def from_ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Ledger:
    """Async access to the ledger database. Build it with the URL; it connects lazily."""

    def __init__(
        self,
        url: str,
        *,
        migrations: Sequence[Migration] = MIGRATIONS,
        echo: bool = False,
    ) -> None:
        self._url = make_url(url)
        self.dialect = self._url.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise LedgerError("connect", f"unsupported database {self.dialect!r}")
        self._migrations = list(migrations)
        self._engine: AsyncEngine | None = None
        self._echo = echo
        self._ready = False

    # --- connection ------------------------------------------------------------------
    def _make_engine(self) -> AsyncEngine:
        if self.dialect == "sqlite":
            engine = create_async_engine(
                self._url, echo=self._echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
            )
            self._configure_sqlite(engine)
            return engine
        return create_async_engine(self._url, echo=self._echo, pool_pre_ping=True)

    @staticmethod
    def _configure_sqlite(engine: AsyncEngine) -> None:
        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # We emit BEGIN ourselves (below), so pysqlite must not.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            # Writers take the write lock up front so two processes cannot both read
            # "not yet claimed" and then both write.
            immediate = conn.get_execution_options().get("ledger_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = self._make_engine()
        return self._engine

    async def aclose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
            self._ready = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @asynccontextmanager
    async def _tx(
        self, operation: str, *, write: bool, lock: str = "ledger", migrate: bool = True
    ) -> AsyncIterator[AsyncConnection]:
        """A transaction; `write=True` takes the ledger's write lock for its duration."""
        if migrate:
            await self.ensure_schema()
        try:
            async with self.engine.connect() as conn:
                if write and self.dialect == "sqlite":
                    conn = await conn.execution_options(ledger_write=True)
                async with conn.begin():
                    if write and self.dialect == "postgresql":
                        await conn.execute(
                            text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(lock)}
                        )
                    yield conn
        except (SQLAlchemyError, OSError) as exc:
            raise LedgerError(
                operation, f"{type(exc).__name__}: {exc}".splitlines()[0], secrets=self._secrets()
            ) from exc

    def _secrets(self) -> list[str]:
        return [self._url.password] if self._url.password else []

    # --- schema ----------------------------------------------------------------------
    async def ensure_schema(self) -> int:
        """Create or migrate the schema (once per Ledger); returns the current version."""
        if self._ready:
            return self._migrations[-1][0] if self._migrations else 0
        async with self._tx("migrate", write=True, lock="ledger-migrate", migrate=False) as conn:
            await conn.run_sync(lambda c: schema_version.create(c, checkfirst=True))
            done = set((await conn.execute(select(schema_version.c.version))).scalars())
            for version, apply in self._migrations:
                if version in done:
                    continue
                await conn.run_sync(apply)
                await conn.execute(
                    insert(schema_version).values(version=version, applied_at=time.time())
                )
                done.add(version)
        self._ready = True
        return max(done, default=0)

    async def schema_versions(self) -> list[int]:
        async with self._tx("read schema", write=False) as conn:
            return sorted((await conn.execute(select(schema_version.c.version))).scalars())

    async def table_names(self) -> set[str]:
        async with self._tx("read tables", write=False) as conn:
            return await conn.run_sync(
                lambda c: set(metadata.tables) & set(c.dialect.get_table_names(c))
            )

    # --- dedup episodes --------------------------------------------------------------
    async def claim_issues(
        self,
        issues: Iterable[Issue],
        *,
        cycle_id: str,
        now: datetime,
        ttl: timedelta,
        claim_ttl: timedelta = timedelta(minutes=10),
    ) -> dedup.DedupDecision:
        """Decide which issues are new and claim them for `cycle_id`, atomically.

        New issues get an open episode (or their open one is re-claimed); they are not
        *reported* until `confirm_reported` is called after the report succeeded."""
        issues = list(issues)
        now_ts = to_ts(now)
        async with self._tx("claim issues", write=True, lock="episodes") as conn:
            fps = [i.fingerprint for i in issues]
            episodes = await self._open_episodes(conn, fps)
            in_flight = await self._in_flight(conn, fps)
            decision = dedup.decide(
                issues,
                episodes,
                in_flight,
                cycle_id=cycle_id,
                now=now,
                ttl=ttl,
                claim_ttl=claim_ttl,
            )
            for issue in decision.new:
                if issue.fingerprint in episodes:
                    await conn.execute(
                        update(issue_episodes)
                        .where(
                            issue_episodes.c.fingerprint == issue.fingerprint,
                            issue_episodes.c.closed_at.is_(None),
                        )
                        .values(claimed_by=cycle_id, claimed_at=now_ts, last_seen_at=now_ts)
                    )
                else:
                    await conn.execute(
                        insert(issue_episodes).values(
                            fingerprint=issue.fingerprint,
                            host=issue.host,
                            check_name=issue.check.value,
                            subject=issue.subject,
                            opened_at=now_ts,
                            last_seen_at=now_ts,
                            claimed_by=cycle_id,
                            claimed_at=now_ts,
                        )
                    )
            seen = [d.issue.fingerprint for d in decision.dropped]
            if seen:
                await conn.execute(
                    update(issue_episodes)
                    .where(
                        issue_episodes.c.fingerprint.in_(seen), issue_episodes.c.closed_at.is_(None)
                    )
                    .values(last_seen_at=now_ts)
                )
        return decision

    async def _open_episodes(
        self, conn: AsyncConnection, fps: Sequence[str]
    ) -> dict[str, dedup.EpisodeView]:
        if not fps:
            return {}
        rows = await conn.execute(
            select(issue_episodes).where(
                issue_episodes.c.fingerprint.in_(fps), issue_episodes.c.closed_at.is_(None)
            )
        )
        return {
            r.fingerprint: dedup.EpisodeView(
                fingerprint=r.fingerprint,
                opened_at=from_ts(r.opened_at),
                reported_at=from_ts(r.reported_at),
                claimed_by=r.claimed_by,
                claimed_at=from_ts(r.claimed_at),
            )
            for r in rows
        }

    async def _in_flight(self, conn: AsyncConnection, fps: Sequence[str]) -> set[str]:
        if not fps:
            return set()
        wanted = set(fps)
        rows = await conn.execute(
            select(actions.c.fingerprints).where(actions.c.status.in_(IN_FLIGHT_STATUSES))
        )
        out: set[str] = set()
        for (raw,) in rows:
            out.update(fp for fp in json.loads(raw) if fp in wanted)
        return out

    async def confirm_reported(
        self, fingerprints: Iterable[str], *, cycle_id: str, now: datetime
    ) -> int:
        """Mark issues reported — call only after their Discord post or dispatch succeeded."""
        fps = list(fingerprints)
        if not fps:
            return 0
        async with self._tx("confirm reported", write=True, lock="episodes") as conn:
            result = await conn.execute(
                update(issue_episodes)
                .where(issue_episodes.c.fingerprint.in_(fps), issue_episodes.c.closed_at.is_(None))
                .values(reported_at=to_ts(now), claimed_by=cycle_id)
            )
            return result.rowcount

    async def release_claims(self, fingerprints: Iterable[str], *, cycle_id: str) -> int:
        """Drop this cycle's claim on issues it did not manage to report, so the next
        cycle reports them again at once."""
        fps = list(fingerprints)
        if not fps:
            return 0
        async with self._tx("release claims", write=True, lock="episodes") as conn:
            result = await conn.execute(
                update(issue_episodes)
                .where(
                    issue_episodes.c.fingerprint.in_(fps),
                    issue_episodes.c.closed_at.is_(None),
                    issue_episodes.c.claimed_by == cycle_id,
                )
                .values(claimed_by=None, claimed_at=None)
            )
            return result.rowcount

    async def close_cleared(
        self,
        current: set[str],
        *,
        checks_ok: set[str],
        hosts_up: set[str],
        now: datetime,
    ) -> list[str]:
        """Close open episodes seen cleared (see `core.dedup.cleared`); returns them."""
        async with self._tx("close cleared", write=True, lock="episodes") as conn:
            open_fps = list(
                (
                    await conn.execute(
                        select(issue_episodes.c.fingerprint).where(
                            issue_episodes.c.closed_at.is_(None)
                        )
                    )
                ).scalars()
            )
            done = dedup.cleared(open_fps, current, checks_ok=checks_ok, hosts_up=hosts_up)
            if done:
                await conn.execute(
                    update(issue_episodes)
                    .where(
                        issue_episodes.c.fingerprint.in_(done), issue_episodes.c.closed_at.is_(None)
                    )
                    .values(closed_at=to_ts(now), close_reason="cleared")
                )
        return done

    async def release_issue(self, fingerprint: str, *, now: datetime) -> bool:
        """Forget that an open issue was reported, so the next cycle reports it again
        (after a failed or ineffective attempt)."""
        async with self._tx("release issue", write=True, lock="episodes") as conn:
            result = await conn.execute(
                update(issue_episodes)
                .where(
                    issue_episodes.c.fingerprint == fingerprint,
                    issue_episodes.c.closed_at.is_(None),
                )
                .values(reported_at=None, claimed_by=None, claimed_at=None, last_seen_at=to_ts(now))
            )
            return result.rowcount > 0

    async def open_episodes(self) -> list[dict[str, Any]]:
        async with self._tx("read episodes", write=False) as conn:
            rows = await conn.execute(
                select(issue_episodes).where(issue_episodes.c.closed_at.is_(None))
            )
            return [dict(r._mapping) for r in rows]

    async def episode_count(self, fingerprint: str) -> int:
        async with self._tx("count episodes", write=False) as conn:
            return (
                await conn.execute(
                    select(func.count())
                    .select_from(issue_episodes)
                    .where(issue_episodes.c.fingerprint == fingerprint)
                )
            ).scalar_one()

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

    async def pending_approvals(self) -> int:
        """Actions currently waiting for a human decision."""
        async with self._tx("count pending approvals", write=False) as conn:
            return (
                await conn.execute(
                    select(func.count())
                    .select_from(actions)
                    .where(actions.c.status == "awaiting_approval")
                )
            ).scalar_one()

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

    # --- actions ---------------------------------------------------------------------
    async def record_actions(
        self,
        proposals: Sequence[ProposedAction],
        *,
        now: datetime,
        status: ActionStatus = ActionStatus.PROPOSED,
    ) -> None:
        """Record proposed actions (an action id already recorded is left as it is)."""
        if not proposals:
            return
        async with self._tx("record actions", write=True) as conn:
            known = set(
                (
                    await conn.execute(
                        select(actions.c.action_id).where(
                            actions.c.action_id.in_([p.action_id for p in proposals])
                        )
                    )
                ).scalars()
            )
            for p in proposals:
                if p.action_id in known:
                    continue
                await conn.execute(
                    insert(actions).values(
                        action_id=p.action_id,
                        cycle_id=p.cycle_id,
                        host=p.host,
                        catalog_key=p.catalog_key,
                        risk=p.risk.value,
                        policy_hash=p.policy_hash,
                        fingerprints=json.dumps(p.fingerprints),
                        proposal=p.model_dump_json(),
                        status=status.value,
                        created_at=to_ts(now),
                        updated_at=to_ts(now),
                    )
                )

    async def set_action_status(
        self,
        action_id: str,
        status: ActionStatus,
        *,
        now: datetime,
        flow_run_id: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status.value, "updated_at": to_ts(now)}
        if flow_run_id is not None:
            values["flow_run_id"] = flow_run_id
        if status.terminal:
            values["finished_at"] = to_ts(now)
        async with self._tx("set action status", write=True) as conn:
            await conn.execute(
                update(actions).where(actions.c.action_id == action_id).values(**values)
            )

    async def get_action(self, action_id: str) -> ActionRecord | None:
        async with self._tx("read action", write=False) as conn:
            row = (
                await conn.execute(select(actions).where(actions.c.action_id == action_id))
            ).first()
            if row is None:
                return None
            req = (
                await conn.execute(
                    select(approval_requests).where(approval_requests.c.action_id == action_id)
                )
            ).first()
            dec = (
                await conn.execute(select(decisions).where(decisions.c.action_id == action_id))
            ).first()
            job = (await conn.execute(select(jobs).where(jobs.c.action_id == action_id))).first()
        return ActionRecord(
            proposal=ProposedAction.model_validate_json(row.proposal),
            status=ActionStatus(row.status),
            flow_run_id=row.flow_run_id,
            created_at=from_ts(row.created_at),
            updated_at=from_ts(row.updated_at),
            request=_request(req) if req else None,
            decision=_decision(dec) if dec else None,
            job=_job(job) if job else None,
        )

    async def actions_with_status(self, *statuses: ActionStatus) -> list[ActionRecord]:
        async with self._tx("list actions", write=False) as conn:
            ids = list(
                (
                    await conn.execute(
                        select(actions.c.action_id)
                        .where(actions.c.status.in_([s.value for s in statuses]))
                        .order_by(actions.c.created_at)
                    )
                ).scalars()
            )
        return [r for i in ids if (r := await self.get_action(i)) is not None]

    async def cycle_actions(self, cycle_id: str) -> list[ActionRecord]:
        async with self._tx("list cycle actions", write=False) as conn:
            ids = list(
                (
                    await conn.execute(
                        select(actions.c.action_id)
                        .where(actions.c.cycle_id == cycle_id)
                        .order_by(actions.c.created_at)
                    )
                ).scalars()
            )
        return [r for i in ids if (r := await self.get_action(i)) is not None]

    # --- approval requests, votes and decisions ----------------------------------------
    async def record_approval_request(self, request: ApprovalRequest) -> None:
        """Record (or, after a restart, re-point to the new run) an approval request."""
        values = {
            "channel_id": request.channel_id,
            "message_id": request.message_id,
            "flow_run_id": request.flow_run_id,
            "risk": request.risk.value,
            "deadline": to_ts(request.deadline),
            "policy_hash": request.policy_hash,
            "requested_at": to_ts(request.requested_at),
            "pause_key": request.pause_key,
        }
        async with self._tx("record approval request", write=True) as conn:
            exists = (
                await conn.execute(
                    select(approval_requests.c.action_id).where(
                        approval_requests.c.action_id == request.action_id
                    )
                )
            ).first()
            if exists is None:
                await conn.execute(
                    insert(approval_requests).values(action_id=request.action_id, **values)
                )
            else:
                await conn.execute(
                    update(approval_requests)
                    .where(approval_requests.c.action_id == request.action_id)
                    .values(flow_run_id=request.flow_run_id, pause_key=request.pause_key)
                )
            await conn.execute(
                update(actions)
                .where(actions.c.action_id == request.action_id)
                .values(
                    status=ActionStatus.AWAITING_APPROVAL.value,
                    flow_run_id=request.flow_run_id,
                    updated_at=to_ts(request.requested_at),
                )
            )

    async def mark_reminder_sent(self, action_id: str, *, now: datetime) -> bool:
        """True for the one caller that gets to send the reminder."""
        async with self._tx("mark reminder", write=True) as conn:
            result = await conn.execute(
                update(approval_requests)
                .where(
                    approval_requests.c.action_id == action_id,
                    approval_requests.c.reminder_sent_at.is_(None),
                )
                .values(reminder_sent_at=to_ts(now))
            )
            return result.rowcount == 1

    async def sync_votes(
        self, action_id: str, present: Sequence[tuple[str, str, str]], *, now: datetime
    ) -> list[Vote]:
        """Make the recorded votes match the reactions seen now ((user_id, username,
        emoji) triples): new ones recorded, vanished ones marked removed, returning ones
        restored. Returns every vote of the action."""
        seen = {(u, e): name for u, name, e in present}
        async with self._tx("sync votes", write=True, lock=f"votes:{action_id}") as conn:
            rows = list(await conn.execute(select(votes).where(votes.c.action_id == action_id)))
            known = {(r.user_id, r.emoji): r for r in rows}
            for (user, emoji), name in seen.items():
                row = known.get((user, emoji))
                if row is None:
                    await conn.execute(
                        insert(votes).values(
                            action_id=action_id,
                            user_id=user,
                            username=name,
                            emoji=emoji,
                            first_seen_at=to_ts(now),
                        )
                    )
                elif row.removed_at is not None:
                    await conn.execute(
                        update(votes)
                        .where(votes.c.id == row.id)
                        .values(removed_at=None, first_seen_at=to_ts(now))
                    )
            for key, row in known.items():
                if key not in seen and row.removed_at is None:
                    await conn.execute(
                        update(votes).where(votes.c.id == row.id).values(removed_at=to_ts(now))
                    )
            rows = list(
                await conn.execute(
                    select(votes).where(votes.c.action_id == action_id).order_by(votes.c.id)
                )
            )
        return [
            Vote(
                action_id=r.action_id,
                user_id=r.user_id,
                username=r.username,
                emoji=r.emoji,
                first_seen_at=from_ts(r.first_seen_at),
                removed_at=from_ts(r.removed_at),
            )
            for r in rows
        ]

    async def votes(self, action_id: str) -> list[Vote]:
        async with self._tx("read votes", write=False) as conn:
            rows = await conn.execute(
                select(votes).where(votes.c.action_id == action_id).order_by(votes.c.id)
            )
            return [
                Vote(
                    action_id=r.action_id,
                    user_id=r.user_id,
                    username=r.username,
                    emoji=r.emoji,
                    first_seen_at=from_ts(r.first_seen_at),
                    removed_at=from_ts(r.removed_at),
                )
                for r in rows
            ]

    async def record_decision_intent(self, decision: Decision) -> Decision:
        """Record the decision about to be applied; the first one recorded wins and is
        returned (so two listeners, or a listener restart, never apply two)."""
        async with self._tx(
            "record decision", write=True, lock=f"decision:{decision.action_id}"
        ) as conn:
            row = (
                await conn.execute(
                    select(decisions).where(decisions.c.action_id == decision.action_id)
                )
            ).first()
            if row is not None:
                return _decision(row)
            await conn.execute(
                insert(decisions).values(
                    action_id=decision.action_id,
                    decision=decision.decision,
                    decider=decision.decider,
                    via=decision.via,
                    comment=decision.comment,
                    intended_at=to_ts(decision.intended_at),
                )
            )
            return decision

    async def mark_decision_applied(self, action_id: str, *, now: datetime) -> None:
        async with self._tx("mark decision applied", write=True) as conn:
            await conn.execute(
                update(decisions)
                .where(decisions.c.action_id == action_id, decisions.c.applied_at.is_(None))
                .values(applied_at=to_ts(now))
            )

    async def record_applied_decision(self, decision: Decision) -> Decision:
        """What Prefect actually applied replaces an unapplied intent (e.g. the UI won a
        race with the listener); an applied decision is never rewritten."""
        async with self._tx(
            "record applied decision", write=True, lock=f"decision:{decision.action_id}"
        ) as conn:
            row = (
                await conn.execute(
                    select(decisions).where(decisions.c.action_id == decision.action_id)
                )
            ).first()
            values = {
                "decision": decision.decision,
                "decider": decision.decider,
                "via": decision.via,
                "comment": decision.comment,
                "intended_at": to_ts(decision.intended_at),
                "applied_at": to_ts(decision.applied_at or decision.intended_at),
            }
            if row is None:
                await conn.execute(insert(decisions).values(action_id=decision.action_id, **values))
                return decision
            if row.applied_at is not None and row.decision == decision.decision:
                return _decision(row)
            await conn.execute(
                update(decisions)
                .where(decisions.c.action_id == decision.action_id)
                .values(**values)
            )
            return decision

    async def clear_unapplied_decision(self, action_id: str) -> None:
        """Forget an intent that Prefect never applied (the run was re-gated)."""
        async with self._tx("clear decision", write=True) as conn:
            await conn.execute(
                decisions.delete().where(
                    decisions.c.action_id == action_id, decisions.c.applied_at.is_(None)
                )
            )

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


def _request(r: Any) -> ApprovalRequest:
    return ApprovalRequest(
        action_id=r.action_id,
        channel_id=r.channel_id,
        message_id=r.message_id,
        flow_run_id=r.flow_run_id,
        risk=Risk(r.risk),
        deadline=from_ts(r.deadline),
        policy_hash=r.policy_hash,
        requested_at=from_ts(r.requested_at),
        reminder_sent_at=from_ts(r.reminder_sent_at),
        pause_key=r.pause_key,
    )


def _decision(r: Any) -> Decision:
    return Decision(
        action_id=r.action_id,
        decision=r.decision,
        decider=r.decider,
        via=r.via,
        comment=r.comment,
        intended_at=from_ts(r.intended_at),
        applied_at=from_ts(r.applied_at),
    )


def _job(r: Any) -> JobRecord:
    return JobRecord(
        action_id=r.action_id,
        runner=r.runner,
        template=r.template,
        marker=r.marker,
        intent_at=from_ts(r.intent_at),
        job_id=r.job_id,
        job_url=r.job_url,
        launched_at=from_ts(r.launched_at),
        state=r.state,
        finished_at=from_ts(r.finished_at),
        output_tail=r.output_tail,
    )
