"""Ledger retention (pruning keeps the attempt window, open episodes and unfinished
actions) and the facts the self-metrics read — on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clients.ledger import Ledger
from core.analysis import ModelAction
from core.models import CheckName, Issue, Severity
from core.policy import Policy, policy_hash
from core.records import ActionStatus, ApprovalRequest, Decision
from core.vetting import ProposedAction, vet_actions

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
WINDOW = 24 * H  # the policy's attempt window
TTL = timedelta(hours=6)


def issue(host: str) -> Issue:
    return Issue(host=host, check=CheckName.FAILED_UNIT, subject="nginx.service",
                 severity=Severity.CRITICAL, observed_at=T0)  # fmt: skip


def proposal(host: str, cycle_id: str, at: datetime) -> ProposedAction:
    """A real vetted action for `host` (core.vetting builds it)."""
    policy = Policy()
    [p] = vet_actions(
        [ModelAction(catalog_key="restart_unit", host=host, risk="low",
                     parameters={"unit": "nginx.service"})],
        [issue(host)], policy=policy, policy_hash=policy_hash(policy), history={},
        pending_approvals=0, cycle_id=cycle_id, now=at,
    ).approved  # fmt: skip
    return p


async def act(
    led: Ledger, host: str, cycle_id: str, at: datetime, *, ended: datetime | None
) -> str:
    """One action through request, vote and decision; with `ended`, also a job and an
    attempt and a terminal status at that time."""
    p = proposal(host, cycle_id, at)
    await led.operations.record_cycle_start(cycle_id, flow_run_id=None, now=at)
    await led.actions.record_actions([p], now=at)
    await led.actions.record_approval_request(ApprovalRequest(
        action_id=p.action_id, channel_id="c", message_id="m", flow_run_id="r", risk=p.risk,
        deadline=at + H, policy_hash=p.policy_hash, requested_at=at))  # fmt: skip
    await led.actions.sync_votes(p.action_id, [("u1", "alice", "✅")], now=at)
    await led.operations.record_audit("approval_requested", {}, now=at, action_id=p.action_id)
    if ended is None:
        return p.action_id
    decided = at + timedelta(minutes=2)
    await led.actions.record_decision_intent(
        Decision(
            action_id=p.action_id,
            decision="approve",
            decider="alice",
            via="discord",
            intended_at=decided,
        )
    )
    await led.actions.mark_decision_applied(p.action_id, now=decided)
    assert (
        await led.jobs.claim_launch(
            action_id=p.action_id,
            host=host,
            runner="awx",
            template="10",
            marker=p.action_id,
            max_running=5,
            now=decided,
        )
        == "claimed"
    )
    await led.jobs.record_job_launched(p.action_id, job_id="7", job_url=None, now=decided)
    await led.jobs.record_job_state(p.action_id, state="successful", finished=True, now=ended)
    await led.episodes.record_attempt(
        action_id=p.action_id,
        fingerprints=p.fingerprints,
        host=host,
        catalog_key=p.catalog_key,
        outcome="ineffective",
        counts=True,
        explanation="",
        now=ended,
    )
    await led.actions.set_action_status(p.action_id, ActionStatus.FINISHED, now=ended)
    await led.operations.record_cycle_end(cycle_id, actions_dispatched=1, report={}, now=at)
    return p.action_id


async def episode(led: Ledger, host: str, at: datetime, *, closed: datetime | None) -> None:
    fp = issue(host).fingerprint
    await led.episodes.claim_issues([issue(host)], cycle_id="c-ep", now=at, ttl=TTL)
    await led.episodes.confirm_reported([fp], cycle_id="c-ep", now=at)
    if closed is not None:
        cleared = await led.episodes.close_cleared(
            set(), checks_ok={"failed_unit"}, hosts_up={host}, now=closed
        )
        assert cleared == [fp]


async def history(led: Ledger) -> dict:
    fps = [issue(h).fingerprint for h in ("web-01", "web-02", "web-03", "web-04")]
    return await led.episodes.attempt_history(fps, since=T0 - WINDOW)


async def test_prune_keeps_attempt_window_open_episodes_and_unfinished_actions(
    ledger: Ledger,
) -> None:
    old_done = await act(ledger, "web-01", "c-old", T0 - 48 * H, ended=T0 - 47 * H)
    in_window = await act(ledger, "web-02", "c-window", T0 - 12 * H, ended=T0 - 11 * H)
    old_open = await act(ledger, "web-03", "c-open", T0 - 48 * H, ended=None)
    recent = await act(ledger, "web-04", "c-recent", T0 - 2 * H, ended=T0 - H)
    await episode(ledger, "db-09", T0 - 72 * H, closed=None)  # open for three days
    await episode(ledger, "web-01", T0 - 50 * H, closed=T0 - 47 * H)
    await ledger.operations.record_audit("cycle_note", {}, now=T0 - 48 * H, cycle_id="c-old")
    await ledger.operations.record_audit("cycle_note", {}, now=T0 - H, cycle_id="c-recent")
    before = await history(ledger)
    assert len(before[issue("web-02").fingerprint]) == 1  # inside the window

    # older_than is shorter than the attempt window: the window wins
    deleted = await ledger.operations.prune(older_than=2 * H, now=T0, keep=WINDOW)

    assert deleted == {
        "votes": 1, "decisions": 1, "approval_requests": 1, "jobs": 1, "continuations": 0,
        "actions": 1,
        "audit": 2, "attempts": 1, "issue_episodes": 1, "cycles": 1,
    }  # fmt: skip
    assert await ledger.actions.get_action(old_done) is None
    assert await ledger.operations.audit_trail(action_id=old_done) == []
    assert await history(ledger) == before  # the attempt window is intact
    kept = await ledger.actions.get_action(in_window)
    assert kept is not None and kept.job is not None and kept.decision is not None
    still_open = await ledger.actions.get_action(old_open)  # unfinished: kept whatever its age
    assert still_open is not None and still_open.request is not None
    assert len(await ledger.actions.votes(old_open)) == 1
    assert len(await ledger.operations.audit_trail(action_id=old_open)) == 1
    assert await ledger.actions.get_action(recent) is not None
    assert [e["host"] for e in await ledger.episodes.open_episodes()] == ["db-09"]
    assert await ledger.episodes.episode_count(issue("web-01").fingerprint) == 0
    assert await ledger.operations.cycle_flow_run("c-open") is None  # row kept (no run id recorded)
    counts = await ledger.operations.row_counts()
    assert counts["cycles"] == 3 and counts["actions"] == 3
    # nothing more to do the second time
    assert set((await ledger.operations.prune(older_than=2 * H, now=T0, keep=WINDOW)).values()) == {
        0
    }


async def test_prune_respects_a_longer_age(ledger: Ledger) -> None:
    await act(ledger, "web-01", "c-old", T0 - 48 * H, ended=T0 - 47 * H)
    deleted = await ledger.operations.prune(older_than=72 * H, now=T0, keep=WINDOW)
    assert set(deleted.values()) == {0}
    deleted = await ledger.operations.prune(older_than=46 * H, now=T0, keep=WINDOW)
    assert deleted["actions"] == 1 and deleted["attempts"] == 1


async def test_metric_facts_of_the_window(ledger: Ledger) -> None:
    await act(ledger, "web-01", "c-old", T0 - 48 * H, ended=T0 - 47 * H)  # outside
    await act(ledger, "web-02", "c-window", T0 - 12 * H, ended=T0 - 11 * H)
    await act(ledger, "web-03", "c-open", T0 - H, ended=None)
    await ledger.operations.record_cycle_end(
        "c-open", actions_dispatched=1, now=T0,
        report={"usage": {"input_tokens": 100, "output_tokens": 20,
                          "cache_read_input_tokens": 5}, "cost_usd": 0.25},
    )  # fmt: skip
    await ledger.operations.heartbeat("listener", now=T0 - timedelta(seconds=30))
    await ledger.operations.set_alert_state("dead-mans-switch-listener", firing=True, now=T0)

    facts = await ledger.operations.metric_facts(now=T0, window=WINDOW)

    [approval] = facts.approvals
    assert (approval.outcome, approval.via, approval.latency_seconds) == (
        "approved", "discord", 120.0)  # fmt: skip
    [job] = facts.jobs
    assert (job.state, job.duration_seconds) == ("successful", pytest.approx(3480.0))
    assert facts.verdicts == {"ineffective": 1}
    assert facts.pending_approvals == 1
    assert facts.running_jobs == 0
    assert facts.cycles == 2  # c-window and c-open started in the window
    assert facts.usage.input_tokens == 100 and facts.usage.cache_read_input_tokens == 5
    assert facts.cost_usd == pytest.approx(0.25)
    assert facts.heartbeats["listener"] == T0 - timedelta(seconds=30)
    assert facts.alerts == {"dead-mans-switch-listener": True}
