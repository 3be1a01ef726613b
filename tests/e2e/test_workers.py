"""Workers for real: `prefect worker start` processes on a `process` pool, running the
project's deployments with prefect.yaml's pull step (README, "Deploying with a worker").

- Stopping a worker with README's procedure (`deploy/stop-worker.sh`): it exits in
  seconds, none of its flow-run processes outlives it, and every run it had ends with a
  state — the listener Completed, a paused action Crashed, which the reconciler then
  expires. Cancelling a listener run from the UI still ends it Cancelled.
- A suspended approval (`wait: suspend`) holds no process: it survives a worker stop and
  a `prefect deploy` of the same deployment, and a new worker runs it exactly once when
  it is approved.
- Several workers on one pool, the Prefect server and the ledger on PostgreSQL: a burst
  of five actions spreads over two workers with `--limit`, and each action is launched
  exactly once.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelling
from pydantic import SecretStr

from blocks import LedgerDatabase
from core.policy import RiskRegister, load_policy
from core.records import ActionStatus
from flows.approval_listener import approval_listener
from flows.dispatch import dispatch_actions
from flows.reconciler import reconcile_actions
from flows.remediate_action import remediate_action
from tests.fixtures.loki_discord import CHANNEL_ID
from tests.fixtures.stack import FAST_SETTINGS, Stack, wire_stack
from tests.fixtures.workers import (  # noqa: F401 - the two fixtures register by import
    alive,
    deploy,
    prefect_postgres_fixture,
    process_pool,
    work_pool_fixture,
    worker_processes,
)
from tests.flows.actions import SCRIPTED_TEMPLATE, paused_runs, policy_with, proposal, resume
from tests.flows.helpers import eventually

pytestmark = pytest.mark.slow

STOP_BOUND_SECONDS = 20  # the listener ends its poll in < 1 s; the rest is process exit


async def run_state(run_id: str) -> Any:
    async with get_client() as client:
        return (await client.read_flow_run(run_id)).state


async def dispatch(stack: Stack, actions: list[Any], policy: dict[str, Any], **options: Any):
    """The cycle's dispatch to the action deployment, as from a deployed cycle."""
    async with stack.ledger() as ledger:
        return await dispatch_actions(
            actions,
            mode="deployment",
            options={"policy": policy, "blocks": stack.names.model_dump(), **options},
            ledger=ledger,
            suspended_risks=load_policy(policy).risk.waiting("suspend"),
        )


# --- stopping a worker ------------------------------------------------------------------
async def test_stopping_a_worker_ends_each_of_its_runs_with_a_state(
    stack: Stack, work_pool: str, tmp_path: Path, prefect_harness: str
) -> None:
    policy = policy_with()
    blocks = stack.names.model_dump()
    await deploy(
        approval_listener,
        "t-workers-listener",
        work_pool,
        {"policy": policy, "blocks": blocks, "settings": {"poll_seconds": 1, "run_seconds": 295}},
        concurrency_limit=1,
    )
    await deploy(
        remediate_action, "t-workers-action", work_pool,
        {"policy": policy, "blocks": blocks, "settings": FAST_SETTINGS},
    )  # fmt: skip
    action = proposal(policy, host="web-02", unit="nginx.service", cycle_id="t-workers-stop")
    with worker_processes(prefect_harness, work_pool, tmp_path, {"w1": None}) as [worker]:
        await worker.ready()
        result = await dispatch(
            stack, [action], policy,
            settings={**FAST_SETTINGS, "deployment": "remediate-action/t-workers-action"},
            listener="approval-listener/t-workers-listener",
        )  # fmt: skip
        assert not result.errors, result.errors
        action_run = result.dispatched[action.action_id]
        listener_run = result.listener_run_id  # dispatch starts one: none was running
        assert listener_run is not None

        async def listening_and_paused() -> bool:
            async with stack.ledger() as ledger:
                polled = await ledger.operations.last_heartbeat("listener") is not None
            return polled and bool(await paused_runs(action.action_id))

        try:
            await eventually(listening_and_paused, timeout=150, interval=0.5,
                             what="the listener polling and the action paused")  # fmt: skip
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{worker.log()}") from None
        children = worker.flow_run_processes()
        assert len(children) == 2, (children, worker.log())  # the listener and the action

        seconds = await asyncio.to_thread(worker.stop_by_procedure)

        assert seconds < STOP_BOUND_SECONDS, worker.log()
        assert [pid for pid in children if alive(pid)] == []
        listener_state = await run_state(listener_run)
        assert listener_state.type is StateType.COMPLETED, (listener_state, worker.log())
        action_state = await run_state(action_run)
        assert action_state.type is StateType.CRASHED, (action_state, worker.log())

    # The paused action can no longer be resumed: the reconciler expires it and says so.
    expired = await reconcile_actions(policy=policy, blocks=stack.names)
    assert expired == [action.action_id]
    async with stack.ledger() as ledger:
        record = await ledger.actions.get_action(action.action_id)
    assert record is not None and record.status is ActionStatus.EXPIRED
    posts = [m.embeds[0].get("title") or "" for m in stack.discord.messages(CHANNEL_ID) if m.embeds]
    assert any(t.startswith("⏱️ Expired") for t in posts), posts


