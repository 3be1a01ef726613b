"""Writes `ledger_v1.json`: a ledger as the code of commit baf8500 (schema v1) leaves it.

Run from a checkout of that commit, never from a later tree (it calls the flat `Ledger`
API of the time, and records that code's own table definitions):

    git worktree add /tmp/ledger-v1 baf8500
    cp tests/clients/data/make_ledger_v1.py /tmp/ledger-v1/
    cd /tmp/ledger-v1 && /work/main/.venv/bin/python make_ledger_v1.py OUT.json

It writes the ledger of a few cycles through the API of the time (episodes, actions in
several statuses, approval requests, votes, decisions applied and announced, jobs,
attempts, a continued and a given-up action, verdicts in "finished" audit events,
heartbeats, alerts, cycles) into a SQLite file, then dumps every table's rows as JSON,
plus the `CREATE` statements of the v1 schema compiled for SQLite and for PostgreSQL, so
`test_ledger_migration.py` can rebuild the same v1 ledger on either database.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from clients.ledger import Ledger
from clients.ledger_schema import metadata
from core.analysis import ModelAction
from core.models import CheckName, Issue, Severity
from core.policy import Policy, policy_hash
from core.records import ActionStatus, ApprovalRequest, Decision
from core.vetting import ProposedAction, vet_actions

# ledger-codemod: skip
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)


def issue(host: str, unit: str) -> Issue:
    return Issue(
        host=host,
        check=CheckName.FAILED_UNIT,
        subject=unit,
        severity=Severity.CRITICAL,
        observed_at=T0,
    )


def proposal(host: str, unit: str, cycle: str) -> ProposedAction:
    policy = Policy()
    [p] = vet_actions(
        [ModelAction(catalog_key="restart_unit", host=host, risk="low", parameters={"unit": unit})],
        [issue(host, unit)],
        policy=policy,
        policy_hash=policy_hash(policy),
        history={},
        pending_approvals=0,
        cycle_id=cycle,
        now=T0,
    ).approved
    return p


def request(p: ProposedAction, at: datetime, message_id: str | None = "m") -> ApprovalRequest:
    return ApprovalRequest(
        action_id=p.action_id,
        channel_id="chan-1",
        message_id=None if message_id is None else f"{message_id}-{p.host}",
        flow_run_id=f"run-{p.host}",
        risk=p.risk,
        deadline=at + 60 * M,
        policy_hash=p.policy_hash,
        requested_at=at,
        pause_key=f"approval-{p.action_id[:8]}",
    )


async def write(led: Ledger) -> dict[str, str]:
    """The ledger of two cycles; returns a name → action id map (kept in the fixture)."""
    hosts = {
        "finished": ("web-01", "nginx.service", "c1"),
        "rejected": ("web-02", "nginx.service", "c1"),
        "ineffective": ("web-03", "nginx.service", "c1"),
        "continued": ("db-01", "postgresql.service", "c2"),
        "gave_up": ("db-02", "postgresql.service", "c2"),
        "expired": ("db-03", "postgresql.service", "c2"),
        "awaiting": ("app-01", "app.service", "c2"),
        "approved_waiting": ("app-02", "app.service", "c2"),
        "ui_unannounced": ("app-03", "app.service", "c2"),
    }
    ps = {name: proposal(h, u, c) for name, (h, u, c) in hosts.items()}
    ids = {name: p.action_id for name, p in ps.items()}

    # cycle c1: three issues reported, three actions run to an end
    await led.record_cycle_start("c1", flow_run_id="flow-c1", now=T0)
    c1 = [issue(h, u) for name, (h, u, c) in hosts.items() if c == "c1"]
    await led.claim_issues(c1, cycle_id="c1", now=T0, ttl=timedelta(hours=6))
    await led.confirm_reported([i.fingerprint for i in c1], cycle_id="c1", now=T0)
    c1_actions = [ps[n] for n in ("finished", "rejected", "ineffective")]
    await led.record_actions(c1_actions, now=T0)
    for p in c1_actions:
        await led.record_approval_request(request(p, T0 + M))
        await led.record_audit(
            "approval_requested", {"message_id": f"m-{p.host}"}, now=T0 + M, action_id=p.action_id
        )
    # votes: alice approves "finished" (bob voted, then took it back), carol rejects one
    await led.sync_votes(
        ids["finished"], [("u1", "alice", "✅"), ("u2", "bob", "✅")], now=T0 + 2 * M
    )
    await led.sync_votes(ids["finished"], [("u1", "alice", "✅")], now=T0 + 3 * M)
    await led.sync_votes(ids["rejected"], [("u3", "carol", "❌")], now=T0 + 2 * M)
    await led.sync_votes(ids["ineffective"], [("u1", "alice", "✅")], now=T0 + 2 * M)
    for name, choice in (
        ("finished", "approve"),
        ("rejected", "reject"),
        ("ineffective", "approve"),
    ):
        d = Decision(
            action_id=ids[name],
            decision=choice,
            decider="alice" if choice == "approve" else "carol",
            via="discord",
            intended_at=T0 + 3 * M,
        )
        await led.record_decision_intent(d)
        await led.mark_decision_applied(ids[name], now=T0 + 4 * M)
        await led.record_audit(
            "decision", d.model_dump(mode="json"), now=T0 + 4 * M, action_id=ids[name]
        )
        await led.record_audit(
            "decision_announced",
            {"message_id": f"m-{ps[name].host}", "text": f"{choice}d"},
            now=T0 + 5 * M,
            action_id=ids[name],
        )
    await led.set_action_status(ids["rejected"], ActionStatus.REJECTED, now=T0 + 5 * M)
    for name, verdict, outcome in (
        ("finished", "effective", "effective"),
        ("ineffective", "ineffective", "ineffective"),
    ):
        p = ps[name]
        assert (
            await led.claim_launch(
                action_id=p.action_id,
                host=p.host,
                runner="awx",
                template="10",
                marker=p.action_id,
                max_running=5,
                now=T0 + 5 * M,
            )
            == "claimed"
        )
        await led.record_job_launched(
            p.action_id,
            job_id=f"job-{p.host}",
            job_url=f"https://awx/jobs/{p.host}",
            now=T0 + 6 * M,
        )
        await led.action_heartbeat(p.action_id, run_id=f"run-{p.host}", now=T0 + 7 * M)
        await led.record_job_state(
            p.action_id, state="successful", now=T0 + 8 * M, finished=True, output_tail="ok"
        )
        await led.record_attempt(
            action_id=p.action_id,
            fingerprints=p.fingerprints,
            host=p.host,
            catalog_key=p.catalog_key,
            outcome=outcome,
            counts=outcome != "effective",
            explanation=f"{verdict}.",
            now=T0 + 9 * M,
        )
        await led.set_action_status(p.action_id, ActionStatus.FINISHED, now=T0 + 9 * M)
        await led.record_audit(
            "finished",
            {
                "action_id": p.action_id,
                "status": "finished",
                "job_id": f"job-{p.host}",
                "job_state": "successful",
                "verdict": verdict,
                "explanation": f"{verdict}.",
                "outcome": outcome,
                "counts": outcome != "effective",
            },
            now=T0 + 9 * M,
            action_id=p.action_id,
        )
    await led.close_remediated(ps["finished"].fingerprints, now=T0 + 9 * M)
    await led.record_cycle_end(
        "c1",
        actions_dispatched=3,
        report={"usage": {"input_tokens": 1200, "output_tokens": 300}, "cost_usd": 0.012},
        now=T0 + 2 * M,
    )
    assert await led.claim_cycle_summary("c1", now=T0 + 10 * M)

    # cycle c2, an hour later: the reconciler's cases and decisions in flight
    t = T0 + 60 * M
    await led.record_cycle_start("c2", flow_run_id="flow-c2", now=t)
    c2 = [issue(h, u) for name, (h, u, c) in hosts.items() if c == "c2"]
    await led.claim_issues(c2, cycle_id="c2", now=t, ttl=timedelta(hours=6))
    await led.confirm_reported([i.fingerprint for i in c2], cycle_id="c2", now=t)
    c2_actions = [
        ps[n]
        for n in (
            "continued",
            "gave_up",
            "expired",
            "awaiting",
            "approved_waiting",
            "ui_unannounced",
        )
    ]
    await led.record_actions(c2_actions, now=t)
    for p in c2_actions:
        await led.record_approval_request(request(p, t + M))
    for name in ("continued", "gave_up", "approved_waiting"):
        d = Decision(
            action_id=ids[name],
            decision="approve",
            decider="alice",
            via="discord",
            intended_at=t + 2 * M,
        )
        await led.record_decision_intent(d)
        await led.mark_decision_applied(ids[name], now=t + 2 * M)
        await led.record_audit(
            "decision_announced",
            {"message_id": "m", "text": "approved"},
            now=t + 3 * M,
            action_id=ids[name],
        )
    # approved in the Prefect UI; the listener has not edited its message yet
    await led.record_applied_decision(
        Decision(
            action_id=ids["ui_unannounced"],
            decision="approve",
            decider="dave",
            via="ui",
            intended_at=t + 4 * M,
            applied_at=t + 4 * M,
        )
    )
    # a decision intended by a listener that died before Prefect confirmed it
    await led.sync_votes(ids["awaiting"], [("u1", "alice", "✅")], now=t + 3 * M)
    await led.record_decision_intent(
        Decision(
            action_id=ids["awaiting"],
            decision="approve",
            decider="alice",
            via="discord",
            intended_at=t + 3 * M,
        )
    )
    await led.mark_reminder_sent(ids["awaiting"], now=t + 30 * M)
    for name in ("continued", "gave_up"):
        p = ps[name]
        assert (
            await led.claim_launch(
                action_id=p.action_id,
                host=p.host,
                runner="awx",
                template="10",
                marker=p.action_id,
                max_running=5,
                now=t + 3 * M,
            )
            == "claimed"
        )
        await led.record_job_launched(
            p.action_id, job_id=f"job-{p.host}", job_url=None, now=t + 4 * M
        )
        await led.action_heartbeat(p.action_id, run_id=f"run-{p.host}", now=t + 5 * M)
    # "continued": its run died once and a fresh run took over (still running)
    assert await led.claim_dead_action(
        ids["continued"],
        stale_before=t + 10 * M,
        dead_runs=["run-db-01"],
        claimant="reconciler:run-db-01",
        now=t + 10 * M,
    )
    assert await led.record_continuation(
        ids["continued"],
        dead_run_id="run-db-01",
        detail={"via": "deployment", "new_run_id": "run-db-01b"},
        now=t + 10 * M,
    )
    await led.action_heartbeat(ids["continued"], run_id="run-db-01b", now=t + 11 * M)
    # "gave_up": continued three times, died a fourth time and was not continued again
    for n in range(3):
        assert await led.record_continuation(
            ids["gave_up"],
            dead_run_id=f"run-db-02-{n}",
            detail={"via": "deployment"},
            now=t + (10 + n) * M,
        )
    await led.record_audit(
        "reconcile_gave_up",
        {"dead_run_id": "run-db-02-3", "continuations": 3},
        now=t + 14 * M,
        action_id=ids["gave_up"],
    )
    # "expired": its waiting run died before any decision
    await led.set_action_status(ids["expired"], ActionStatus.EXPIRED, now=t + 15 * M)
    await led.record_audit(
        "reconcile_expired", {"dead_run_id": "run-db-03"}, now=t + 15 * M, action_id=ids["expired"]
    )
    await led.record_relapses(
        ps["finished"].fingerprints, window=timedelta(hours=24), now=t + 20 * M
    )
    await led.record_cycle_end("c2", actions_dispatched=6, report={"cost_usd": 0.02}, now=t + 5 * M)

    # components, alerts, escalations
    for component, at in (
        ("cycle", t + 5 * M),
        ("listener", t + 20 * M),
        ("reconciler", t + 20 * M),
    ):
        await led.heartbeat(component, now=at, detail=f"{component} ok")
    assert await led.set_alert_state("remediation_cycle_stale", firing=True, now=t, detail="x")
    assert await led.set_alert_state("remediation_cycle_stale", firing=False, now=t + 5 * M)
    assert await led.set_alert_state("listener_stale", firing=True, now=t + 6 * M, detail="y")
    assert await led.claim_escalation(
        ps["ineffective"].fingerprints[0], latest_attempt=T0 + 9 * M, now=t
    )
    return ids


def ddl(dialect: object) -> list[str]:
    out = []
    for table in metadata.sorted_tables:
        out.append(str(CreateTable(table).compile(dialect=dialect)).strip())
        out += [str(CreateIndex(i).compile(dialect=dialect)).strip() for i in table.indexes]
    return out


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with Ledger(f"sqlite+aiosqlite:///{tmp}/ledger.db") as led:
            versions = await led.ensure_schema()
            ids = await write(led)
            async with led.engine.connect() as conn:
                rows = {
                    t.name: [dict(r._mapping) for r in await conn.execute(select(t))]
                    for t in metadata.sorted_tables
                }
    fixture = {
        "written_by": "baf8500 (tests/clients/data/make_ledger_v1.py)",
        "schema_version": versions,
        "action_ids": ids,
        "ddl": {"sqlite": ddl(sqlite.dialect()), "postgresql": ddl(postgresql.dialect())},
        "rows": rows,
    }
    out.write_text(json.dumps(fixture, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
