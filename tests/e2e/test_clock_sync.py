"""The ninth check end to end: a simulated host's clock drifts, the cycle raises a
clock-sync issue, the sandbox model proposes `restart_time_sync`, alice approves it in
Discord, AWX runs the real playbook against the fleet and verification finds the clock
back in sync. The fast path of `tests/flows/test_verification.py`: the action runs as an
in-process subflow of the cycle, the real listener reads the reaction."""

from __future__ import annotations

import asyncio

import pytest

from core.records import ActionStatus
from core.report import CycleOutcome, CycleReport
from flows.remediation_cycle import remediation_cycle
from tests.fixtures.loki_discord import CHANNEL_ID
from tests.fixtures.stack import FAST_POLICY, FAST_SETTINGS, Stack
from tests.flows.helpers import approval_messages, eventually, listener

RESTART_TIME_SYNC = 16  # the real playbook (AWX sandbox template)
FP = "web-02|clock_sync|-"


async def drift(stack: Stack, host: str) -> None:
    stack.fleet.patch(host, {"clock": {"synced": False, "offset_seconds": 2.5}})
    await stack.scraped(f'node_timex_sync_status{{instance="{host}"}} == 0')


@pytest.mark.slow
async def test_a_drifting_clock_is_restarted_into_sync_and_verified_effective(
    stack: Stack,
) -> None:
    await drift(stack, "web-02")
    async with listener(stack):
        cycle = asyncio.create_task(cycle_with_inline_actions(stack))
        [request] = await eventually(lambda: approval_messages(stack), what="the approval request")
        assert request.embeds[0]["title"] == (
            "🟢 Approve restart_time_sync on web-02? React ✅ or ❌"
        )
        stack.discord.react(CHANNEL_ID, request.id, "✅", "alice")
        report = await asyncio.wait_for(cycle, timeout=120)

    # the issue, and the action the sandbox model proposed for it
    assert report.outcome is CycleOutcome.ACTIONS
    [issue] = report.issues
    assert (issue.fingerprint, issue.value) == (FP, 1.0)
    [action] = report.actions
    assert (action.host, action.catalog_key, action.risk) == ("web-02", "restart_time_sync", "low")
    assert action.policy == "allowed" and action.dispatched

    # AWX ran the real playbook on web-02 only, and the fleet's clock is in sync again
    [job] = stack.awx.jobs()
    assert (job.template.id, job.limit, job.status) == (RESTART_TIME_SYNC, "web-02", "successful")
    assert job.extra_vars["unit"] == "systemd-timesyncd.service"
    clock = stack.fleet.state("web-02").clock
    assert (clock.synced, clock.offset_seconds) == (True, 0.0)

    # verified effective by the re-check of the clock, and recorded so
    [embed] = [
        m.embeds[0]
        for m in stack.discord.messages(CHANNEL_ID)
        if m.embeds and (m.embeds[0].get("title") or "").startswith("✅ EFFECTIVE")
    ]
    assert embed["title"] == "✅ EFFECTIVE: restart_time_sync on web-02"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Metric before → after"] == "clock_sync: 1 → 0"
    assert "restart_time_sync systemd-timesyncd.service" in fields["Last output lines"]
    async with stack.ledger() as ledger:
        rec = await ledger.actions.get_action(action.action_id)
        assert rec is not None and rec.status is ActionStatus.FINISHED
        assert rec.proposal.issues[0].summary == (
            "Clock out of sync (unsynchronised or offset > 50 ms)"
        )
        assert FP not in {e["fingerprint"] for e in await ledger.episodes.open_episodes()}


async def cycle_with_inline_actions(stack: Stack) -> CycleReport:
    return await remediation_cycle(
        policy=FAST_POLICY,
        blocks=stack.names,
        dispatch="inline",
        dispatch_options={"settings": FAST_SETTINGS},
    )
