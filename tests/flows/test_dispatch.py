"""Dispatch from the cycle to the `remediate_action` deployment, run by a real `serve`
process: the cycle completes while its actions wait, paused, for people."""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType

from core.report import CycleOutcome
from flows.remediation_cycle import remediation_cycle
from tests.fixtures.loki_discord import CHANNEL_ID
from tests.fixtures.serve import ServedDeployment
from tests.fixtures.stack import FAST_POLICY, FAST_SETTINGS, Stack
from tests.flows.actions import paused_runs, resume
from tests.flows.helpers import eventually

BROKEN = {
    "web-01": ["nginx.service", "cron.service"],
    "web-02": ["nginx.service", "ssh.service"],
    "db-01": ["nginx.service"],
}


async def test_cycle_completes_while_five_actions_wait_paused(
    stack: Stack, action_worker: ServedDeployment
) -> None:
    await action_worker.ready()
    for host, units in BROKEN.items():
        stack.fleet.patch(host, {"units": {u: {"state": "failed"} for u in units}})
    await stack.scraped('count(node_systemd_unit_state{state="failed"} == 1) == 5')
    report = await remediation_cycle(
        policy=FAST_POLICY,
        blocks=stack.names,
        dispatch="deployment",
        dispatch_options={"settings": FAST_SETTINGS},
    )
    assert report.outcome is CycleOutcome.ACTIONS
    assert len(report.actions) == 5 and all(a.dispatched for a in report.actions)
    try:
        paused = await eventually(lambda: _five(paused_runs()), timeout=120, what="5 paused")
    except AssertionError:
        async with get_client() as client:
            runs = await client.read_flow_runs()
        states = [(r.name, r.state.name, r.state.message) for r in runs]
        raise AssertionError(f"{states}\n{action_worker.tail()}") from None
    async with get_client() as client:
        cycle = await client.read_flow_run(
            paused[0].parent_task_run_id
            and (await client.read_task_run(paused[0].parent_task_run_id)).flow_run_id
        )
    assert cycle.state.type is StateType.COMPLETED  # finished while its actions wait
    assert {str(r.id) for r in paused} == {a.flow_run_id for a in report.actions}
    assert (
        len(
            [
                m
                for m in stack.discord.messages(CHANNEL_ID)
                if "Approve restart_unit" in (m.embeds[0].get("title") or "")
            ]
        )
        == 5
    )
    # the capacity cap turns the overflow into a manual issue that says why
    stack.fleet.patch("db-01", {"units": {"cron.service": {"state": "failed"}}})
    await stack.scraped('count(node_systemd_unit_state{state="failed"} == 1) == 6')
    capped = await remediation_cycle(
        policy={**FAST_POLICY, "max_pending_approvals": 5},
        blocks=stack.names,
        dispatch="deployment",
        dispatch_options={"settings": FAST_SETTINGS},
    )
    [overflow] = capped.actions
    assert overflow.policy.startswith("approval capacity reached") and not overflow.dispatched
    assert "approval capacity reached" in str(stack.discord.messages(CHANNEL_ID)[-1].embeds)
    for run in paused:
        assert await resume(run.id, "reject", "test cleanup") == "ACCEPT"
    await eventually(lambda: _none(paused_runs()), timeout=60, what="runs to finish")


async def _five(runs_coro):
    runs = await runs_coro
    return runs if len(runs) == 5 else None


async def _none(runs_coro):
    return not await runs_coro
