"""Upgrading a ledger written by the v1 code in place, on SQLite and on PostgreSQL.

`data/ledger_v1.json` is a ledger written through the `Ledger` API of commit baf8500
(`data/make_ledger_v1.py`): its v1 schema as that code created it on each database, and
every row. Each test rebuilds it on a fresh database, then opens it with today's `Ledger`,
which migrates it on first use (schema v2: continuations, give-ups, announcements and
verdicts move from audit events into columns).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, inspect, select
from sqlalchemy.ext.asyncio import create_async_engine

from clients.ledger import Ledger
from clients.ledger_schema import (
    MIGRATIONS,
    approval_requests,
    continuations,
    metadata,
    schema_version,
)
from core.records import ActionStatus

FIXTURE: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "ledger_v1.json").read_text()
)
IDS: dict[str, str] = FIXTURE["action_ids"]
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # the fixture's first cycle
SINCE = T0 - timedelta(days=1)
SERIAL_TABLES = ("issue_episodes", "votes", "attempts", "audit")


async def write_v1(url: str) -> None:
    """The fixture's v1 ledger on a fresh database: its own DDL, then its rows."""
    engine = create_async_engine(url)
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    try:
        async with engine.begin() as conn:
            for statement in FIXTURE["ddl"][dialect]:
                await conn.exec_driver_sql(statement)
            for name, rows in FIXTURE["rows"].items():
                if rows:
                    await conn.execute(insert(metadata.tables[name]), rows)
            if dialect == "postgresql":  # explicit ids leave the sequences behind
                for name in SERIAL_TABLES:
                    await conn.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                        f"(SELECT MAX(id) FROM {name}))"
                    )
    finally:
        await engine.dispose()


async def columns(led: Ledger) -> dict[str, set[str]]:
    async with led.engine.connect() as conn:
        return await conn.run_sync(
            lambda c: {
                t: {col["name"] for col in inspect(c).get_columns(t)}
                for t in inspect(c).get_table_names()
            }
        )


async def count(led: Ledger, statement: Any) -> int:
    async with led.engine.connect() as conn:
        return int((await conn.execute(statement)).scalar_one())


