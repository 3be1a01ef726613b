"""The ledger's connection (engine, transactions, schema) and the base of its repositories.

One small SQL database behind SQLAlchemy (async): a SQLite file by default (WAL mode, a
busy timeout, `BEGIN IMMEDIATE` for writes that must not race), PostgreSQL by URL when
workers run on several machines (an advisory transaction lock serialises the same
critical sections). Unique constraints carry every "at most once": one open episode per
fingerprint, one decision per action, one job per action.

The schema is created and migrated on first use (`clients/ledger_schema.py`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Self

from sqlalchemy import event, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from clients.errors import LedgerError
from clients.ledger_schema import (
    MIGRATIONS,
    Migration,
    metadata,
    schema_version,
)

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


class LedgerConnection:
    """Connection, transactions and schema of the ledger (see `clients.ledger`)."""

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


class Repository:
    """One concern's queries, on the connection every repository of a `Ledger` shares."""

    def __init__(self, db: LedgerConnection) -> None:
        self._db = db

    def _tx(
        self, operation: str, *, write: bool, lock: str = "ledger"
    ) -> AbstractAsyncContextManager[AsyncConnection]:
        return self._db._tx(operation, write=write, lock=lock)
