"""An applied approve moves the action to `approved` (until its launch is claimed), on
SQLite and on a real PostgreSQL: the metric and the listener's queue count only
undecided requests; approval capacity still counts the live run waiting to launch."""

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


def proposal(host: str, unit: str = "nginx.service") -> ProposedAction:
    """A real vetted action (core.vetting builds it)."""
    policy = Policy()
    found = Issue(host=host, check=CheckName.FAILED_UNIT, subject=unit,
                  severity=Severity.CRITICAL, observed_at=T0)  # fmt: skip
    [p] = vet_actions(
        [ModelAction(catalog_key="restart_unit", host=host, risk="low",
                     parameters={"unit": unit})],
        [found], policy=policy, policy_hash=policy_hash(policy), history={},
        pending_approvals=0, cycle_id="c1", now=T0,
    ).approved  # fmt: skip
    return p


async def requested(led: Ledger, host: str, unit: str = "nginx.service") -> ProposedAction:
    """An action whose approval request is posted (it awaits a decision)."""
    p = proposal(host, unit)
    await led.actions.record_actions([p], now=T0)
    await led.actions.record_approval_request(ApprovalRequest(
        action_id=p.action_id, channel_id="c", message_id="m", flow_run_id="r", risk=p.risk,
        deadline=T0 + H, policy_hash=p.policy_hash, requested_at=T0))  # fmt: skip
    return p


def decision(p: ProposedAction, choice: str = "approve", via: str = "discord") -> Decision:
    return Decision(action_id=p.action_id, decision=choice, decider="alice", via=via,
                    intended_at=T0, applied_at=T0)  # fmt: skip


async def status(led: Ledger, p: ProposedAction) -> ActionStatus:
    record = await led.actions.get_action(p.action_id)
    assert record is not None
    return record.status


async def claim(led: Ledger, p: ProposedAction) -> str:
    return await led.jobs.claim_launch(action_id=p.action_id, host=p.host, runner="awx",
                                  template="10", marker=p.action_id, max_running=5,
                                  now=T0)  # fmt: skip


@pytest.mark.parametrize("via", ["discord", "ui", "deadline"])
async def test_an_applied_approve_is_recorded_approved_and_no_longer_counted_pending(
    ledger: Ledger, via: str
) -> None:
    holder = await requested(ledger, "web-02", "cron.service")
    await ledger.actions.record_applied_decision(decision(holder, via=via))
    assert await claim(ledger, holder) == "claimed"  # another job holds web-02
    waiting = await requested(ledger, "web-02")
    undecided = await requested(ledger, "web-03")

    await ledger.actions.record_applied_decision(decision(waiting, via=via))
    assert await claim(ledger, waiting) == "host_busy"

    assert await status(ledger, waiting) is ActionStatus.APPROVED
    assert await status(ledger, undecided) is ActionStatus.AWAITING_APPROVAL
    queue = await ledger.actions.actions_with_status(ActionStatus.AWAITING_APPROVAL)
    assert [r.proposal.action_id for r in queue] == [undecided.action_id]
    facts = await ledger.operations.metric_facts(now=T0, window=24 * H)
    assert facts.pending_approvals == 1  # only the undecided request
    # capacity counts every live run before its launch: the waiting one too
    assert await ledger.operations.pending_approvals() == 2

    await ledger.jobs.record_job_state(holder.action_id, state="successful", finished=True, now=T0)
    assert await claim(ledger, waiting) == "claimed"
    assert await status(ledger, waiting) is ActionStatus.LAUNCHING
    assert await ledger.operations.pending_approvals() == 1


async def test_an_intent_is_undecided_until_applied(ledger: Ledger) -> None:
    p = await requested(ledger, "web-02")
    await ledger.actions.record_decision_intent(decision(p).model_copy(update={"applied_at": None}))
    assert await status(ledger, p) is ActionStatus.AWAITING_APPROVAL
    assert (await ledger.operations.metric_facts(now=T0, window=H)).pending_approvals == 1

    await ledger.actions.mark_decision_applied(p.action_id, now=T0)
    assert await status(ledger, p) is ActionStatus.APPROVED
    assert (await ledger.operations.metric_facts(now=T0, window=H)).pending_approvals == 0


async def test_a_reject_or_a_refused_ui_approve_leaves_the_action_awaiting(ledger: Ledger) -> None:
    rejected = await requested(ledger, "web-02")
    await ledger.actions.record_applied_decision(decision(rejected, "reject"))
    assert await status(ledger, rejected) is ActionStatus.AWAITING_APPROVAL  # the run ends it
    regated = await requested(ledger, "web-03")
    ui = decision(regated, via="ui").model_copy(update={"applied_at": None})
    await ledger.actions.record_decision_intent(ui)
    await ledger.actions.clear_unapplied_decision(regated.action_id)  # the run re-gated it
    assert await status(ledger, regated) is ActionStatus.AWAITING_APPROVAL


async def test_approved_never_moves_an_action_back(ledger: Ledger) -> None:
    launched = await requested(ledger, "web-02")
    await ledger.actions.record_applied_decision(decision(launched))
    assert await claim(ledger, launched) == "claimed"
    await ledger.actions.record_applied_decision(decision(launched))  # a late confirmation
    assert await ledger.actions.mark_approved(launched.action_id, now=T0) is False
    assert await status(ledger, launched) is ActionStatus.LAUNCHING

    expired = await requested(ledger, "web-03")
    await ledger.actions.set_action_status(expired.action_id, ActionStatus.EXPIRED, now=T0)
    assert await ledger.actions.mark_approved(expired.action_id, now=T0) is False
    assert await status(ledger, expired) is ActionStatus.EXPIRED

    fresh = await requested(ledger, "web-04")
    assert await ledger.actions.mark_approved(fresh.action_id, now=T0) is True
    assert await status(ledger, fresh) is ActionStatus.APPROVED


async def test_suspended_approvals_are_the_undecided_ones_at_the_suspending_risks(
    ledger: Ledger,
) -> None:
    """Capacity by wait mode: an undecided action at a risk that waits suspended holds no
    process; once approved its run is live again and counts with the paused ones."""
    low = await requested(ledger, "web-02")  # risk low
    approved = await requested(ledger, "web-03")
    await ledger.actions.record_applied_decision(decision(approved))
    assert await ledger.operations.pending_approvals() == 2
    assert await ledger.operations.suspended_approvals(["low"]) == 1
    assert await ledger.operations.suspended_approvals(["high"]) == 0
    assert await ledger.operations.suspended_approvals([]) == 0
    assert low.risk.value == "low"
