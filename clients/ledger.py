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
    audit,
    heartbeats,
    issue_episodes,
    metadata,
    schema_version,
)
from core import dedup
from core.models import Issue

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
