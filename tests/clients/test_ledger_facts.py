"""Facts in columns, not read back from audit events (schema v2), on SQLite and on a real
PostgreSQL: continuations, giving up, decisions announced, verdicts — each written once,
each still leaving its audit event as the human record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clients.ledger import REPOSITORIES, Ledger
from core.analysis import ModelAction
from core.models import CheckName, Issue, Severity
from core.policy import Policy, policy_hash
from core.records import ActionStatus, ApprovalRequest, Decision
from core.vetting import ProposedAction, vet_actions

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def proposal(host: str, cycle: str = "c1") -> ProposedAction:
    policy = Policy()
    found = Issue(host=host, check=CheckName.FAILED_UNIT, subject="nginx.service",
                  severity=Severity.CRITICAL, observed_at=T0)  # fmt: skip
    [p] = vet_actions(
        [ModelAction(catalog_key="restart_unit", host=host, risk="low",
                     parameters={"unit": "nginx.service"})],
        [found], policy=policy, policy_hash=policy_hash(policy), history={},
        pending_approvals=0, cycle_id=cycle, now=T0,
    ).approved  # fmt: skip
    return p


async def requested(led: Ledger, host: str, cycle: str = "c1") -> ProposedAction:
    p = proposal(host, cycle)
    await led.actions.record_actions([p], now=T0)
    await led.actions.record_approval_request(ApprovalRequest(
        action_id=p.action_id, channel_id="c", message_id=f"m-{host}", flow_run_id="r",
        risk=p.risk, deadline=T0 + H, policy_hash=p.policy_hash, requested_at=T0))  # fmt: skip
    return p


async def applied(led: Ledger, p: ProposedAction) -> None:
    await led.actions.record_applied_decision(Decision(
        action_id=p.action_id, decision="approve", decider="alice", via="discord",
        intended_at=T0, applied_at=T0))  # fmt: skip


async def events(led: Ledger, action_id: str, name: str) -> list[dict]:
    return [e for e in await led.operations.audit_trail(action_id=action_id) if e["event"] == name]


async def test_a_dead_run_is_continued_once_and_counted(ledger: Ledger) -> None:
    p = await requested(ledger, "web-01")
    [live] = (await ledger.jobs.action_liveness([p.action_id])).values()
    assert live.continuations == 0 and not live.gave_up
    assert not await ledger.jobs.continued_from(p.action_id, "run-1")
    assert await ledger.jobs.record_continuation(
        p.action_id, dead_run_id="run-1", detail={"via": "deployment"}, now=T0
    )
    assert not await ledger.jobs.record_continuation(
        p.action_id, dead_run_id="run-1", detail={"via": "deployment"}, now=T0 + H
    )
    assert await ledger.jobs.record_continuation(
        p.action_id, dead_run_id="run-2", detail={}, now=T0 + H
    )
    assert await ledger.jobs.continued_from(p.action_id, "run-1")
    assert not await ledger.jobs.continued_from(p.action_id, "run-3")
    assert (await ledger.jobs.action_liveness([p.action_id]))[p.action_id].continuations == 2
    rows = await events(ledger, p.action_id, "reconcile_continued")
    assert [r["detail"]["dead_run_id"] for r in rows] == ["run-1", "run-2"]


async def test_giving_up_is_recorded_once(ledger: Ledger) -> None:
    p = await requested(ledger, "web-01")
    other = await requested(ledger, "web-02")
    assert await ledger.jobs.record_gave_up(p.action_id, {"dead_run_id": "r4"}, now=T0)
    assert not await ledger.jobs.record_gave_up(p.action_id, {"dead_run_id": "r5"}, now=T0 + H)
    live = await ledger.jobs.action_liveness([p.action_id, other.action_id])
    assert live[p.action_id].gave_up and not live[other.action_id].gave_up
    [row] = await events(ledger, p.action_id, "reconcile_gave_up")
    assert row["detail"] == {"dead_run_id": "r4"}


async def test_an_announced_decision_is_not_announced_again(ledger: Ledger) -> None:
    a, b = await requested(ledger, "web-01"), await requested(ledger, "web-02")
    await applied(ledger, a)
    await applied(ledger, b)
    since = T0 - H
    assert set(await ledger.actions.decisions_to_announce(since=since)) == {
        a.action_id,
        b.action_id,
    }
    assert await ledger.actions.mark_decision_announced(a.action_id, "✅ Approved", now=T0)
    assert not await ledger.actions.mark_decision_announced(a.action_id, "again", now=T0 + H)
    assert await ledger.actions.decisions_to_announce(since=since) == [b.action_id]
    [row] = await events(ledger, a.action_id, "decision_announced")
    assert row["detail"] == {"message_id": "m-web-01", "text": "✅ Approved"}


async def test_a_cycles_verdicts_are_those_of_its_actions(ledger: Ledger) -> None:
    a, b = await requested(ledger, "web-01"), await requested(ledger, "web-02")
    elsewhere = await requested(ledger, "web-03", cycle="c2")
    assert await ledger.actions.cycle_verdicts("c1") == {}
    await ledger.actions.record_verdict(a.action_id, "unverified", now=T0)
    await ledger.actions.record_verdict(a.action_id, "effective", now=T0 + H)  # latest stands
    await ledger.actions.record_verdict(elsewhere.action_id, "ineffective", now=T0)
    assert await ledger.actions.cycle_verdicts("c1") == {a.action_id: "effective"}
    assert b.action_id not in await ledger.actions.cycle_verdicts("c1")
    assert await ledger.actions.cycle_verdicts("c2") == {elsewhere.action_id: "ineffective"}


async def test_pruning_an_action_prunes_its_continuations(ledger: Ledger) -> None:
    p = await requested(ledger, "web-01")
    await ledger.jobs.record_continuation(p.action_id, dead_run_id="r1", detail={}, now=T0)
    await ledger.actions.set_action_status(p.action_id, ActionStatus.FINISHED, now=T0)
    deleted = await ledger.operations.prune(older_than=H, now=T0 + 2 * H)
    assert deleted["continuations"] == 1 and deleted["actions"] == 1
    assert (await ledger.operations.row_counts())["continuations"] == 0


def test_every_repository_method_has_one_home() -> None:
    methods = [
        name
        for cls in REPOSITORIES.values()
        for name in vars(cls)
        if not name.startswith("_") and callable(getattr(cls, name))
    ]
    assert len(methods) == len(set(methods))
    assert not set(REPOSITORIES) & set(methods)  # `ledger.actions` is no method