async def test_the_fixture_is_a_v1_ledger_and_opening_it_upgrades_it(
    ledger_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    await write_v1(ledger_url)
    async with Ledger(ledger_url, migrations=MIGRATIONS[:1]) as v1:
        assert await v1.schema_versions() == [1]
        assert "continuations" not in await v1.table_names()
        assert "verdict" not in (await columns(v1))["actions"]
    async with Ledger(ledger_url) as led:
        assert await led.ensure_schema() == 3
        assert await led.schema_versions() == [1, 2, 3]
        upgraded = await columns(led)
    if ledger_url.startswith("sqlite"):
        fresh_url = f"sqlite+aiosqlite:///{tmp_path}/fresh.db"
    else:  # a second new database on the session's server
        server = request.getfixturevalue("postgres_server")
        fresh_url = await asyncio.to_thread(server.create_database)
    async with Ledger(fresh_url) as fresh:
        await fresh.ensure_schema()
        assert await columns(fresh) == upgraded  # both roads end at the same schema


async def test_the_facts_land_in_their_columns(ledger_url: str) -> None:
    await write_v1(ledger_url)
    async with Ledger(ledger_url) as led:
        live = await led.jobs.action_liveness(IDS.values())
        assert live[IDS["continued"]].continuations == 1
        assert not live[IDS["continued"]].gave_up
        assert live[IDS["gave_up"]].continuations == 3
        assert live[IDS["gave_up"]].gave_up
        assert all(
            live[IDS[n]].continuations == 0 and not live[IDS[n]].gave_up
            for n in ("finished", "expired", "awaiting", "approved_waiting")
        )
        assert await led.jobs.continued_from(IDS["continued"], "run-db-01")
        assert not await led.jobs.continued_from(IDS["continued"], "run-db-02-0")
        assert await led.jobs.continued_from(IDS["gave_up"], "run-db-02-2")
        assert await led.actions.cycle_verdicts("c1") == {
            IDS["finished"]: "effective",
            IDS["ineffective"]: "ineffective",
        }
        assert await led.actions.cycle_verdicts("c2") == {}
        # announced in Discord: all applied decisions but the one made in the UI
        assert await led.actions.decisions_to_announce(since=SINCE) == [IDS["ui_unannounced"]]
        assert await led.actions.unapplied_decisions(since=SINCE) == [IDS["awaiting"]]
        # the audit trail stays the human record
        events = [e["event"] for e in await led.operations.audit_trail(action_id=IDS["gave_up"])]
        assert events == ["decision_announced"] + ["reconcile_continued"] * 3 + [
            "reconcile_gave_up"
        ]


async def test_the_repositories_read_the_v1_rows_back(ledger_url: str) -> None:
    await write_v1(ledger_url)
    async with Ledger(ledger_url) as led:
        by_id = {r["action_id"]: r for r in FIXTURE["rows"]["actions"]}
        for action_id, row in by_id.items():
            record = await led.actions.get_action(action_id)
            assert record is not None and record.status == ActionStatus(row["status"])
            assert record.request is not None and record.proposal.cycle_id == row["cycle_id"]
        finished = await led.actions.get_action(IDS["finished"])
        assert finished is not None and finished.job is not None
        assert finished.job.state == "successful" and finished.job.output_tail == "ok"
        assert finished.decision is not None and finished.decision.decider == "alice"
        votes = await led.actions.votes(IDS["finished"])
        assert [(v.username, v.removed_at is not None) for v in votes] == [
            ("alice", False),
            ("bob", True),
        ]
        awaiting = await led.actions.get_action(IDS["awaiting"])
        assert awaiting is not None and awaiting.request is not None
        assert awaiting.request.reminder_sent_at is not None
        assert {a.proposal.action_id: a.status for a in await led.actions.cycle_actions("c1")} == {
            IDS["finished"]: ActionStatus.FINISHED,
            IDS["rejected"]: ActionStatus.REJECTED,
            IDS["ineffective"]: ActionStatus.FINISHED,
        }
        # approval capacity: the undecided one, and two approved waiting for their launch
        assert await led.operations.pending_approvals() == 3
        assert await led.jobs.launch_count() == 4
        assert len(await led.episodes.open_episodes()) == 8  # "finished" was remediated
        fixed = json.loads(by_id[IDS["finished"]]["fingerprints"])
        history = await led.episodes.attempt_history(fixed, since=SINCE)
        assert [a.outcome for a in history[fixed[0]]] == ["effective", "relapse"]
        failed = json.loads(by_id[IDS["ineffective"]]["fingerprints"])[0]
        assert await led.episodes.escalated_at(failed) is not None
        beat = await led.operations.heartbeat_detail("listener")
        assert beat == (T0 + timedelta(minutes=80), "listener ok")
        assert await led.operations.alert_state("listener_stale") == (
            True,
            T0 + timedelta(minutes=66),
        )
        facts = await led.operations.metric_facts(
            now=T0 + timedelta(hours=2), window=timedelta(days=1)
        )
        assert facts.cycles == 2 and facts.running_jobs == 2 and facts.pending_approvals == 1
        assert (await led.operations.row_counts())["continuations"] == 4


async def test_an_upgraded_ledger_carries_on(ledger_url: str) -> None:
    """What was in flight under the v1 code continues under the new one."""
    await write_v1(ledger_url)
    now = T0 + timedelta(hours=3)
    async with Ledger(ledger_url) as led:
        continued = IDS["continued"]
        # the run continued before the upgrade is not continued twice; a new death is
        assert not await led.jobs.record_continuation(
            continued, dead_run_id="run-db-01", detail={}, now=now
        )
        assert await led.jobs.record_continuation(
            continued, dead_run_id="run-db-01b", detail={"via": "deployment"}, now=now
        )
        assert (await led.jobs.action_liveness([continued]))[continued].continuations == 2
        await led.jobs.record_job_state(continued, state="successful", now=now, finished=True)
        await led.actions.set_action_status(continued, ActionStatus.FINISHED, now=now)
        await led.actions.record_verdict(continued, "effective", now=now)
        assert await led.actions.cycle_verdicts("c2") == {continued: "effective"}
        # given up before: stays given up
        assert not await led.jobs.record_gave_up(IDS["gave_up"], {"again": True}, now=now)
        # the approved action waiting for its host launches
        waiting = await led.actions.get_action(IDS["approved_waiting"])
        assert waiting is not None
        claim = await led.jobs.claim_launch(
            action_id=waiting.proposal.action_id,
            host=waiting.proposal.host,
            runner="awx",
            template="10",
            marker=waiting.proposal.action_id,
            max_running=5,
            now=now,
        )
        assert claim == "claimed"
        # the UI decision gets announced, once
        ui = IDS["ui_unannounced"]
        assert await led.actions.mark_decision_announced(ui, "✅ Approved", now=now)
        assert await led.actions.decisions_to_announce(since=SINCE) == []
        [announced] = [
            e
            for e in await led.operations.audit_trail(action_id=ui)
            if e["event"] == "decision_announced"
        ]
        assert announced["detail"] == {"message_id": "m-app-03", "text": "✅ Approved"}
        # new audit rows get new ids (PostgreSQL's sequences follow the loaded rows)
        await led.operations.record_audit("note", {}, now=now, action_id=ui)


async def test_opening_twice_upgrades_once(ledger_url: str) -> None:
    await write_v1(ledger_url)
    async with Ledger(ledger_url) as led:
        await led.ensure_schema()
    async with Ledger(ledger_url) as led:
        assert await led.ensure_schema() == 3
        assert await led.schema_versions() == [1, 2, 3]
        assert await count(led, select(func.count()).select_from(continuations)) == 4
    # and v2's steps themselves are idempotent: run again (as a v4), they change nothing
    again = [*MIGRATIONS, (4, MIGRATIONS[1][1])]
    async with Ledger(ledger_url, migrations=again) as led:
        assert await led.ensure_schema() == 4
        assert await count(led, select(func.count()).select_from(continuations)) == 4
        live = await led.jobs.action_liveness([IDS["gave_up"]])
        assert live[IDS["gave_up"]].continuations == 3 and live[IDS["gave_up"]].gave_up
        assert await led.actions.decisions_to_announce(since=SINCE) == [IDS["ui_unannounced"]]


def test_two_processes_upgrading_at_once_migrate_once(ledger_url: str) -> None:
    asyncio.run(write_v1(ledger_url))
    start_at = time.time() + 3.0  # both processes import and connect first
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.clients.ledger_worker",
                "migrate",
                ledger_url,
                str(start_at),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1]) == {"version": 3, "continuations": 4}

    async def check() -> None:
        async with Ledger(ledger_url) as led:
            rows = await count(led, select(func.count()).select_from(schema_version))
            assert rows == 3
            assert await count(led, select(func.count()).select_from(continuations)) == 4

    asyncio.run(check())