async def test_cancelling_a_listener_run_ends_it_cancelled_within_seconds(
    stack: Stack, work_pool: str, tmp_path: Path, prefect_harness: str
) -> None:
    """The listener's own SIGTERM handling must not stand in the way of a cancellation
    from the UI: the worker SIGTERMs the run, which ends its poll and ends Cancelled."""
    deployment = await deploy(
        approval_listener, "t-workers-listener", work_pool,
        {"policy": policy_with(), "blocks": stack.names.model_dump(),
         "settings": {"poll_seconds": 1, "run_seconds": 295}},
        concurrency_limit=1,
    )  # fmt: skip
    with worker_processes(prefect_harness, work_pool, tmp_path, {"w1": None}) as [worker]:
        await worker.ready()
        async with get_client() as client:
            run = await client.create_flow_run_from_deployment(deployment)

        async def polled() -> bool:
            async with stack.ledger() as ledger:
                return await ledger.operations.last_heartbeat("listener") is not None

        try:
            await eventually(polled, timeout=150, interval=0.5, what="the listener polling")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{worker.log()}") from None
        [child] = worker.flow_run_processes()
        async with get_client() as client:  # what the UI's Cancel does
            await client.set_flow_run_state(run.id, Cancelling(message="cancelled in a test"))

        async def ended() -> Any:
            state = await run_state(str(run.id))
            return state if state.is_final() else None

        state = await eventually(ended, timeout=STOP_BOUND_SECONDS, what="the run to end")
        assert state.type is StateType.CANCELLED, (state, worker.log())
        await eventually(lambda: not alive(child), timeout=STOP_BOUND_SECONDS,
                         what="its process to exit")  # fmt: skip
        assert worker.proc.poll() is None  # the worker itself runs on


# --- a suspended approval across a worker restart and a redeploy ------------------------
def suspending(policy: dict[str, Any]) -> dict[str, Any]:
    """The policy with low risk waiting suspended (low: one approver, UI approve allowed)."""
    low = RiskRegister().low.model_dump()
    return {**policy, "risk": {"low": {**low, "wait": "suspend"}}}


async def test_a_suspended_approval_survives_a_worker_stop_and_a_redeploy_and_runs_once(
    stack: Stack, work_pool: str, tmp_path: Path, prefect_harness: str
) -> None:
    policy = suspending(policy_with())
    parameters = {"policy": policy, "blocks": stack.names.model_dump(), "settings": FAST_SETTINGS}
    deployment = await deploy(remediate_action, "t-workers-action", work_pool, parameters)
    action = proposal(policy, host="web-02", unit="nginx.service", cycle_id="t-workers-suspend")
    settings = {**FAST_SETTINGS, "deployment": "remediate-action/t-workers-action"}
    with worker_processes(prefect_harness, work_pool, tmp_path, {"w1": None}) as [first]:
        await first.ready()
        result = await dispatch(stack, [action], policy, settings=settings)
        assert not result.errors, result.errors
        run_id = result.dispatched[action.action_id]

        async def suspended() -> bool:
            state = await run_state(run_id)
            return state.type is StateType.PAUSED and state.name == "Suspended"

        try:
            await eventually(suspended, timeout=150, interval=0.5, what="the action suspended")
            # No process waits: the run is a database row.
            await eventually(lambda: first.flow_run_processes() == [], timeout=30,
                             what="its process to exit")  # fmt: skip
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{first.log()}") from None
        await asyncio.to_thread(first.stop_by_procedure)
    assert (await run_state(run_id)).name == "Suspended"  # the stop left it waiting

    # `prefect deploy` again (the same deployment, updated), and a reconciler pass: a
    # suspended run is alive without a process or a heartbeat.
    assert await deploy(remediate_action, "t-workers-action", work_pool, parameters) == deployment
    assert await reconcile_actions(policy=policy, blocks=stack.names) == []

    with worker_processes(prefect_harness, work_pool, tmp_path, {"w2": None}) as [second]:
        await second.ready()
        assert await resume(run_id, "approve", "after the redeploy") == "ACCEPT"  # the UI

        async def ended() -> Any:
            state = await run_state(run_id)
            return state if state.is_final() else None

        state = await eventually(ended, timeout=150, interval=0.5, what="the run to end")
        assert state.type is StateType.COMPLETED, (state, second.log())
        assert run_id in second.took()  # the new worker re-ran it from the top

    # It ran once, was asked once, and the ledger reads it so.
    jobs = [j for j in stack.awx.engine.jobs(SCRIPTED_TEMPLATE) if j.limit == "web-02"]
    assert len(jobs) == 1
    async with stack.ledger() as ledger:
        record = await ledger.actions.get_action(action.action_id)
        assert await ledger.jobs.launch_count() == 1
    assert record is not None and record.status is ActionStatus.FINISHED, record
    assert record.decision is not None and record.decision.via == "ui"
    requests = [
        m for m in stack.discord.messages(CHANNEL_ID)
        if m.embeds and "Approve noop_fix" in (m.embeds[0].get("title") or "")
    ]  # fmt: skip
    assert len(requests) == 1


