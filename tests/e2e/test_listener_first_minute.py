"""A listener from the first minute (issue 22): right after a deploy, the listener
deployment's next scheduled run is minutes away, yet a ✅ on the first cycle's request is
read within a poll, because the cycle starts a listener run when it dispatches.

Everything is real: one `serve` process serves `remediate-action` and an
`approval-listener` deployment as prefect.yaml declares it (300 s interval schedule,
limit 1 with ENQUEUE; poll every 2 s here), with the schedule's next runs created minutes
ahead as the server's scheduler would; the cycle runs as a flow over the real Prometheus
and the sandbox Claude, Discord and AWX; a person reacts in the sandbox Discord.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prefect.client.schemas.objects import FlowRun, StateType

from core.records import ActionRecord, ActionStatus
from core.report import CycleOutcome
from flows.remediation_cycle import remediation_cycle
from tests.e2e.branches_helpers import (
    all_ended,
    awaiting_approval,
    end_leftover_runs,
    fail_units,
    react,
    record,
)
from tests.fixtures.serve import DEPLOYMENT
from tests.fixtures.serve_listener import ServedWithListener
from tests.fixtures.stack import FAST_POLICY, FAST_SETTINGS, NAMES, Stack
from tests.flows.helpers import eventually

pytestmark = pytest.mark.slow

POLL_SECONDS = 2.0
# What "within a poll" may take beyond the poll itself on a loaded 2-core machine: reading
# Discord, the ledger and Prefect. The point is seconds, not the minutes a scheduled
# listener run could be away.
SLACK_SECONDS = 8.0
FIRST_SCHEDULED_IN = timedelta(seconds=270)  # the deploy's next listener run: minutes away
RESTART_UNIT = 10  # the sandbox AWX template of the default catalog's restart_unit
LISTENER_NAME = "first-minute"


@pytest.fixture
async def served(prefect_harness: str, tmp_path: Path) -> AsyncIterator[ServedWithListener]:
    """Both deployments served by one process, as just deployed; forgotten after the test."""
    server = ServedWithListener(
        prefect_harness,
        tmp_path / "serve.log",
        name=LISTENER_NAME,
        parameters={
            "blocks": NAMES.model_dump(),
            "policy": FAST_POLICY,
            "settings": {"poll_seconds": POLL_SECONDS, "run_seconds": 60},
        },
        anchor=datetime.now(UTC) + FIRST_SCHEDULED_IN,
    )
    try:
        yield server
    finally:
        await end_leftover_runs()
        await server.stop()
        print(f"--- serve log (tail) ---\n{server.tail()}")  # shown only when it failed


async def test_a_reaction_on_the_first_cycles_request_is_decided_within_a_poll(
    stack: Stack, served: ServedWithListener
) -> None:
    await served.ready()
    deployed_at = datetime.now(UTC)
    await served.schedule_listener_runs(deployed_at)
    scheduled = await served.listener_runs()
    # as after a deploy: the schedule's runs exist, none running and none due for minutes
    assert scheduled and all(r.state.type is StateType.SCHEDULED for r in scheduled)
    assert min(r.expected_start_time for r in scheduled) > deployed_at + timedelta(minutes=4)

    await fail_units(stack, "web-02")
    report = await remediation_cycle(
        policy=FAST_POLICY,
        blocks=stack.names,
        dispatch="deployment",
        dispatch_options={
            "settings": {**FAST_SETTINGS, "deployment": DEPLOYMENT},
            "listener": served.listener,
        },
    )
    cycle_ended = datetime.now(UTC)
    [action] = report.actions
    assert report.outcome is CycleOutcome.ACTIONS and action.dispatched, report
    assert not [n for n in report.notices if "listener" in n], report.notices

    # the request is in Discord and its run paused: a person reacts
    [rec] = (await awaiting_approval(stack, 1)).values()
    listener_then = [
        r.state_name for r in await served.listener_runs() if r.id not in ids(scheduled)
    ]
    reacted_at = datetime.now(UTC)
    clock = time.monotonic()
    react(stack, rec, "✅", "alice")

    decided: ActionRecord = await eventually(
        lambda: _decided(stack, action.action_id),
        timeout=60,
        interval=0.2,
        what="the decision in the ledger",
    )
    seen_after = time.monotonic() - clock
    assert decided.decision is not None
    assert (decided.decision.decision, decided.decision.decider, decided.decision.via) == (
        "approve",
        "alice",
        "discord",
    )
    latency = (decided.decision.intended_at - reacted_at).total_seconds()

    # exactly one listener run beside the schedule's: the one the cycle started
    runs = await served.listener_runs()
    started = [r for r in runs if r.id not in ids(scheduled)]
    assert len(started) == 1, [(r.name, r.state_name, r.tags) for r in runs]
    [listener] = started
    assert "started-by-cycle" in listener.tags
    assert listener.state.type in (StateType.RUNNING, StateType.COMPLETED), listener.state
    assert ids(runs) - {listener.id} == ids(scheduled)
    assert all(r.state.type is StateType.SCHEDULED for r in runs if r.id != listener.id)
    assert listener.start_time is not None
    print(
        f"listener run: created {seconds(listener.created, cycle_ended)} s and running "
        f"{seconds(listener.start_time, cycle_ended)} s after the cycle ended, "
        f"{seconds(listener.start_time, reacted_at)} s after the reaction (then "
        f"{listener_then}); decision recorded {latency:.2f} s after the reaction (seen by "
        f"the test after {seen_after:.2f} s)"
    )
    assert latency <= POLL_SECONDS + SLACK_SECONDS, (latency, listener_then)

    # the action then launched exactly once
    await all_ended(report)
    [job] = stack.awx.jobs()
    assert (job.template.id, job.limit) == (RESTART_UNIT, "web-02")
    assert job.extra_vars["remediation_action_id"] == action.action_id
    assert stack.semaphore.jobs() == []
    final = await record(stack, action.action_id)
    assert final is not None and final.status is ActionStatus.FINISHED
    assert final.job is not None and final.job.job_id == str(job.id)


async def _decided(stack: Stack, action_id: str | None) -> ActionRecord | None:
    rec = await record(stack, action_id)
    return rec if rec is not None and rec.decision is not None else None


def ids(runs: list[FlowRun]) -> set[uuid.UUID]:
    return {r.id for r in runs}


def seconds(at: datetime | None, since: datetime) -> str:
    return "?" if at is None else f"{(at - since).total_seconds():+.1f}"
