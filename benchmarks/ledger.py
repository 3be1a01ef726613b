"""Ledger throughput: 1,000 actions through their ledger writes, on SQLite and PostgreSQL.

Subject: one action's ledger writes as the flows make them, through `clients.ledger.Ledger`
— record the action, the approval request, an audit event, the vote, the decision intent
and its application, an audit event, the launch claim, the job id, the job's end, the
attempt, the final status: 12 write transactions — for 1,000 actions on distinct hosts,
one writer. Baseline: the same number of write transactions, each one single-row INSERT
through the bare driver (`sqlite3` with the ledger's pragmas and `BEGIN IMMEDIATE`;
`asyncpg`), on the same database server: the commit floor. The 1,000 actions go in 5
batches of 200 (the repetitions); subject and baseline batches alternate (ABBA).
Throughput is actions per second per batch.

SQLite: a file in a temporary directory, WAL, `synchronous` at its default (FULL).
PostgreSQL: Debian's server started for the run from a fresh data directory
(`tests/fixtures/postgres.py`'s way, but with `fsync` left on); if it cannot start, the
result says `skipped` with the reason.

Run: `.venv/bin/python -m benchmarks.ledger [--quick]` (no Prefect server needed)
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import Run, alternate, compare, log, stats
from benchmarks.postgres import start_postgres

ACTIONS = 1000
BATCHES = 5
WRITES_PER_ACTION = 12


def proposals(n: int, tag: str) -> list[Any]:
    from tests.flows.actions import policy_with, proposal

    policy = policy_with("noop_fix")
    return [proposal(policy, host=f"h-{tag}-{i:04d}", cycle_id=f"c-{tag}-{i}") for i in range(n)]


async def lifecycle(ledger: Any, p: Any) -> None:
    """The 12 ledger writes of one approved, launched, finished action."""
    from core.records import ActionStatus, ApprovalRequest, Decision

    now = datetime.now(UTC)
    a = p.action_id
    await ledger.actions.record_actions([p], now=now)
    await ledger.actions.record_approval_request(
        ApprovalRequest(
            action_id=a,
            channel_id="c",
            message_id=f"m-{a}",
            flow_run_id=str(uuid.uuid4()),
            risk=p.risk,
            deadline=now + timedelta(minutes=5),
            policy_hash=p.policy_hash,
            requested_at=now,
            pause_key=f"approve-{a}",
        )
    )
    await ledger.operations.record_audit(
        "approval_requested", {"message_id": f"m-{a}"}, now=now, action_id=a
    )
    await ledger.actions.sync_votes(a, [("1001", "alice", "✅")], now=now)
    decision = Decision(
        action_id=a, decision="approve", decider="alice", via="discord", intended_at=now
    )
    await ledger.actions.record_decision_intent(decision)
    await ledger.actions.record_applied_decision(decision.model_copy(update={"applied_at": now}))
    await ledger.operations.record_audit(
        "decision", decision.model_dump(mode="json"), now=now, action_id=a
    )
    claimed = await ledger.jobs.claim_launch(
        action_id=a,
        host=p.host,
        runner="awx",
        template="30",
        marker=f"mk-{a}",
        max_running=10**6,
        now=now,
    )
    if claimed != "claimed":
        raise RuntimeError(f"claim_launch answered {claimed}")
    await ledger.jobs.record_job_launched(a, job_id="1", job_url=None, now=now)
    await ledger.jobs.record_job_state(a, state="successful", now=now, finished=True)
    await ledger.episodes.record_attempt(
        action_id=a,
        fingerprints=p.fingerprints,
        host=p.host,
        catalog_key=p.catalog_key,
        outcome="effective",
        counts=True,
        explanation="re-check clear",
        now=now,
    )
    await ledger.actions.set_action_status(a, ActionStatus.FINISHED, now=now)


class RawSqlite:
    """The commit floor on SQLite: single-row INSERT transactions with the ledger's pragmas."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA busy_timeout=30000")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS floor (id INTEGER PRIMARY KEY, k TEXT, v TEXT, at REAL)"
        )

    async def action(self, key: str) -> None:
        for i in range(WRITES_PER_ACTION):
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "INSERT INTO floor (k, v, at) VALUES (?, ?, ?)", (key, f"w{i}", time.time())
            )
            self.conn.execute("COMMIT")
            await asyncio.sleep(0)

    async def close(self) -> None:
        self.conn.close()


