"""Stage 4 through the real `remediate_action` flow (an approved action, so it does not
pause), against the sandbox AWX and Semaphore servers and a real local ansible-playbook:
each runner to success, a failure, a timeout, a refused template, at most one launch
per action through dropped answers, refused connections and restarts, and one job per
host (and the global cap) at a time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from blocks import AwxConnection
from clients.awx import AwxClient
from clients.jobs_common import has_marker
from core.launch import MARKER_KEY
from core.records import ActionStatus
from sandbox.awx import AwxServer
from sandbox.http import free_port
from sandbox.jobs import JobTemplate, Phase, Script
from tests.fixtures.jobs import AWX_TOKEN, job_templates
from tests.fixtures.stack import Stack
from tests.flows.helpers import eventually
from tests.flows.launch_support import (
    SCRIPTED,
    SETTINGS,
    approve,
    artifacts,
    audit_events,
    embeds,
    local_ansible_settings,
    record,
    restart_unit,
    run_approved,
    scripted,
    text_of,
)

SCRIPTED_ID = 30
NGINX_FAILED = 'node_systemd_unit_state{instance="web-02",name="nginx.service",state="failed"} == 1'


def script(stack: Stack, job_script: Script) -> None:
    stack.awx.add_template(JobTemplate(SCRIPTED_ID, "scripted", script=job_script))


@pytest.mark.parametrize("runner", ["awx", "semaphore", "ansible"])
async def test_a_real_playbook_runs_through_each_runner_to_success(
    stack: Stack, runner: str
) -> None:
    stack.fleet.patch("web-02", {"units": {"nginx.service": {"state": "failed"}}})
    action = restart_unit(runner)
    settings = local_ansible_settings(stack) if runner == "ansible" else SETTINGS
    state = await run_approved(stack, action, settings=settings)

    assert state.is_completed(), state
    done = await record(stack, action.action_id)
    assert done.status is ActionStatus.FINISHED
    assert done.job is not None and done.job.state == "successful"
    assert "RESULT web-02 restart_unit nginx.service" in (done.job.output_tail or "")
    if runner == "ansible":
        assert done.job.job_id.startswith("local-")
    else:
        server = stack.awx if runner == "awx" else stack.semaphore
        [job] = server.jobs(10)  # exactly one launch, on the one host, with the marker
        assert done.job.job_id == str(job.id)
        assert job.limit == "web-02"
        assert has_marker(job.extra_vars, MARKER_KEY, action.action_id)
        assert job.extra_vars["unit"] == "nginx.service"
    assert stack.fleet.state("web-02").units["nginx.service"].state == "active"
    [result] = embeds(stack, "✅ EFFECTIVE: restart_unit on web-02")
    assert done.job.job_id in text_of(result)
    [report] = [a for a in await artifacts(state.state_details.flow_run_id)
                if a.key == "remediation-action-report"]  # fmt: skip
    assert done.job.job_id in report.data and "successful" in report.data


async def test_a_failing_job_is_reported_failed(stack: Stack) -> None:
    stack.fleet.patch("web-02", {"units": {"nginx.service": {"state": "failed"}}})
    await stack.scraped(NGINX_FAILED)  # still failed after the job: nothing fixed it
    script(stack, Script.fail(output=["fatal: [web-02]: FAILED! => unit would not start"]))
    action = scripted()
    state = await run_approved(stack, action, SCRIPTED)

    assert state.is_completed(), state
    done = await record(stack, action.action_id)
    assert done.job is not None and done.job.state == "failed"
    assert "unit would not start" in (done.job.output_tail or "")
    async with stack.ledger() as ledger:
        history = await ledger.episodes.attempt_history(action.fingerprints, since=done.created_at)
    assert [r.outcome for r in history[action.fingerprints[0]]] == ["failed"]
    [result] = [e for e in embeds(stack) if "noop_fix on web-02 (job failed)" in e["title"]]
    assert "unit would not start" in text_of(result)


async def test_a_stuck_job_times_out_is_cancelled_and_posted_with_its_last_lines(
    stack: Stack,
) -> None:
    script(stack, Script.stuck(output=["TASK [restart] ***", "still waiting on web-02 (42)"]))
    action = scripted(max_job_seconds=2)
    state = await run_approved(stack, action, SCRIPTED)

    assert state.is_completed(), state
    [job] = stack.awx.jobs(SCRIPTED_ID)
    assert stack.awx.cancel_requests == [job.id]  # the server received the cancel
    assert job.status == Phase.CANCELED
    [timeout] = embeds(stack, "⏱️ Job timeout: noop_fix on web-02")
    assert "still waiting on web-02 (42)" in text_of(timeout)
    assert f"`{job.id}`" in text_of(timeout)
    done = await record(stack, action.action_id)
    assert done.job is not None and done.job.state == "timeout"
    assert "still waiting on web-02 (42)" in (done.job.output_tail or "")


async def test_a_template_that_ignores_limit_and_vars_is_refused_and_cancelled_at_once(
    stack: Stack,
) -> None:
    action = scripted(template="20")  # no_prompt: would restart nginx on every host
    state = await run_approved(stack, action, SCRIPTED)

    assert state.is_completed(), state
    [job] = stack.awx.jobs(20)
    assert stack.awx.cancel_requests == [job.id]
    assert job.wait(30) == Phase.CANCELED
    assert stack.fleet.actions == []  # it never touched a host
    [refused] = embeds(stack, "🚫 Launch refused: noop_fix on web-02")
    assert "template does not prompt on launch" in text_of(refused)
    done = await record(stack, action.action_id)
    assert done.status is ActionStatus.NOT_RUN
    assert done.job is not None and done.job.state == "refused"
    assert stack.awx.launches(20) == 1


async def test_a_launch_whose_answer_is_lost_is_found_by_marker_and_never_relaunched(
    stack: Stack,
) -> None:
    script(stack, Script.succeed())
    stack.awx.drop_after_launch()  # the job is created, then the connection drops
    action = scripted()
    state = await run_approved(stack, action, SCRIPTED)

    assert state.is_completed(), state
    [job] = stack.awx.jobs(SCRIPTED_ID)  # exactly one launch on the server
    assert len(stack.awx.received("POST", r"/api/v2/job_templates/30/launch/")) == 1
    assert stack.awx.received("GET", r"/api/v2/jobs/")  # it looked the job up
    done = await record(stack, action.action_id)
    assert done.job is not None
    assert (done.job.job_id, done.job.state) == (str(job.id), "successful")
    assert embeds(stack, "❓") == []


async def test_a_refused_connection_is_retried_because_the_request_never_left(
    stack: Stack,
) -> None:
    port = free_port()  # nothing listens here yet: connecting is refused
    await AwxConnection(url=f"http://127.0.0.1:{port}", token=AWX_TOKEN, timeout_seconds=5).asave(
        stack.names.awx, overwrite=True
    )
    late = AwxServer(job_templates(), token=AWX_TOKEN)
    action = scripted()
    await approve(stack, action)
    run = asyncio.create_task(run_approved(stack, action, SCRIPTED))
    try:

        async def intent() -> bool:
            done = await record(stack, action.action_id)
            return done.job is not None

        await eventually(intent, what="the launch intent")  # the first try is refused now
        late.start(port=port)
        late.fleet_url = stack.fleet.url
        state = await asyncio.wait_for(run, timeout=120)
        assert state.is_completed(), state
        [job] = late.jobs(SCRIPTED_ID)  # a later try got through, once
        assert len(late.received("POST", r"/api/v2/job_templates/30/launch/")) == 1
        done = await record(stack, action.action_id)
        assert done.job is not None
        assert (done.job.job_id, done.job.state) == (str(job.id), "successful")
    finally:
        run.cancel()
        late.stop()


async def test_a_launch_intent_without_a_job_id_is_found_by_marker_on_rerun(
    stack: Stack,
) -> None:
    script(stack, Script.succeed())
    action = scripted()
    await approve(stack, action)
    async with stack.ledger() as ledger:  # an earlier run wrote its intent, then died
        claimed = await ledger.jobs.claim_launch(
            action_id=action.action_id, host="web-02", runner="awx", template="30",
            marker=action.action_id, max_running=5, now=action.proposed_at,
        )  # fmt: skip
    assert claimed == "claimed"
    async with AwxClient(stack.awx.url, token=AWX_TOKEN) as awx:  # ... after AWX got it
        ref = await awx.launch(
            SCRIPTED_ID, limit="web-02", extra_vars={MARKER_KEY: action.action_id}
        )
    state = await run_approved(stack, action, SCRIPTED)

    assert state.is_completed(), state
    assert stack.awx.launches(SCRIPTED_ID) == 1  # found, polled, never relaunched
    done = await record(stack, action.action_id)
    assert done.job is not None
    assert (done.job.job_id, done.job.state) == (ref.job_id, "successful")


async def test_a_launch_intent_whose_job_cannot_be_found_is_escalated_not_relaunched(
    stack: Stack,
) -> None:
    action = scripted()
    await approve(stack, action)
    async with stack.ledger() as ledger:
        await ledger.jobs.claim_launch(
            action_id=action.action_id, host="web-02", runner="awx", template="30",
            marker=action.action_id, max_running=5, now=action.proposed_at,
        )  # fmt: skip
    state = await run_approved(stack, action, SCRIPTED)

    assert state.is_completed(), state
    assert stack.awx.launches(SCRIPTED_ID) == 0
    [unknown] = embeds(stack, "❓ Launch state unknown: noop_fix on web-02")
    assert "NOT relaunched" in text_of(unknown) and action.action_id in text_of(unknown)
    done = await record(stack, action.action_id)
    assert done.status is ActionStatus.NOT_RUN
    assert done.job is not None and done.job.state == "unknown"
    async with stack.ledger() as ledger:
        history = await ledger.episodes.attempt_history(action.fingerprints, since=done.created_at)
    assert [r.outcome for r in history[action.fingerprints[0]]] == ["launch_unknown"]
    assert "not_run" in await audit_events(stack, action.action_id)


@pytest.mark.parametrize(
    ("hosts", "max_running", "why"),
    [
        (("web-02", "web-02"), 5, "another remediation job is running on this host"),
        (("web-01", "web-02"), 1, "1 remediation jobs are running"),
    ],
    ids=["same-host", "global-cap"],
)
async def test_two_approved_actions_run_one_after_the_other(
    stack: Stack, hosts: tuple[str, str], max_running: int, why: str
) -> None:
    script(stack, Script.succeed(running=4.0))
    stack.awx.add_template(JobTemplate(31, "quick", script=Script.succeed()))
    policy: dict[str, Any] = {**SCRIPTED, "max_running_jobs": max_running}
    first = scripted(host=hosts[0], unit="nginx.service", cycle="c-a")
    second = scripted(host=hosts[1], unit="cron.service", cycle="c-b", template="31")
    runs = [asyncio.create_task(run_approved(stack, first, policy))]
    try:
        [job] = await eventually(lambda: stack.awx.jobs(SCRIPTED_ID), what="the first job")
        runs.append(asyncio.create_task(run_approved(stack, second, policy)))
        [waiting] = await eventually(lambda: embeds(stack, "⏳ Waiting"), what="a notice")
        assert not job.terminal  # the notice came while the first job ran
        assert stack.awx.jobs(31) == []
        assert waiting["title"] == f"⏳ Waiting: noop_fix on {second.host}"
        assert why in text_of(waiting)
        states = await asyncio.wait_for(asyncio.gather(*runs), timeout=180)
    finally:
        for run in runs:
            run.cancel()

    assert all(s.is_completed() for s in states), states
    [later] = stack.awx.jobs(31)
    _, _, first_finished = job.snapshot()
    assert first_finished is not None and later.created >= first_finished  # no overlap
    for action in (first, second):
        done = await record(stack, action.action_id)
        assert done.job is not None and done.job.state == "successful"
    assert len(embeds(stack, "⏳ Waiting")) == 1  # said once, not every poll


async def test_a_finished_action_is_not_carried_out_again(stack: Stack) -> None:
    script(stack, Script.succeed())
    action = scripted()
    await run_approved(stack, action, SCRIPTED)
    posted = len(embeds(stack))
    again = await run_approved(stack, action, SCRIPTED)  # e.g. a manual rerun

    assert again.is_completed()
    assert stack.awx.launches(SCRIPTED_ID) == 1
    assert len(embeds(stack)) == posted
    assert (await record(stack, action.action_id)).status is ActionStatus.FINISHED


async def test_the_output_tail_is_redacted_in_the_ledger_discord_and_the_artifact(
    stack: Stack,
) -> None:
    leaked = f"connecting to AWX with {AWX_TOKEN} as admin"  # a block secret, verbatim
    script(stack, Script.succeed(output=[leaked, "db password=hunter22 accepted"]))
    action = scripted()
    state = await run_approved(stack, action, SCRIPTED)

    assert state.is_completed(), state
    done = await record(stack, action.action_id)
    assert done.job is not None and done.job.output_tail is not None
    assert "connecting to AWX with [REDACTED] as admin" in done.job.output_tail
    posted = "\n".join(text_of(e) for e in embeds(stack))
    [report] = [a for a in await artifacts(state.state_details.flow_run_id)
                if a.key == "remediation-action-report"]  # fmt: skip
    for where in (done.job.output_tail, posted, report.data):
        assert AWX_TOKEN not in where and "hunter22" not in where
        assert "[REDACTED]" in where  # the tail is there, masked
    assert done.job.job_id in report.data
