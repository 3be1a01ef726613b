"""The reconciler, against real flow-run processes killed with SIGKILL: an approved
action killed between its launch intent and its job id is continued by a fresh run
(exactly one launch, a posted result); one killed while awaiting approval is reported
expired and never runs; live runs are left alone; two reconcilers continue once."""

from __future__ import annotations

import asyncio
import os
import signal
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import Popen
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.deployments import arun_deployment
from prefect.states import Crashed

from clients.ledger import Ledger
from core.liveness import MAX_CONTINUATIONS
from core.policy import load_policy
from core.records import ActionStatus
from flows.reconciler import reconcile, reconcile_actions
from flows.remediate_action import remediate_action
from sandbox.jobs import JobTemplate, Script
from tasks.reconcile import wait_for_continuations
from tests.fixtures.loki_discord import CHANNEL_ID
from tests.fixtures.serve import DEPLOYMENT, ServedDeployment
from tests.fixtures.stack import FAST_POLICY, Stack
from tests.flows.helpers import approval_messages, eventually
from tests.flows.launch_support import (
    SCRIPTED,
    SETTINGS,
    approve,
    audit_events,
    embeds,
    parameters,
    record,
    restart_unit,
    scripted,
    text_of,
)
from tests.flows.reconcile_support import (
    action_runs,
    heartbeat,
    kill_9,
    listener_connections,
    module_process,
    run_is,
    run_state,
)

NGINX_FAILED = 'node_systemd_unit_state{instance="web-02",name="nginx.service",state="failed"} == 1'
LAUNCH_10 = r"/api/v2/job_templates/10/launch/"
STALE = timedelta(seconds=5 * SETTINGS["heartbeat_seconds"])


def action_process(
    api_url: str, params: dict[str, Any], log: Path
) -> AbstractContextManager[Popen]:
    """`remediate_action` in a process of its own, against the harness's API."""
    return module_process("tests.flows.launch_action_process", api_url, params, log)


async def until_stale(stack: Stack, action_id: str) -> str:
    """Wait until the action's heartbeat is stale; returns the run that wrote it last."""

    async def stale() -> str | None:
        at, by = await heartbeat(stack, action_id)
        return by if datetime.now(UTC) - at > STALE + timedelta(seconds=0.5) else None

    return await eventually(stale, timeout=30, what="a stale heartbeat")


async def test_a_run_killed_between_launch_intent_and_job_id_is_continued_by_the_reconciler(
    stack: Stack, prefect_harness: str, tmp_path: Path
) -> None:
    stack.fleet.patch("web-02", {"units": {"nginx.service": {"state": "failed"}}})
    await stack.scraped(NGINX_FAILED)
    action = restart_unit(cycle="c-killed-launching")
    await approve(stack, action)  # decided before: the run goes straight to the launch
    # AWX takes its time answering the launch (the job is created when the delay ends).
    stack.awx.inject(method="POST", path=LAUNCH_10, mode="delay",
                     delay=3.0)  # fmt: skip
    params = parameters(stack, action, FAST_POLICY, SETTINGS)
    with action_process(prefect_harness, params, tmp_path / "action.log") as proc:

        async def intent_without_job() -> bool:
            done = await record(stack, action.action_id)
            return done.job is not None and done.job.job_id is None

        await eventually(intent_without_job, timeout=90, what="the launch intent")
        await eventually(  # ... and the request has left (AWX holds it for 3 s)
            lambda: stack.awx.received("POST", LAUNCH_10), what="the launch request"
        )
        assert await intent_without_job()
        kill_9(proc)  # between the intent and the job id
    dead_run = await until_stale(stack, action.action_id)
    assert await run_state(dead_run) is StateType.RUNNING  # Prefect cannot know it died
    await eventually(lambda: stack.awx.launches(10) == 1, what="AWX to create the job")
    assert (await record(stack, action.action_id)).job.job_id is None  # type: ignore[union-attr]

    async with listener_connections(stack) as conns, get_client() as client:
        policy, now = load_policy(FAST_POLICY), datetime.now(UTC)
        passes = await asyncio.gather(  # two reconcilers at once: one takes the action
            reconcile(conns, policy, client, now),
            reconcile(conns, policy, client, now),
        )
        assert sorted(passes) == [[], [action.action_id]]
        assert await wait_for_continuations(timeout=120) == 1  # the fresh run, in-process
        assert await reconcile(conns, policy, client, datetime.now(UTC)) == []  # finished

    [job] = stack.awx.jobs(10)  # still exactly one launch: found by its marker, polled
    done = await record(stack, action.action_id)
    assert done.status is ActionStatus.FINISHED
    assert done.job is not None
    assert (done.job.job_id, done.job.state) == (str(job.id), "successful")
    assert stack.fleet.state("web-02").units["nginx.service"].state == "active"
    [continuing] = embeds(stack, "🔁 Continuing: restart_unit on web-02")
    assert "looked up by its marker" in text_of(continuing) and dead_run in text_of(continuing)
    [result] = embeds(stack, "✅ EFFECTIVE: restart_unit on web-02")
    assert str(job.id) in text_of(result)
    assert await run_state(dead_run) is StateType.CRASHED
    _, fresh_run = await heartbeat(stack, action.action_id)
    assert fresh_run != dead_run and await run_state(fresh_run) is StateType.COMPLETED
    assert (await audit_events(stack, action.action_id)).count("reconcile_continued") == 1


