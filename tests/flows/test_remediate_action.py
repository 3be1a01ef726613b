"""`remediate_action`: the approval message, pause/resume, UI rules, expiry, restarts."""

from __future__ import annotations

import asyncio
import re

import pytest
from prefect.client.orchestration import get_client

from core.records import ActionStatus
from flows.remediate_action import remediate_action
from tests.fixtures.loki_discord import APPROVER_ROLE_ID, CHANNEL_ID
from tests.fixtures.stack import FAST_SETTINGS, Stack
from tests.flows.actions import paused_runs, policy_with, proposal, resume
from tests.flows.helpers import approval_messages, eventually, titles

SETTINGS = {**FAST_SETTINGS, "ui_url": "http://127.0.0.1:4200"}


def start(stack: Stack, action, policy) -> asyncio.Task:
    return asyncio.create_task(
        remediate_action(
            action=action.model_dump(mode="json"),
            policy=policy,
            blocks=stack.names,
            settings=SETTINGS,
            return_state=True,
        )
    )


@pytest.mark.parametrize(
    ("risk", "emoji", "color", "at_deadline", "quorum"),
    [
        ("low", "🟢", 0x2ECC71, "runs automatically", ""),
        ("medium", "🟡", 0xF1C40F, "runs automatically", ""),
        ("high", "🔴", 0xE74C3C, "will not run", "2 approvers needed"),
    ],
)
async def test_approval_message_for_each_risk(
    stack: Stack, risk: str, emoji: str, color: int, at_deadline: str, quorum: str
) -> None:
    policy = policy_with(min_risk=risk)
    action = proposal(policy, risk=risk)
    run = start(stack, action, policy)
    [paused] = await eventually(lambda: paused_runs(action.action_id), what="paused run")
    [message] = approval_messages(stack)
    embed = message.embeds[0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert embed["title"] == f"{emoji} Approve noop_fix on web-02? React ✅ or ❌"
    assert embed["color"] == color
    assert fields["Host"] == "`web-02`"
    assert risk in fields["Risk"] and quorum in fields["Risk"]
    assert '"unit": "nginx.service"' in fields["Parameters"]
    assert "Unit failed: nginx.service" in fields["Issue and evidence"]
    assert "a restart should fix it" in fields["Reason (Claude)"]
    assert "nginx.service active" in fields["Expected outcome"]
    assert fields["Earlier attempts on this issue"] == "no earlier attempts"
    assert fields["Who may approve"] == f"<@&{APPROVER_ROLE_ID}>"
    assert re.search(r"<t:\d+:R>", fields["Deadline"]) and at_deadline in fields["Deadline"]
    assert f"/v2/runs/flow-run/{paused.id}" in fields["Prefect"]
    assert message.allowed_mentions == {"parse": []}
    assert message.pings == []
    assert {e for e, users in stack.discord.reactions(CHANNEL_ID, message.id).items() if users} == {
        "✅",
        "❌",
    }
    async with stack.ledger() as ledger:
        record = await ledger.actions.get_action(action.action_id)
    assert record.status is ActionStatus.AWAITING_APPROVAL
    assert record.request.message_id == message.id
    assert record.request.policy_hash == action.policy_hash
    assert str(record.request.flow_run_id) == str(paused.id)
    assert await resume(paused.id, "reject") == "ACCEPT"
    state = await asyncio.wait_for(run, 60)
    assert state.is_completed()


async def test_ui_reject_ends_cleanly_and_nothing_launches(stack: Stack) -> None:
    policy = policy_with()
    action = proposal(policy)
    run = start(stack, action, policy)
    [paused] = await eventually(lambda: paused_runs(action.action_id))
    assert await resume(paused.id, "reject", "not now") == "ACCEPT"
    state = await asyncio.wait_for(run, 60)
    assert state.is_completed()
    assert (await state.aresult()).status == "rejected"
    assert stack.awx.launches(30) == 0
    assert any(t.startswith("❌ Rejected: noop_fix on web-02") for t in titles(stack))
    async with stack.ledger() as ledger:
        record = await ledger.actions.get_action(action.action_id)
        trail = await ledger.operations.audit_trail(action_id=action.action_id)
    assert record.decision.via == "ui" and record.decision.decider == "Prefect UI"
    assert record.decision.comment == "not now" and record.status is ActionStatus.REJECTED
    assert [e["event"] for e in trail] == ["approval_requested", "decision"]


async def test_ui_approve_honoured_for_medium(stack: Stack) -> None:
    policy = policy_with(min_risk="medium")
    action = proposal(policy, risk="medium")
    run = start(stack, action, policy)
    [paused] = await eventually(lambda: paused_runs(action.action_id))
    assert await resume(paused.id, "approve") == "ACCEPT"
    state = await asyncio.wait_for(run, 90)
    assert state.is_completed()
    assert stack.awx.launches(30) == 1
    async with stack.ledger() as ledger:
        record = await ledger.actions.get_action(action.action_id)
    assert (record.decision.via, record.decision.decision) == ("ui", "approve")


async def test_ui_approve_refused_and_regated_for_high(stack: Stack) -> None:
    policy = policy_with(min_risk="high")
    action = proposal(policy, risk="high")
    run = start(stack, action, policy)
    [first] = await eventually(lambda: paused_runs(action.action_id))
    assert await resume(first.id, "approve") == "ACCEPT"
    # the same run pauses again, under a new key, for the Discord quorum
    [again] = await eventually(lambda: _paused_with_key(action.action_id, "regate"))
    assert again.id == first.id
    assert any(t.startswith("🔒 Still gated: noop_fix on web-02") for t in titles(stack))
    assert stack.awx.launches(30) == 0
    async with stack.ledger() as ledger:
        record = await ledger.actions.get_action(action.action_id)
        trail = await ledger.operations.audit_trail(action_id=action.action_id)
    assert record.decision is None
    assert "ui_approve_refused" in [e["event"] for e in trail]
    assert await resume(again.id, "reject") == "ACCEPT"  # a UI reject is always honoured
    assert (await asyncio.wait_for(run, 60)).is_completed()
    assert stack.awx.launches(30) == 0


async def _paused_with_key(action_id: str, fragment: str) -> list:
    runs = await paused_runs(action_id)
    return [r for r in runs if fragment in (r.state.state_details.pause_key or "")]


async def test_pause_timeout_runs_nothing_and_says_so(stack: Stack) -> None:
    policy = policy_with(
        risk={
            "low": {
                "emoji": "🟢",
                "color": 3066993,
                "deadline_seconds": 5,
                "default_at_deadline": "run",
            }
        }
    )
    action = proposal(policy)
    state = await remediate_action(
        action=action.model_dump(mode="json"),
        policy=policy,
        blocks=stack.names,
        settings={**SETTINGS, "pause_grace_seconds": 10},
        return_state=True,
    )
    assert state.is_failed()  # nobody decided and no listener applied the default
    assert stack.awx.launches(30) == 0
    assert any(t.startswith("⏱️ Expired: noop_fix on web-02 did not run") for t in titles(stack))
    async with stack.ledger() as ledger:
        record = await ledger.actions.get_action(action.action_id)
    assert record.status is ActionStatus.EXPIRED


async def test_restarted_run_neither_reposts_nor_reasks(stack: Stack) -> None:
    policy = policy_with()
    action = proposal(policy)
    first = start(stack, action, policy)
    [paused] = await eventually(lambda: paused_runs(action.action_id))
    first.cancel()  # the process running it goes away
    with pytest.raises(asyncio.CancelledError):
        await first
    async with get_client() as client:
        await client.set_flow_run_state(paused.id, _crashed(), force=True)
    second = start(stack, action, policy)
    [repaused] = await eventually(lambda: paused_runs(action.action_id))
    assert repaused.id != paused.id
    assert len(approval_messages(stack)) == 1  # not re-posted
    async with stack.ledger() as ledger:
        record = await ledger.actions.get_action(action.action_id)
    assert str(record.request.flow_run_id) == str(repaused.id)
    assert await resume(repaused.id, "approve") == "ACCEPT"
    assert (await asyncio.wait_for(second, 90)).is_completed()
    assert stack.awx.launches(30) == 1
    # a third run for the same action, after the decision: no pause, no launch, no post
    third = await remediate_action(
        action=action.model_dump(mode="json"),
        policy=policy,
        blocks=stack.names,
        settings=SETTINGS,
        return_state=True,
    )
    assert third.is_completed()
    assert stack.awx.launches(30) == 1
    assert len(approval_messages(stack)) == 1


def _crashed():
    from prefect.states import Crashed

    return Crashed(message="process killed (test)")
