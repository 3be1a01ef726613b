"""Stage 4: launch the action's job at most once, and poll it to an end.

The launch intent is written to the ledger before the request and the job id after it.
A rerun that finds a job id polls it; one that finds an intent without a job id looks
the job up by its marker and never relaunches blindly. A launch is retried only when
the request provably never left this process (`tasks.jobs.launch_job`).

`launch_once` returns the job or raises one `core.launch.NoJobToPoll` per reason there
is none; `poll_job` returns a `core.launch.JobEnd`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from clients.errors import LaunchRefused, UpstreamError
from core import words
from core.launch import (
    MARKER_KEY,
    ActionAlreadyEnded,
    JobEnd,
    JobRefused,
    KillSwitchEngaged,
    LaunchFailure,
    LaunchUnknown,
    NoJobToPoll,
    RequestNotSent,
    RunnerRefused,
    launch_extra_vars,
    launch_failure,
    launch_template,
    marker_search_since,
    output_tail,
    poll_deadline,
    slot_retry_seconds,
)
from core.records import JobRecord
from core.wire import JobRef
from tasks.action_run import ActionRunContext
from tasks.controls import kill_switch_engaged
from tasks.jobs import cancel_job, find_job_by_marker, launch_job, read_job_output, read_job_status
from tasks.runners import AnsibleRunner, LocalJobLost

MARKER_LOOKUPS = 3


async def launch_once(run: ActionRunContext) -> JobRef:
    """The action's job: the one recorded, the one found by its marker, or a new one
    launched exactly once. Raises a `NoJobToPoll` saying why there is none (and, for a
    job that may exist, after recording it as a counted attempt)."""
    try:
        return await _the_job(run)
    except LaunchUnknown:
        await _record_unknown(run)
        raise
    except NoJobToPoll as stopped:
        if stopped.job_state is not None:
            await run.ledger.jobs.record_job_state(
                run.action.action_id,
                state=stopped.job_state.value,
                finished=True,
                now=datetime.now(UTC),
            )
        raise


async def _the_job(run: ActionRunContext) -> JobRef:
    record = await run.ledger.actions.get_action(run.action.action_id)
    if record is not None and record.status.terminal:
        raise ActionAlreadyEnded(record.status, record.job)
    job = record.job if record else None
    if job is None:
        if await kill_switch_engaged():
            raise KillSwitchEngaged(claimed=False)
        if await claim_slot(run) == "claimed":
            if await kill_switch_engaged():  # checked again right before the launch
                raise KillSwitchEngaged(claimed=True)
            return await _launch_new(run)
        job = await _recorded_job(run)  # another run of this action claimed it
    if job is not None and job.job_id:
        return _follow(run, job)
    return await _find_by_marker(run, job.intent_at if job else datetime.now(UTC))


async def _recorded_job(run: ActionRunContext) -> JobRecord | None:
    record = await run.ledger.actions.get_action(run.action.action_id)
    return record.job if record else None


async def claim_slot(run: ActionRunContext) -> str:
    """Wait (visibly, said once) while another job runs on this host or the global cap
    is full; "claimed", or "exists" when another run of this action claimed it."""
    announced = False
    while True:
        claim = await run.ledger.jobs.claim_launch(
            action_id=run.action.action_id,
            host=run.action.host,
            runner=run.action.runner.value,
            template=run.action.template,
            marker=run.action.action_id,
            max_running=run.policy.max_running_jobs,
            now=datetime.now(UTC),
        )
        if claim in ("claimed", "exists"):
            return claim
        if not announced:
            why = words.slot_wait_reason(claim, run.policy.max_running_jobs)
            run.log.info("waiting to launch: %s", why)
            await run.say(words.waiting_to_launch(run.action, why))
            announced = True
        await asyncio.sleep(slot_retry_seconds(run.settings.job_poll_seconds))


def _follow(run: ActionRunContext, job: JobRecord) -> JobRef:
    """A job id is in the ledger: poll that job — unless it was a local Ansible job of a
    process that has died, which nobody can follow any more."""
    assert job.job_id is not None
    if isinstance(run.runner, AnsibleRunner) and not run.runner.knows(job.job_id):
        raise LaunchUnknown(local_job_id=job.job_id)
    run.log.info("job %s already launched for this action: polling it", job.job_id)
    return JobRef(runner=job.runner, job_id=job.job_id, url=job.job_url)  # type: ignore[arg-type]


async def _launch_new(run: ActionRunContext) -> JobRef:
    action = run.action
    extra = launch_extra_vars(action, run.run_id)
    intent_at = datetime.now(UTC)
    try:
        ref = await launch_job(run.runner, launch_template(action), action.host, extra)
    except LaunchRefused as exc:
        raise JobRefused(exc.detail) from exc
    except UpstreamError as exc:
        failure = launch_failure(exc.status_code, request_sent=exc.request_sent)
        if failure is LaunchFailure.RUNNER_REFUSED:
            raise RunnerRefused(str(exc)) from exc
        if failure is LaunchFailure.NOT_SENT:
            raise RequestNotSent(str(exc)) from exc
        run.log.error("launch outcome unknown (%s): looking the job up", exc)
        return await _find_by_marker(run, intent_at)
    await run.ledger.jobs.record_job_launched(
        action.action_id, job_id=ref.job_id, job_url=ref.url, now=datetime.now(UTC)
    )
    return ref


async def _find_by_marker(run: ActionRunContext, since: datetime) -> JobRef:
    """An intent without a job id: the request may have created a job. Find it by its
    marker; never launch again."""
    found, failure = None, None
    for attempt in range(MARKER_LOOKUPS):
        try:
            found = await find_job_by_marker(
                run.runner,
                launch_template(run.action),
                MARKER_KEY,
                run.action.action_id,
                marker_search_since(since),
            )
            failure = None
        except UpstreamError as exc:
            run.log.warning("job look-up failed: %s", exc)
            failure = exc
        if found is not None:
            break
        await asyncio.sleep(1.0 + attempt)
    if found is None:
        raise LaunchUnknown(lookup_error=failure.detail if failure is not None else None)
    await run.ledger.jobs.record_job_launched(
        run.action.action_id, job_id=found.job_id, job_url=found.url, now=datetime.now(UTC)
    )
    run.log.info("found job %s by its marker", found.job_id)
    return found


async def _record_unknown(run: ActionRunContext) -> None:
    """A job may exist (or have run) that cannot be followed: recorded as a counted
    attempt so the issue is not retried blindly."""
    now = datetime.now(UTC)
    action = run.action
    await run.ledger.jobs.record_job_state(
        action.action_id, state=LaunchUnknown.job_state.value, finished=True, now=now
    )
    await run.ledger.episodes.record_attempt(
        action_id=action.action_id,
        fingerprints=action.fingerprints,
        host=action.host,
        catalog_key=action.catalog_key,
        outcome="launch_unknown",
        counts=True,
        explanation="the launch may or may not have created a job",
        now=now,
    )


@task(name="poll-job", cache_policy=NO_CACHE, retries=0)
async def poll_job(run: ActionRunContext, ref: JobRef) -> JobEnd:
    """Poll to a terminal state or the entry's maximum job time; cancel at the max."""
    record = await run.ledger.actions.get_action(run.action.action_id)
    launched = record.job.launched_at if record and record.job else None
    deadline = poll_deadline(launched, datetime.now(UTC), run.action.max_job_seconds)
    status = None
    while True:
        try:
            status = await read_job_status(run.runner, ref.job_id)
        except LocalJobLost as exc:
            run.log.error("job %s cannot be followed: %s", ref.job_id, exc)
            return JobEnd.lost()
        except UpstreamError as exc:
            run.log.warning("status of job %s unavailable: %s", ref.job_id, exc)
        else:
            await run.ledger.jobs.record_job_state(
                run.action.action_id, state=status.state.value, now=datetime.now(UTC)
            )
            if status.state.terminal:
                return JobEnd.finished(status)
        if datetime.now(UTC) >= deadline:
            try:
                await cancel_job(run.runner, ref.job_id)
            except UpstreamError as exc:
                run.log.error("cancel of job %s failed: %s", ref.job_id, exc)
            return JobEnd.timed_out(status)
        await asyncio.sleep(run.settings.job_poll_seconds)


async def read_output_tail(run: ActionRunContext, ref: JobRef) -> str:
    try:
        text = await read_job_output(run.runner, ref.job_id)
    except UpstreamError as exc:
        return f"(output unavailable: {exc})"
    return output_tail(text, run.conns.secrets)
