"""Restarts: processes killed with SIGKILL at the worst moments, the Prefect server
restarted, two cycles at once. Each ends with nothing lost, nothing run twice and nothing
run that nobody approved.

Proven elsewhere (see docs/reliability.md): the listener killed mid-wait and restarted
(tests/flows/test_listener.py::test_listener_killed_and_restarted_loses_and_doubles_nothing),
a paused run killed together with its worker (left PAUSED → expired:
tests/flows/test_reconciler.py::test_a_run_killed_while_awaiting_approval_is_reported_expired_and_never_runs),
a deployed run killed mid-poll while its worker lives (CRASHED → continued:
tests/flows/test_reconciler.py::test_a_deployed_run_killed_while_polling_crashes_and_is_continued_on_its_job).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.deployments import arun_deployment
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, temporary_settings

from blocks import PrometheusConnection
from core.policy import load_policy
from core.records import ActionStatus
from core.report import CycleOutcome
from core.settings import ListenerSettings
from flows.approval_listener import run_listener
from flows.reconciler import reconcile
from flows.remediate_action import remediate_action
from sandbox.anthropic import tool_answer
from sandbox.jobs import JobTemplate, Script
from tasks.connections import open_connections
from tests.fixtures.loki_discord import CHANNEL_ID
from tests.fixtures.serve import DEPLOYMENT, ServedDeployment, forget_deployment
from tests.fixtures.stack import FAST_SETTINGS, Stack, save_blocks
from tests.flows.actions import paused_runs, policy_with, proposal, resume
from tests.flows.helpers import approval_messages, eventually
from tests.flows.launch_support import approve, parameters
from tests.reliability.servers import (
    kill_9,
    kill_9_if_ours,
    prefect_server,
)
from tests.reliability.stand_ins import FAILED_UNIT_QUERY, PrometheusProxy, failed_units
from tests.reliability.support import NGINX, cycle, posts, rows, text

POLICY = policy_with("noop_fix")
SETTINGS = {**FAST_SETTINGS, "heartbeat_seconds": 0.5, "settle_seconds": 0}
STALE = timedelta(seconds=2.5)  # five missed heartbeats


async def _state(run_id: Any) -> StateType | None:
    async with get_client() as client:
        run = await client.read_flow_run(UUID(str(run_id)))
    return run.state.type if run.state else None


async def _record(stack: Stack, action_id: str) -> Any:
    async with stack.ledger() as ledger:
        return await ledger.actions.get_action(action_id)


async def _reconcile(stack: Stack) -> list[str]:
    conns = await open_connections(stack.names, ("discord", "ledger"))
    async with conns, get_client() as client:
        return await reconcile(
            conns, load_policy(POLICY), client, datetime.now(UTC), stale_after=STALE
        )


async def test_worker_restarts_expire_a_dead_approval_and_continue_a_dead_poll(
    stack: Stack, prefect_harness: str, tmp_path: Path
) -> None:
    """A paused run's process SIGKILLed while its worker lives (CRASHED): expired, nothing
    runs. Then the worker and a polling run's process SIGKILLed together (left RUNNING): a
    restarted worker continues the action on its recorded job, never relaunching it."""
    stack.awx.add_template(JobTemplate(30, "scripted", script=Script.succeed(running=6.0)))
    waiting = proposal(POLICY, host="web-01", cycle_id="c-restart-paused")
    polling = proposal(POLICY, host="web-02", cycle_id="c-restart-polling")
    await approve(stack, polling)
    worker = ServedDeployment(prefect_harness, tmp_path / "worker-1.log", limit=5)
    replacement: ServedDeployment | None = None
    flow_pids: list[int] = []  # flow-run processes still to stop, whatever happens
    try:
        await worker.ready()
        paused_run = await arun_deployment(
            DEPLOYMENT, parameters=parameters(stack, waiting, POLICY, SETTINGS), timeout=0
        )
        await eventually(lambda: paused_runs(waiting.action_id), timeout=90, what="paused")
        [paused_pid] = worker.flow_run_processes()
        flow_pids.append(paused_pid)
        polling_run = await arun_deployment(
            DEPLOYMENT, parameters=parameters(stack, polling, POLICY, SETTINGS), timeout=0
        )

        async def job_id() -> str | None:
            record = await _record(stack, polling.action_id)
            return record.job.job_id if record.job else None

        job = await eventually(job_id, timeout=90, what="the polled job")
        [polling_pid] = [p for p in worker.flow_run_processes() if p != paused_pid]
        flow_pids.append(polling_pid)

        # 1. The paused run's process dies; the worker lives and marks the run CRASHED.
        kill_9(flow_pids.pop(0))
        await eventually(lambda: _is(paused_run.id, StateType.CRASHED), timeout=60, what="CRASHED")
        assert await _reconcile(stack) == [waiting.action_id]
        expired = await _record(stack, waiting.action_id)
        assert expired.status is ActionStatus.EXPIRED and expired.job is None
        assert posts(stack, "⏱️ Expired: noop_fix on web-01 did not run")
        request = stack.discord.message(CHANNEL_ID, expired.request.message_id)
        assert request.content.startswith("⏱️ Expired")
        # a ✅ that arrives now resumes nothing: the run is over, the action expired
        stack.discord.react(CHANNEL_ID, request.id, "✅", "alice")

        # 2. The worker and the polling run's process die together: Prefect still shows
        # the run RUNNING; its heartbeat goes stale; a restarted worker takes over.
        worker.kill()
        kill_9(flow_pids.pop(0))
        assert await _state(polling_run.id) is StateType.RUNNING
        assert not stack.awx.job(job).terminal  # killed while its job still ran
        replacement = ServedDeployment(prefect_harness, tmp_path / "worker-2.log", limit=5)

        async def stale() -> bool:  # what the reconciler reads
            async with stack.ledger() as ledger:
                view = (await ledger.jobs.action_liveness([polling.action_id]))[polling.action_id]
            return datetime.now(UTC) - view.heartbeat_at > STALE + timedelta(seconds=0.5)

        await eventually(stale, timeout=30, what="a stale heartbeat")
        assert await _reconcile(stack) == [polling.action_id]

        async def finished() -> bool:
            return (await _record(stack, polling.action_id)).status is ActionStatus.FINISHED

        await eventually(finished, timeout=120, what="the continued action")
        # A listener now: the ✅ on the expired request resumes nothing.
        await run_listener(stack.names, load_policy(POLICY), ListenerSettings(), stop=lambda: True)
    finally:
        for served in (worker, replacement):
            if served is not None:
                flow_pids += served.flow_run_processes()
                served.terminate()
        for pid in flow_pids:
            kill_9_if_ours(pid, prefect_harness)
        await forget_deployment()

    assert stack.awx.launches(30) == 1  # polled on, never relaunched
    done = await _record(stack, polling.action_id)
    assert (done.job.job_id, done.job.state) == (job, "successful")
    assert await _state(polling_run.id) is StateType.CRASHED  # marked by the reconciler
    [continuing] = posts(stack, "🔁 Continuing: noop_fix on web-02")
    assert f"job `{job}` is polled" in text(continuing)
    assert (await _record(stack, waiting.action_id)).status is ActionStatus.EXPIRED
    events = [e["event"] for e in rows(stack.ledger_url, "audit")]
    assert events.count("reconcile_expired") == 1 and events.count("reconcile_continued") == 1


async def _is(run_id: Any, state: StateType) -> bool:
    return await _state(run_id) is state


MANUAL_ONLY = {
    "summary": "nginx failed",
    "actions": [],
    "manual_issues": [{"host": "web-02", "problem": "nginx failed", "severity": "critical",
                       "recommendation": "look"}],
}  # fmt: skip


async def test_the_prefect_server_restarted_between_cycles_and_during_a_pause(
    stack: Stack, tmp_path: Path
) -> None:
    """Our own `prefect server start`: a cycle reports an issue, an action waits paused;
    the server restarts; the next cycle reports nothing twice, and the paused action,
    approved after the restart, runs once."""
    proxy = PrometheusProxy(stack.prometheus.url).start()
    proxy.override(FAILED_UNIT_QUERY, 200, failed_units(("web-02", "nginx.service")))
    stack.anthropic.enqueue(tool_answer("submit_analysis", MANUAL_ONLY))
    action = proposal(POLICY, host="web-01", cycle_id="c-server-restart")
    servers = {
        "prometheus": proxy, "loki": stack.loki, "discord": stack.discord,
        "anthropic": stack.anthropic, "awx": stack.awx, "semaphore": stack.semaphore,
    }  # fmt: skip
    try:
        with (
            prefect_server(tmp_path) as server,
            temporary_settings({PREFECT_API_URL: server.api_url}),
        ):
            await save_blocks(servers, stack.ledger_url)
            first = await cycle(stack)
            run = asyncio.create_task(
                remediate_action(**parameters(stack, action, POLICY, SETTINGS), return_state=True)
            )
            [paused] = await eventually(lambda: paused_runs(action.action_id), what="paused")

            server.restart()

            second = await cycle(stack)
            assert await resume(paused.id, "approve") == "ACCEPT"  # in the Prefect UI
            state = await asyncio.wait_for(run, 90)
            async with get_client() as client:
                cycles = await client.read_flow_runs()
            # Logs and events still queued for this server go out before it stops.
            await APILogWorker.drain_all(timeout=15)
            await EventsWorker.drain_all(timeout=15)
    finally:
        proxy.stop()

    assert first.outcome is CycleOutcome.MANUAL_ONLY and first.reported == [NGINX]
    assert second.outcome is CycleOutcome.ALL_CACHED and second.reported == []
    assert len(posts(stack, "📋 1 issue(s) need a human")) == 1  # not re-posted
    analyses = [b for b in stack.anthropic.message_bodies() if "<issues>" in json.dumps(b)]
    assert len(analyses) == 1  # not re-asked
    assert {str(first.cycle_id), str(second.cycle_id)} <= {str(r.id) for r in cycles}
    assert state.is_completed() and (await state.aresult()).status == "finished"
    assert stack.awx.launches(30) == 1 and len(approval_messages(stack)) == 1
    assert len(rows(stack.ledger_url, "cycles")) == 2


async def test_two_cycles_started_at_once_report_an_issue_once(stack: Stack) -> None:
    proxy = PrometheusProxy(stack.prometheus.url).start()
    proxy.override(FAILED_UNIT_QUERY, 200, failed_units(("web-02", "nginx.service")))
    await PrometheusConnection(url=proxy.url, timeout_seconds=5).asave(
        stack.names.prometheus, overwrite=True
    )
    stack.anthropic.enqueue(*[tool_answer("submit_analysis", MANUAL_ONLY)] * 2)
    try:
        reports = await asyncio.gather(cycle(stack), cycle(stack))
    finally:
        proxy.stop()

    claimed = [r for r in reports if r.new_issues]
    [winner] = claimed  # one ledger: exactly one cycle claims the issue
    [other] = [r for r in reports if r is not winner]
    assert winner.reported == [NGINX] and other.reported == []
    assert other.outcome is CycleOutcome.ALL_CACHED and sum(other.dropped.values()) == 1
    assert len(stack.anthropic.message_bodies()) == 1  # analysed once
    assert len(posts(stack, "📋 1 issue(s) need a human")) == 1  # posted once
    assert len(rows(stack.ledger_url, "cycles")) == 2
    [episode] = rows(stack.ledger_url, "issue_episodes")
    assert episode["reported_at"] is not None