# --- several workers --------------------------------------------------------------------
HOSTS_UNITS = [
    ("web-01", "nginx.service"),
    ("web-01", "cron.service"),
    ("web-02", "nginx.service"),
    ("web-02", "ssh.service"),
    ("db-01", "nginx.service"),
]


@pytest.mark.postgres
async def test_a_burst_of_five_actions_spreads_over_two_limited_workers_and_runs_each_once(
    prefect_postgres: str,
    postgres_url: str,
    prometheus: Any,
    fleet_reset: Any,
    loki: Any,
    discord: Any,
    anthropic: Any,
    wired_jobs: Any,
    tmp_path: Path,
) -> None:
    with temporary_settings(updates={PREFECT_API_URL: prefect_postgres}):
        stack = await wire_stack(prometheus, fleet_reset, loki, discord, anthropic, wired_jobs,
                                 tmp_path)  # fmt: skip
        await LedgerDatabase(url=SecretStr(postgres_url)).asave(stack.names.ledger, overwrite=True)
        stack = dataclasses.replace(stack, ledger_url=postgres_url)
        policy = policy_with()
        actions = [
            proposal(policy, host=host, unit=unit, cycle_id="t-workers-burst")
            for host, unit in HOSTS_UNITS
        ]
        async with process_pool() as pool:
            await deploy(
                remediate_action, "t-workers-action", pool,
                {"policy": policy, "blocks": stack.names.model_dump(), "settings": FAST_SETTINGS},
            )  # fmt: skip
            # README: each worker's --limit; a worker claims every run it sees up to it
            limits: dict[str, int | None] = {"w1": 3, "w2": 3}
            with worker_processes(prefect_postgres, pool, tmp_path, limits) as workers:
                await asyncio.gather(*(w.ready() for w in workers))
                result = await dispatch(
                    stack, actions, policy,
                    settings={**FAST_SETTINGS, "deployment": "remediate-action/t-workers-action"},
                )  # fmt: skip
                assert not result.errors, result.errors
                runs = set(result.dispatched.values())
                assert len(runs) == 5

                async def five_paused() -> list[FlowRun] | None:
                    found = [r for r in await paused_runs() if str(r.id) in runs]
                    return found if len(found) == 5 else None

                logs = "\n".join(w.log() for w in workers)
                try:
                    paused = await eventually(five_paused, timeout=180, interval=0.5,
                                              what="five paused actions")  # fmt: skip
                except AssertionError as exc:
                    raise AssertionError(f"{exc}\n{logs}") from None

                # Both workers took part of the burst, each run exactly one of them.
                by_worker = {w.name: w.took() & runs for w in workers}
                assert by_worker["w1"] | by_worker["w2"] == runs, by_worker
                assert not by_worker["w1"] & by_worker["w2"], by_worker
                assert all(2 <= len(ids) <= 3 for ids in by_worker.values()), by_worker

                for run in paused:  # approved as in the Prefect UI (low risk allows it)
                    assert await resume(run.id, "approve", "burst test") == "ACCEPT"

                async def all_final() -> bool:
                    states = [await run_state(r) for r in runs]
                    return all(s.is_final() for s in states)

                await eventually(all_final, timeout=180, interval=0.5, what="five runs to end")
                states = [await run_state(r) for r in runs]
                assert all(s.type is StateType.COMPLETED for s in states), (
                    [s.name for s in states],
                    "\n".join(w.log() for w in workers),
                )

        # Each action launched exactly once: five jobs, one per action, one ledger job each.
        jobs = stack.awx.engine.jobs(SCRIPTED_TEMPLATE)
        assert len(jobs) == 5
        assert sorted((j.limit, j.extra_vars.get("unit")) for j in jobs) == sorted(HOSTS_UNITS)
        async with stack.ledger() as ledger:
            records = [await ledger.actions.get_action(a.action_id) for a in actions]
            assert await ledger.jobs.launch_count() == 5
        job_ids = [r.job.job_id for r in records if r is not None and r.job is not None]
        assert sorted(job_ids) == sorted(str(j.id) for j in jobs)