async def test_a_run_killed_while_awaiting_approval_is_reported_expired_and_never_runs(
    stack: Stack, prefect_harness: str, tmp_path: Path
) -> None:
    action = scripted(cycle="c-killed-paused")
    params = parameters(stack, action, SCRIPTED, SETTINGS)
    with action_process(prefect_harness, params, tmp_path / "action.log") as proc:
        [request] = await eventually(lambda: approval_messages(stack), what="the request")

        async def paused_a_while() -> bool:
            runs = await action_runs(action.action_id)
            return bool(runs) and all(
                r.state is not None and r.state.type is StateType.PAUSED
                and r.start_time is not None
                and datetime.now(UTC) - r.start_time > STALE + timedelta(seconds=1)
                for r in runs
            )  # fmt: skip

        await eventually(paused_a_while, what="the run paused for a while")
        # Alive (its heartbeat is fresh while it waits): left alone.
        assert await reconcile_actions(policy=SCRIPTED, blocks=stack.names) == []
        kill_9(proc)
    dead_run = await until_stale(stack, action.action_id)
    assert await run_state(dead_run) is StateType.PAUSED  # a resume could not reach anyone

    expired = await reconcile_actions(policy=SCRIPTED, blocks=stack.names)

    assert expired == [action.action_id]
    done = await record(stack, action.action_id)
    assert done.status is ActionStatus.EXPIRED and done.job is None
    [notice] = embeds(stack, "⏱️ Expired: noop_fix on web-02 did not run")
    assert "Nothing was launched" in text_of(notice)
    [edited] = [m for m in stack.discord.messages(CHANNEL_ID) if m.id == request.id]
    assert edited.content.startswith("⏱️ Expired")
    assert await run_state(dead_run) is StateType.CRASHED
    assert stack.awx.launches(30) == 0
    assert "reconcile_expired" in await audit_events(stack, action.action_id)
    assert await reconcile_actions(policy=SCRIPTED, blocks=stack.names) == []


async def test_a_deployed_run_killed_while_polling_crashes_and_is_continued_on_its_job(
    stack: Stack, action_worker: ServedDeployment
) -> None:
    stack.awx.add_template(JobTemplate(30, "scripted", script=Script.succeed(running=6.0)))
    action = scripted(cycle="c-deployed")
    await approve(stack, action)
    await action_worker.ready()
    first = await arun_deployment(
        DEPLOYMENT, parameters=parameters(stack, action, SCRIPTED, SETTINGS), timeout=0
    )

    async def job_recorded() -> str | None:
        done = await record(stack, action.action_id)
        return done.job.job_id if done.job is not None else None

    job_id = await eventually(job_recorded, timeout=90, what="the job id")
    [pid] = action_worker.flow_run_processes()  # the one run serve is executing
    os.kill(pid, signal.SIGKILL)  # the flow run's process dies; its "worker" survives
    await eventually(lambda: run_is(first.id, StateType.CRASHED), what="the run CRASHED")
    assert not stack.awx.job(job_id).terminal  # killed while its job still ran

    async with listener_connections(stack) as conns, get_client() as client:
        continued = await reconcile(conns, load_policy(SCRIPTED), client, datetime.now(UTC))
    assert continued == [action.action_id]

    async def finished() -> bool:
        return (await record(stack, action.action_id)).status is ActionStatus.FINISHED

    await eventually(finished, timeout=120, what="the continued action to finish")
    assert stack.awx.launches(30) == 1  # the recorded job was polled, never relaunched
    done = await record(stack, action.action_id)
    assert done.job is not None and (done.job.job_id, done.job.state) == (job_id, "successful")
    [continuing] = embeds(stack, "🔁 Continuing: noop_fix on web-02")
    assert f"job `{job_id}` is polled" in text_of(continuing)
    [result] = [
        e
        for e in embeds(stack)
        if (e.get("footer") or {}).get("text") == f"action {action.action_id}"
    ]
    assert "noop_fix on web-02" in result["title"] and job_id in text_of(result)
    runs = await action_runs(action.action_id)
    [fresh] = [r for r in runs if r.id != first.id]
    assert fresh.deployment_id == first.deployment_id and "reconciled" in fresh.tags
    # its last steps (cycle close, artifacts) follow the result post: wait, do not race
    await eventually(lambda: run_is(fresh.id, StateType.COMPLETED), what="the fresh run COMPLETED")