class RawPostgres:
    """The commit floor on PostgreSQL: single-row INSERT transactions through asyncpg."""

    def __init__(self, url: str) -> None:
        self.url = url.replace("postgresql+asyncpg://", "postgresql://")
        self.conn: Any = None

    async def open(self) -> RawPostgres:
        import asyncpg

        self.conn = await asyncpg.connect(self.url)
        await self.conn.execute(
            "CREATE TABLE IF NOT EXISTS floor (id SERIAL PRIMARY KEY, k TEXT, v TEXT, at DOUBLE "
            "PRECISION)"
        )
        return self

    async def action(self, key: str) -> None:
        for i in range(WRITES_PER_ACTION):
            async with self.conn.transaction():
                await self.conn.execute(
                    "INSERT INTO floor (k, v, at) VALUES ($1, $2, $3)", key, f"w{i}", time.time()
                )

    async def close(self) -> None:
        await self.conn.close()


async def measure_db(name: str, ledger_url: str, raw: Any, actions: int) -> dict[str, Any]:
    from clients.ledger import Ledger

    per_batch = actions // BATCHES
    subject: list[float] = []
    baseline: list[float] = []
    per_write: list[float] = []
    async with Ledger(ledger_url) as ledger:
        await ledger.ensure_schema()
        warm = proposals(5, f"{name}-warm")
        for p in warm:
            await lifecycle(ledger, p)
            await raw.action(p.action_id)
        for b in range(BATCHES):
            batch = proposals(per_batch, f"{name}-{b}")

            async def ledger_batch(batch: list[Any] = batch) -> None:
                t = time.perf_counter()
                for p in batch:
                    await lifecycle(ledger, p)
                elapsed = time.perf_counter() - t
                subject.append(len(batch) / elapsed)
                per_write.append(elapsed / (len(batch) * WRITES_PER_ACTION))

            async def raw_batch(batch: list[Any] = batch) -> None:
                t = time.perf_counter()
                for p in batch:
                    await raw.action(p.action_id)
                baseline.append(len(batch) / (time.perf_counter() - t))

            for fn in alternate(b, ledger_batch, raw_batch):
                await fn()
            log(f"ledger: {name}: batch {b + 1}/{BATCHES}")
        launches = await ledger.jobs.launch_count()
    await raw.close()
    return {
        "throughput": compare(
            subject,
            baseline,
            unit="actions/s",
            what=f"actions through their 12 ledger writes per second ({name}, one writer)",
            baseline_is="12 single-row INSERT transactions per action through the bare driver",
        ),
        "seconds_per_write_transaction": stats(per_write),
        "actions": per_batch * BATCHES,
        "actions_per_batch": per_batch,
        "launches_recorded": launches,
    }


async def measure(actions: int, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    log("ledger: SQLite")
    out["sqlite"] = await measure_db(
        "sqlite",
        f"sqlite+aiosqlite:///{workdir}/ledger.db",
        RawSqlite(workdir / "floor.db"),
        actions,
    )
    log("ledger: PostgreSQL")
    server = None
    try:
        server = await asyncio.to_thread(start_postgres)
        url = await asyncio.to_thread(server.create_database)
        raw_url = await asyncio.to_thread(server.create_database)
    except Exception as exc:  # noqa: BLE001 - any failure to start is reported, not hidden
        reason = f"PostgreSQL could not start: {type(exc).__name__}: {exc}"
        out["postgresql"] = {"skipped": reason[:2000]}
        log(f"ledger: {reason}")
        if server is not None:
            await asyncio.to_thread(server.stop)
        return out
    try:
        raw = await RawPostgres(raw_url).open()
        out["postgresql"] = await measure_db("postgresql", url, raw, actions)
        out["postgresql"]["server"] = "Debian PostgreSQL, fresh data dir, fsync on, loopback TCP"
    finally:
        await asyncio.to_thread(server.stop)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="250 actions (5 batches of 50)")
    parser.add_argument("--actions", type=int, help=f"actions per database (default {ACTIONS})")
    parser.add_argument("--out", type=Path, help="results directory")
    args = parser.parse_args(argv)
    actions = args.actions or (250 if args.quick else ACTIONS)
    run = Run("ledger", quick=args.quick, method=__doc__.split("\n\n", 1)[1].rsplit("\n\n", 1)[0])
    run.data["batches"] = BATCHES
    workdir = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    run.data.update(asyncio.run(measure(actions, workdir)))
    path = run.finish(args.out)
    log(f"ledger: wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
