"""One action through approval, launch, polling, verification and the result post."""

from __future__ import annotations

import asyncio

from flows.remediation_cycle import remediation_cycle
from tests.fixtures.loki_discord import CHANNEL_ID
from tests.fixtures.stack import FAST_POLICY, FAST_SETTINGS, Stack
from tests.flows.helpers import approval_messages, eventually, listener, titles


async def test_discord_approval_runs_the_job_and_verifies_it_effective(stack: Stack) -> None:
    stack.fleet.patch("web-02", {"units": {"nginx.service": {"state": "failed"}}})
    await stack.scraped(
        'node_systemd_unit_state{instance="web-02",name="nginx.service",state="failed"} == 1'
    )
    async with listener(stack):
        cycle = asyncio.create_task(
            remediation_cycle(
                policy=FAST_POLICY,
                blocks=stack.names,
                dispatch="inline",
                dispatch_options={"settings": FAST_SETTINGS},
            )
        )
        [request] = await eventually(lambda: approval_messages(stack), what="approval request")
        assert request.embeds[0]["title"].startswith("🟢 Approve restart_unit on web-02")
        stack.discord.react(CHANNEL_ID, request.id, "✅", "alice")
        report = await asyncio.wait_for(cycle, timeout=120)
    [action] = report.actions
    assert action.dispatched
    assert stack.awx.launches(10) == 1
    assert stack.fleet.state("web-02").units["nginx.service"].state == "active"
    assert any("EFFECTIVE: restart_unit on web-02" in t for t in titles(stack)), titles(stack)
    async with stack.ledger() as ledger:
        record = await ledger.actions.get_action(action.action_id)
    assert record.decision.decider == "alice" and record.decision.via == "discord"
    assert record.job.state == "successful"