async def test_an_action_whose_runs_keep_dying_is_reported_once_and_not_continued(
    stack: Stack,
) -> None:
    action = scripted(cycle="c-dying")
    await approve(stack, action)
    now = datetime.now(UTC)
    async with stack.ledger() as ledger:
        await ledger.jobs.claim_launch(
            action_id=action.action_id, host="web-02", runner="awx", template="30",
            marker=action.action_id, max_running=5, now=now,
        )  # fmt: skip
        await ledger.jobs.record_job_launched(action.action_id, job_id="77", job_url=None, now=now)
        for n in range(MAX_CONTINUATIONS):
            await ledger.jobs.record_continuation(
                action.action_id, dead_run_id=f"run-{n}", detail={}, now=now
            )
    async with get_client() as client:  # its last run, crashed as a runner records it
        await client.create_flow_run(
            remediate_action,
            parameters=parameters(stack, action, SCRIPTED, SETTINGS),
            tags=["remediation-action", f"action:{action.action_id}"],
            state=Crashed(message="Process exited with status code: -9."),
        )

    async with listener_connections(stack) as conns, get_client() as client:
        policy = load_policy(SCRIPTED)
        assert await reconcile(conns, policy, client, datetime.now(UTC)) == [action.action_id]
        assert await reconcile(conns, policy, client, datetime.now(UTC)) == []

    [stop] = embeds(stack, "🛑 Not continued again: noop_fix on web-02")
    assert "Job `77` was launched" in text_of(stop)
    assert stack.awx.received() == []  # no launch, no poll
    assert (await record(stack, action.action_id)).status is ActionStatus.RUNNING


async def test_the_take_over_of_a_dead_action_lands_once_on_either_database(
    any_ledger_url: str,
) -> None:
    action = scripted(cycle="c-ledger")
    t0 = datetime.now(UTC)
    async with Ledger(any_ledger_url) as ledger:
        await ledger.actions.record_actions([action], now=t0)
        await ledger.jobs.action_heartbeat(action.action_id, run_id="run-1", now=t0)
        await ledger.jobs.claim_launch(
            action_id=action.action_id, host="web-02", runner="awx", template="30",
            marker=action.action_id, max_running=5, now=t0,
        )  # fmt: skip
        view = (await ledger.jobs.action_liveness([action.action_id, "act-unknown"]))[
            action.action_id
        ]
        assert (view.heartbeat_at, view.heartbeat_by) == (t0, "run-1")
        assert view.launch_intent and view.job_id is None and view.decision is None
        # Fresh, and not written by a dead run: nobody takes it.
        assert not await ledger.jobs.claim_dead_action(
            action.action_id, stale_before=t0 - timedelta(seconds=5), dead_runs=["run-0"],
            claimant="r", now=t0,
        )  # fmt: skip

    async def claim(n: int) -> bool:  # ten reconcilers, each with its own connection
        async with Ledger(any_ledger_url) as own:
            return await own.jobs.claim_dead_action(
                action.action_id, stale_before=t0 + timedelta(seconds=1), dead_runs=[],
                claimant=f"reconciler-{n}", now=t0 + timedelta(seconds=2),
            )  # fmt: skip

    assert sorted(await asyncio.gather(*(claim(n) for n in range(10)))) == [False] * 9 + [True]
    async with Ledger(any_ledger_url) as ledger:
        view = (await ledger.jobs.action_liveness([action.action_id]))[action.action_id]
        assert view.heartbeat_by is not None and view.heartbeat_by.startswith("reconciler-")
        # A heartbeat written by a run known to have crashed is claimable at once.
        await ledger.jobs.action_heartbeat(action.action_id, run_id="run-2", now=t0)
        assert await ledger.jobs.claim_dead_action(
            action.action_id, stale_before=t0 - timedelta(minutes=1), dead_runs=["run-2"],
            claimant="r", now=t0,
        )  # fmt: skip
