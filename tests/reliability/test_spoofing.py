"""Approval spoofing: every way to fake or stretch an approval, against one low-risk and
one high-risk action that nobody allowed may approve — none of them runs anything.

The low-risk entry forbids deadline defaults from running it, so at the deadline both
are rejected; the only way to run either would be a spoof that counts.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType

from core.policy import RiskRegister, load_policy
from core.settings import ListenerSettings
from flows.approval_listener import run_listener
from flows.remediate_action import remediate_action
from tests.fixtures.loki_discord import BOT_USER_ID, CHANNEL_ID, OTHER_BOT_ID
from tests.fixtures.stack import FAST_SETTINGS, Stack
from tests.flows.actions import paused_runs, policy_with, proposal
from tests.flows.helpers import eventually
from tests.reliability.support import posts, rows

DEADLINE = 10
REGISTER = {
    name: {**level, "deadline_seconds": DEADLINE}
    for name, level in RiskRegister().model_dump().items()
}
POLICY = policy_with(deadline_default_may_run=False, risk=REGISTER)
SETTINGS = {**FAST_SETTINGS, "settle_seconds": 0}


def _listener(stack: Stack, polls: list[Any] | None = None) -> tuple[asyncio.Task, list[bool]]:
    stop = [False]

    async def count(stats: Any) -> None:
        if polls is not None:
            polls.append(stats)

    task = asyncio.create_task(
        run_listener(
            stack.names,
            load_policy(POLICY),
            ListenerSettings(poll_seconds=0.5),
            stop=lambda: stop[0],
            on_poll=count,
        )
    )
    return task, stop


async def _resume(run_id: Any, run_input: dict[str, Any]) -> tuple[str, str]:
    async with get_client() as client:
        answer = await client.resume_flow_run(run_id, run_input=run_input)
    return str(answer.status.value), str(getattr(answer.details, "reason", "") or "")


async def _votes(stack: Stack, action_id: str) -> dict[str, Any]:
    async with stack.ledger() as ledger:
        return {v.username: v for v in await ledger.actions.votes(action_id)}


async def test_no_spoofed_or_late_approval_runs_anything(stack: Stack) -> None:
    low = proposal(POLICY, host="web-02", risk="low", cycle_id="c-spoof")
    high = proposal(POLICY, host="db-01", risk="high", cycle_id="c-spoof")
    runs = [
        asyncio.create_task(
            remediate_action(
                action=a.model_dump(mode="json"),
                policy=POLICY,
                blocks=stack.names,
                settings=SETTINGS,
                return_state=True,
            )
        )
        for a in (low, high)
    ]
    listener = None
    try:
        [low_run] = await eventually(lambda: paused_runs(low.action_id), what="low paused")
        [high_run] = await eventually(lambda: paused_runs(high.action_id), what="high paused")
        async with stack.ledger() as ledger:
            low_req = (await ledger.actions.get_action(low.action_id)).request
            high_req = (await ledger.actions.get_action(high.action_id)).request

        # Before any listener reads it: an approver's ✅ added, then removed.
        stack.discord.react(CHANNEL_ID, low_req.message_id, "✅", "alice")
        stack.discord.unreact(CHANNEL_ID, low_req.message_id, "✅", "alice")
        # Resumes the Prefect server itself refuses: the run stays paused.
        refused = [
            await _resume(low_run.id, {"decision": "maybe"}),
            await _resume(low_run.id, {"decision": "approve", "approver": "alice"}),
            await _resume(low_run.id, {}),
        ]
        assert [status for status, _ in refused] == ["REJECT"] * 3
        assert "'maybe' is not one of ['approve', 'reject']" in refused[0][1]
        assert "'approver' was unexpected" in refused[1][1]
        assert "'decision' is a required property" in refused[2][1]
        # A UI approve of a high-risk action: accepted by Prefect, refused by the run.
        assert (await _resume(high_run.id, {"decision": "approve"}))[0] == "ACCEPT"
        [gated] = await eventually(
            lambda: posts(stack, "🔒 Still gated: noop_fix on db-01"), what="the refusal"
        )
        await eventually(lambda: _paused_again(high.action_id), what="high re-gated")

        polls: list[Any] = []
        listener, stop = _listener(stack, polls)
        # Bots (one holds the approver role), a member without it, a non-member; the
        # bot's own ✅ is on both messages already. An approver's ✅ on ANOTHER message
        # (the other action's, and the "still gated" notice).
        for message_id in (low_req.message_id, high_req.message_id):
            for user in ("helper-bot", "mallory", "dave"):
                stack.discord.react(CHANNEL_ID, message_id, "✅", user)
        stack.discord.react(CHANNEL_ID, high_req.message_id, "✅", "alice")  # 1 of 2 for high
        stack.discord.react(CHANNEL_ID, gated.id, "✅", "bob")

        async def seen() -> bool:
            return len(await _votes(stack, high.action_id)) == 3  # mallory, dave, alice

        await eventually(seen, what="the votes read")
        after = len(polls) + 2
        await eventually(lambda: len(polls) >= after, what="two more polls")  # nothing comes
        for a in (low, high):
            async with stack.ledger() as ledger:
                assert (await ledger.actions.get_action(a.action_id)).decision is None
        stop[0] = True
        await asyncio.wait_for(listener, 30)

        # Past the deadline, with no listener running, approvers finally approve.
        deadline = max(low_req.deadline, high_req.deadline)
        await eventually(lambda: datetime.now(UTC) > deadline, timeout=30, what="deadline")
        stack.discord.react(CHANNEL_ID, low_req.message_id, "✅", "carol")
        stack.discord.react(CHANNEL_ID, high_req.message_id, "✅", "bob")
        listener, stop = _listener(stack)
        states = await asyncio.wait_for(asyncio.gather(*runs), 90)
        stop[0] = True
        await asyncio.wait_for(listener, 30)
    finally:
        for task in [*runs, listener]:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    assert [(await s.aresult()).status for s in states] == ["rejected", "rejected"]
    assert stack.awx.received("POST") == []  # nothing launched, ever
    async with stack.ledger() as ledger:
        for a in (low, high):
            d = (await ledger.actions.get_action(a.action_id)).decision
            assert (d.decision, d.via, d.decider) == ("reject", "deadline", "deadline default")
    for req in (low_req, high_req):
        message = stack.discord.message(CHANNEL_ID, req.message_id)
        assert message.content == "⏰ Deadline passed with no decision: will not run"
    low_votes, high_votes = await _votes(stack, low.action_id), await _votes(stack, high.action_id)
    assert set(low_votes) == {"mallory", "dave", "carol"}  # alice's removed ✅ never seen
    assert set(high_votes) == {"mallory", "dave", "alice", "bob"}
    assert low_votes["carol"].first_seen_at > low_req.deadline
    assert high_votes["bob"].first_seen_at > high_req.deadline
    voters = {r["user_id"] for r in rows(stack.ledger_url, "votes")}
    assert BOT_USER_ID not in voters and OTHER_BOT_ID not in voters  # bots never recorded
    events = [e["event"] for e in rows(stack.ledger_url, "audit")]
    assert events.count("ui_approve_refused") == 1


async def _paused_again(action_id: str) -> bool:
    runs = await paused_runs(action_id)
    return any(
        "regate" in (r.state.state_details.pause_key or "")
        for r in runs
        if r.state and r.state.type == StateType.PAUSED
    )
