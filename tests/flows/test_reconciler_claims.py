"""Recovery announces what happened, once: a reconciler SIGKILLed between claiming a dead
action run and creating its fresh run leaves a claim that is taken over promptly (not
after the 90 s heartbeat window), one fresh run, one "🔁 Continuing", one launch, and the
host freed for the next approved action; one killed after creating it is announced by
the next pass; and the ledger's claim and continuation record hold on both databases."""

from __future__ import annotations

import asyncio
import json
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
from prefect.states import Cancelled, Crashed

from clients.ledger import Ledger
from core.launch import MARKER_KEY
from core.liveness import CLAIM_WINDOW
from core.policy import load_policy
from core.records import ActionStatus
from core.settings import ListenerSettings
from flows.remediate_action import remediate_action
from sandbox.jobs import JobTemplate, Script
from tasks.reconcile import Reconciler, action_run
from tests.fixtures.serve import DEPLOYMENT, ServedDeployment
from tests.fixtures.stack import Stack
from tests.flows.helpers import eventually
from tests.flows.launch_support import (
    SCRIPTED,
    SETTINGS,
    approve,
    audit_events,
    embeds,
    parameters,
    record,
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

LAUNCH_30 = r"/api/v2/job_templates/30/launch/"
# What the listener runs the reconciler with: the old code left a dead claim this long.
LISTENER_STALE = timedelta(seconds=ListenerSettings().action_heartbeat_stale_seconds)


def reconciler_process(
    api_url: str, options: dict[str, Any], log: Path
) -> AbstractContextManager[Popen]:
    """One reconciler pass in a process of its own that holds at the create step."""
    return module_process("tests.flows.reconcile_process", api_url, options, log)


async def held_at_create(stack: Stack, api_url: str, tmp_path: Path, pause: str) -> dict[str, Any]:
    """Run a reconciler (as the listener does: 90 s heartbeat window) until it holds
    before or after creating a fresh run, then SIGKILL it there; what it was doing."""
    options = {
        "blocks": stack.names.model_dump(),
        "policy": SCRIPTED,
        "stale_after_seconds": LISTENER_STALE.total_seconds(),
        "pause": pause,
        "dir": str(tmp_path),
    }
    paused = tmp_path / "paused"
    with reconciler_process(api_url, options, tmp_path / f"reconciler-{pause}.log") as proc:

        def holding() -> str | None:
            assert proc.poll() is None, (tmp_path / f"reconciler-{pause}.log").read_text()
            return paused.read_text() if paused.exists() else None

        held = json.loads(await eventually(holding, timeout=90, what="the reconciler to hold"))
        kill_9(proc)
    return held


async def finished(stack: Stack, action_id: str) -> bool:
    return (await record(stack, action_id)).status is ActionStatus.FINISHED


def jobs_of(stack: Stack, action_id: str) -> list[Any]:
    """The AWX jobs launched for one action (each carries its marker)."""
    return [j for j in stack.awx.jobs(30) if j.extra_vars.get(MARKER_KEY) == action_id]


async def test_a_reconciler_killed_between_claim_and_create_is_taken_over_promptly_once(
    stack: Stack, action_worker: ServedDeployment, prefect_harness: str, tmp_path: Path
) -> None:
    stack.awx.add_template(JobTemplate(30, "scripted", script=Script.succeed(running=1.0)))
    first = scripted(cycle="c-claim-first")  # its run dies between launch intent and job id
    other = scripted(cycle="c-claim-other")  # approved meanwhile, for the same host
    await approve(stack, first)
    stack.awx.inject(method="POST", path=LAUNCH_30, mode="delay", delay=5.0)
    await action_worker.ready()
    dead = await arun_deployment(
        DEPLOYMENT, parameters=parameters(stack, first, SCRIPTED, SETTINGS), timeout=0
    )

    async def intent_without_job() -> bool:
        done = await record(stack, first.action_id)
        return done.job is not None and done.job.job_id is None

    await eventually(intent_without_job, timeout=90, what="the launch intent")
    await eventually(lambda: stack.awx.received("POST", LAUNCH_30), what="the launch request")
    [pid] = action_worker.flow_run_processes()
    os.kill(pid, signal.SIGKILL)  # between the intent and the job id; its worker lives
    await eventually(lambda: run_is(dead.id, StateType.CRASHED), timeout=60, what="CRASHED")
    await eventually(lambda: stack.awx.launches(30) == 1, what="AWX to create the job")
    assert (await record(stack, first.action_id)).job.job_id is None  # type: ignore[union-attr]

    # The other action waits for the host: the dead run's launch intent holds it.
    await approve(stack, other)
    await arun_deployment(
        DEPLOYMENT, parameters=parameters(stack, other, SCRIPTED, SETTINGS), timeout=0
    )
    await eventually(
        lambda: embeds(stack, "⏳ Waiting: noop_fix on web-02"), timeout=90, what="waiting"
    )

    # A reconciler claims the dead run and is SIGKILLed before creating the fresh run.
    held = await held_at_create(stack, prefect_harness, tmp_path, "before")
    assert (held["action_id"], held["dead_run_id"]) == (first.action_id, str(dead.id))
    claimed_at, claimant = await heartbeat(stack, first.action_id)
    assert claimant == f"reconciler:{dead.id}"
    assert embeds(stack, "🔁 Continuing") == []  # nothing announced before the fresh run

    async with listener_connections(stack) as conns, get_client() as client:
        reconciler = Reconciler(conns, load_policy(SCRIPTED), client, stale_after=LISTENER_STALE)

        async def taken_over() -> list[Any]:
            outcomes = await reconciler.run(datetime.now(UTC))
            return [o for o in outcomes if o.action_id == first.action_id]

        [outcome] = await eventually(taken_over, timeout=150, interval=1.0, what="a take-over")
        taken_after = datetime.now(UTC) - claimed_at
        assert (outcome.outcome, outcome.via) == ("continued", "deployment")
        assert outcome.dead_run_id == str(dead.id) and outcome.new_run_id is not None
        # A second claimer creating it too (the first one merely slow) gets the same run
        # back from Prefect, and announces nothing more.
        view = (await conns.ledger.jobs.action_liveness([first.action_id]))[first.action_id]
        again = await reconciler.continue_action(
            view, action_run(await client.read_flow_run(dead.id)), datetime.now(UTC)
        )
        assert again == ("deployment", outcome.new_run_id)

        await eventually(lambda: finished(stack, first.action_id), timeout=180, what="first")
        await eventually(lambda: finished(stack, other.action_id), timeout=180, what="other")
        assert await reconciler.run(datetime.now(UTC)) == []  # nothing claimed twice

    assert CLAIM_WINDOW <= taken_after < timedelta(seconds=60), taken_after  # not 90 s
    [continuing] = embeds(stack, "🔁 Continuing")
    assert str(dead.id) in text_of(continuing)
    assert "looked up by its marker" in text_of(continuing)
    assert (await audit_events(stack, first.action_id)).count("reconcile_continued") == 1
    [fresh] = [r for r in await action_runs(first.action_id) if r.id != dead.id]
    assert str(fresh.id) == outcome.new_run_id and f"continues:{dead.id}" in fresh.tags
    assert await run_state(str(fresh.id)) is StateType.COMPLETED
    [job] = jobs_of(stack, first.action_id)  # launched once: found by its marker, polled
    assert (await record(stack, first.action_id)).job.job_id == str(job.id)  # type: ignore[union-attr]
    [next_job] = jobs_of(stack, other.action_id)
    held_for = next_job.created - claimed_at  # the host was free once the fresh run ran
    assert held_for < timedelta(seconds=75), held_for


async def test_a_reconciler_killed_after_creating_the_fresh_run_is_announced_by_the_next_pass(
    stack: Stack, action_worker: ServedDeployment, prefect_harness: str, tmp_path: Path
) -> None:
    stack.awx.add_template(JobTemplate(30, "scripted", script=Script.succeed(running=1.0)))
    action = scripted(cycle="c-claim-created")
    await approve(stack, action)
    await action_worker.ready()
    async with get_client() as client:  # its run, crashed before any launch
        dead = await client.create_flow_run(
            remediate_action,
            parameters=parameters(stack, action, SCRIPTED, SETTINGS),
            tags=["remediation-action", f"action:{action.action_id}"],
            state=Crashed(message="Process exited with status code: -9."),
        )

    held = await held_at_create(stack, prefect_harness, tmp_path, "after")
    assert held["dead_run_id"] == str(dead.id) and held["new_run_id"] is not None
    assert embeds(stack, "🔁 Continuing") == []  # killed before it could say so

    async with listener_connections(stack) as conns, get_client() as client:
        reconciler = Reconciler(conns, load_policy(SCRIPTED), client, stale_after=LISTENER_STALE)
        assert await reconciler.run(datetime.now(UTC)) == []  # its fresh run is alive
        await eventually(lambda: finished(stack, action.action_id), timeout=180, what="done")
        await reconciler.run(datetime.now(UTC))

    [continuing] = embeds(stack, "🔁 Continuing: noop_fix on web-02")
    assert str(dead.id) in text_of(continuing) and "launches once" in text_of(continuing)
    assert (await audit_events(stack, action.action_id)).count("reconcile_continued") == 1
    [fresh] = [r for r in await action_runs(action.action_id) if r.id != dead.id]
    assert str(fresh.id) == held["new_run_id"]
    assert len(jobs_of(stack, action.action_id)) == 1


async def test_a_fresh_run_someone_cancelled_ends_the_take_overs_with_one_notice(
    stack: Stack, action_worker: ServedDeployment
) -> None:
    action = scripted(cycle="c-claim-cancelled")
    await approve(stack, action)
    deployment_id = await action_worker.ready()
    params = parameters(stack, action, SCRIPTED, SETTINGS)
    async with get_client() as client:
        dead = await client.create_flow_run(
            remediate_action,
            parameters=params,
            tags=["remediation-action", f"action:{action.action_id}"],
            state=Crashed(message="Process exited with status code: -9."),
        )
        # Its fresh run was created by a reconciler that died, then cancelled in the UI.
        cancelled = await client.create_flow_run_from_deployment(
            deployment_id,
            parameters=params,
            idempotency_key=f"reconcile-{dead.id}",
            state=Cancelled(message="stopped by an operator"),
        )

    async with listener_connections(stack) as conns, get_client() as client:
        reconciler = Reconciler(conns, load_policy(SCRIPTED), client, stale_after=LISTENER_STALE)
        [outcome] = await reconciler.run(datetime.now(UTC))
        assert outcome.outcome == "gave_up" and outcome.dead_run_id == str(dead.id)
        assert await reconciler.run(datetime.now(UTC)) == []  # not claimed again and again

    [stop] = embeds(stack, "🛑 Not continued again: noop_fix on web-02")
    assert f"ended Cancelled (`{cancelled.id}`)" in text_of(stop)
    assert embeds(stack, "🔁 Continuing") == []
    assert [r.id for r in await action_runs(action.action_id)] == [dead.id]  # none created
    assert stack.awx.launches(30) == 0


async def test_a_dead_claim_is_taken_again_after_its_window_and_continuations_recorded_once(
    any_ledger_url: str,
) -> None:
    action = scripted(cycle="c-claim-ledger")
    t0 = datetime.now(UTC)
    s = timedelta(seconds=1)

    async def claim(ledger: Ledger, at: datetime, who: str) -> bool:
        return await ledger.jobs.claim_dead_action(
            action.action_id, stale_before=at - 90 * s, dead_runs=["run-0"], claimant=who,
            now=at, reclaim_prefix="reconciler:", reclaim_before=at - 20 * s,
        )  # fmt: skip

    async with Ledger(any_ledger_url) as ledger:
        await ledger.actions.record_actions([action], now=t0)
        await ledger.jobs.action_heartbeat(action.action_id, run_id="run-0", now=t0)
        assert await claim(ledger, t0, "reconciler:a")  # written by a run known dead
        assert not await claim(ledger, t0 + 19 * s, "reconciler:b")  # the claim is young
        assert await claim(ledger, t0 + 21 * s, "reconciler:c")  # its fresh run never came
        await ledger.jobs.action_heartbeat(action.action_id, run_id="run-1", now=t0 + 22 * s)
        assert not await claim(ledger, t0 + 60 * s, "reconciler:d")  # a live run's beat

    async def record_once(n: int) -> bool:  # ten reconcilers, each with its own connection
        async with Ledger(any_ledger_url) as own:
            return await own.jobs.record_continuation(
                action.action_id, dead_run_id="run-0", detail={"via": f"r{n}"}, now=t0
            )

    assert sorted(await asyncio.gather(*(record_once(n) for n in range(10)))) == [False] * 9 + [
        True
    ]
    async with Ledger(any_ledger_url) as ledger:
        assert await ledger.jobs.record_continuation(
            action.action_id, dead_run_id="run-1", detail={}, now=t0
        )
        rows = [e for e in await ledger.operations.audit_trail(action_id=action.action_id)]
    assert [e["detail"]["dead_run_id"] for e in rows if e["event"] == "reconcile_continued"] == [
        "run-0",
        "run-1",
    ]