async def test_v3_widens_request_ids_for_several_channels(ledger_url: str) -> None:
    """A ledger from before v3 held a request's ids in 32 characters (PostgreSQL enforced
    it); after v3 the ids of a request asked in several channels at once fit."""
    await write_v1(ledger_url)
    async with Ledger(ledger_url, migrations=MIGRATIONS[:2]) as v2:
        assert await v2.ensure_schema() == 2
        if ledger_url.startswith("postgresql"):  # the column as v1 created it then
            async with v2.engine.begin() as conn:
                for name in ("channel_id", "message_id"):
                    await conn.exec_driver_sql(
                        f"ALTER TABLE approval_requests ALTER COLUMN {name} TYPE VARCHAR(32)"
                    )
    channel_ids = "discord=123456789012345678;slack=C0APPROVALS"
    message_ids = (
        "discord=123456789012345678/1234567890123456789;slack=C0APPROVALS/1733580000.000100"
    )
    async with Ledger(ledger_url) as led:
        assert await led.ensure_schema() == 3
        record = await led.actions.get_action(IDS["awaiting"])
        assert record is not None and record.request is not None
        widened = record.request.model_copy(
            update={"channel_id": channel_ids, "message_id": message_ids}
        )
        async with led.engine.begin() as conn:  # re-recording keeps a request's ids
            await conn.execute(
                delete(approval_requests).where(approval_requests.c.action_id == IDS["awaiting"])
            )
        await led.actions.record_approval_request(widened)
        again = await led.actions.get_action(IDS["awaiting"])
        assert again is not None and again.request is not None
        assert (again.request.channel_id, again.request.message_id) == (channel_ids, message_ids)
