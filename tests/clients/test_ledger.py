"""The ledger on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, Table, insert

from clients.errors import LedgerError
from clients.ledger import Ledger
from clients.ledger_schema import MIGRATIONS
from core.dedup import DropReason
from core.models import CheckName, Issue, Severity

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TTL = timedelta(hours=6)


def issue(
    host: str = "web-01", check: CheckName = CheckName.FAILED_UNIT, subject: str = "nginx.service"
) -> Issue:
    return Issue(
        host=host, check=check, subject=subject, severity=Severity.CRITICAL, observed_at=T0
    )


async def test_schema_created_on_first_use(ledger: Ledger) -> None:
    assert await ledger.schema_versions() == [1, 2, 3]
    assert {
        "issue_episodes",
        "actions",
        "decisions",
        "jobs",
        "votes",
        "audit",
        "continuations",
    } <= (await ledger.table_names())


async def test_sqlite_uses_wal(tmp_path: Path) -> None:
    async with Ledger(f"sqlite+aiosqlite:///{tmp_path}/l.db") as led:
        await led.ensure_schema()
        async with led.engine.connect() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            busy = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    assert mode == "wal"
    assert busy >= 1000


async def test_forward_only_migration_runs_once(ledger_url: str) -> None:
    extra = MetaData()
    probe = Table("probe", extra, Column("id", Integer, primary_key=True))

    def v4(conn: Connection) -> None:
        extra.create_all(conn)
        conn.execute(insert(probe).values(id=1))

    async with Ledger(ledger_url) as led:
        assert await led.ensure_schema() == 3
    async with Ledger(ledger_url, migrations=[*MIGRATIONS, (4, v4)]) as led:
        assert await led.ensure_schema() == 4
        assert await led.schema_versions() == [1, 2, 3, 4]
    # a second start applies nothing again (the insert would violate the primary key)
    async with Ledger(ledger_url, migrations=[*MIGRATIONS, (4, v4)]) as led:
        assert await led.ensure_schema() == 4


async def test_new_issue_then_dropped_within_ttl(ledger: Ledger) -> None:
    first = await ledger.episodes.claim_issues([issue()], cycle_id="c1", now=T0, ttl=TTL)
    assert [i.fingerprint for i in first.new] == ["web-01|failed_unit|nginx.service"]
    await ledger.episodes.confirm_reported(
        ["web-01|failed_unit|nginx.service"], cycle_id="c1", now=T0
    )
    second = await ledger.episodes.claim_issues(
        [issue()], cycle_id="c2", now=T0 + timedelta(hours=1), ttl=TTL
    )
    assert second.new == []
    assert [d.reason for d in second.dropped] == [DropReason.REPORTED_WITHIN_TTL]
    third = await ledger.episodes.claim_issues(
        [issue()], cycle_id="c3", now=T0 + timedelta(hours=7), ttl=TTL
    )
    assert len(third.new) == 1  # TTL expired: reported again


async def test_unconfirmed_report_is_reported_again(ledger: Ledger) -> None:
    await ledger.episodes.claim_issues([issue()], cycle_id="c1", now=T0, ttl=TTL)
    # c1 never confirmed (its Discord post failed); the next cycle reports it again
    again = await ledger.episodes.claim_issues(
        [issue()], cycle_id="c1", now=T0 + timedelta(minutes=15), ttl=TTL
    )
    assert len(again.new) == 1


async def test_concurrent_claim_by_other_cycle_is_dropped(ledger: Ledger) -> None:
    await ledger.episodes.claim_issues([issue()], cycle_id="c1", now=T0, ttl=TTL)
    other = await ledger.episodes.claim_issues(
        [issue()], cycle_id="c2", now=T0 + timedelta(seconds=5), ttl=TTL
    )
    assert [d.reason for d in other.dropped] == [DropReason.CLAIMED_BY_OTHER_CYCLE]


async def test_cleared_only_when_check_ok_and_host_up(ledger: Ledger) -> None:
    fp = issue().fingerprint
    await ledger.episodes.claim_issues([issue()], cycle_id="c1", now=T0, ttl=TTL)
    await ledger.episodes.confirm_reported([fp], cycle_id="c1", now=T0)
    # query failed: nothing clears
    assert (
        await ledger.episodes.close_cleared(set(), checks_ok=set(), hosts_up={"web-01"}, now=T0)
        == []
    )
    # host down: nothing clears
    assert (
        await ledger.episodes.close_cleared(
            set(), checks_ok={"failed_unit"}, hosts_up=set(), now=T0
        )
        == []
    )
    # still detected: nothing clears
    assert (
        await ledger.episodes.close_cleared(
            {fp}, checks_ok={"failed_unit"}, hosts_up={"web-01"}, now=T0
        )
        == []
    )
    assert await ledger.episodes.close_cleared(
        set(), checks_ok={"failed_unit"}, hosts_up={"web-01"}, now=T0
    ) == [fp]
    recur = await ledger.episodes.claim_issues(
        [issue()], cycle_id="c2", now=T0 + timedelta(minutes=30), ttl=TTL
    )
    assert len(recur.new) == 1  # a recurrence is fresh
    assert await ledger.episodes.episode_count(fp) == 2


async def test_release_makes_issue_reportable(ledger: Ledger) -> None:
    fp = issue().fingerprint
    await ledger.episodes.claim_issues([issue()], cycle_id="c1", now=T0, ttl=TTL)
    await ledger.episodes.confirm_reported([fp], cycle_id="c1", now=T0)
    assert await ledger.episodes.release_issue(fp, now=T0 + timedelta(minutes=20))
    again = await ledger.episodes.claim_issues(
        [issue()], cycle_id="c2", now=T0 + timedelta(minutes=30), ttl=TTL
    )
    assert len(again.new) == 1


async def test_audit_and_heartbeat(ledger: Ledger) -> None:
    await ledger.operations.record_audit("decision", {"by": "alice"}, now=T0, action_id="a1")
    [row] = await ledger.operations.audit_trail(action_id="a1")
    assert row["event"] == "decision"
    assert row["detail"] == {"by": "alice"}
    assert await ledger.operations.last_heartbeat("cycle") is None
    await ledger.operations.heartbeat("cycle", now=T0)
    await ledger.operations.heartbeat("cycle", now=T0 + timedelta(minutes=15))
    assert await ledger.operations.last_heartbeat("cycle") == T0 + timedelta(minutes=15)


async def test_unreachable_database_is_a_ledger_error_without_password() -> None:
    led = Ledger("postgresql+asyncpg://app:pw-planted-123@127.0.0.1:1/none")
    with pytest.raises(LedgerError) as err:
        await led.ensure_schema()
    assert "pw-planted-123" not in str(err.value)
    await led.aclose()


def test_two_processes_never_both_claim(ledger_url: str) -> None:
    fps = [f"web-{i:02d}|failed_unit|nginx.service" for i in range(40)]
    start_at = time.time() + 3.0  # both processes import and connect first
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.clients.ledger_worker",
                ledger_url,
                cycle,
                str(start_at),
                *fps,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cycle in ("cycle-a", "cycle-b")
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(set(json.loads(out.strip().splitlines()[-1])))
    a, b = results
    assert a.isdisjoint(b), f"both cycles reported {sorted(a & b)[:3]}"
    assert a | b == set(fps)
