"""Stage 4 I/O: launch (never blindly retried), status polls, output, cancel, look-up.

Every task here has `NO_CACHE`: a poll must ask the runner each time, and a launch must
never be answered from a cache (the ledger, not Prefect's result cache, is what makes a
launch happen at most once per action).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from clients.errors import AnsibleError, UpstreamError
from core.wire import JobRef, JobStatus
from tasks.runners import JobRunner, LocalJobLost

LAUNCH_RETRY_DELAYS = (1.0, 2.0, 4.0)


def _retry_unless_lost(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a read, except for a local job of a dead process (asking again won't help)."""
    return not isinstance(state.data, LocalJobLost)


@task(name="launch-job", cache_policy=NO_CACHE, retries=0)
async def launch_job(
    runner: JobRunner, template: Any, host: str, extra_vars: dict[str, Any]
) -> JobRef:
    """Launch once. Retried (here, with a backoff) only when the request provably never
    left this process — the connection was refused: any other failure may have created
    the job, and the caller must look it up instead of launching again."""
    for delay in (*LAUNCH_RETRY_DELAYS, None):
        try:
            return await runner.launch(template, limit=host, extra_vars=extra_vars)
        except AnsibleError:
            raise  # a local launch has no connection to retry: asking again won't help
        except UpstreamError as exc:
            if exc.request_sent or delay is None:
                raise
            get_run_logger().warning("launch not sent (%s); retrying in %.0f s", exc, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


@task(
    name="read-job-status",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=_retry_unless_lost,
)
async def read_job_status(runner: JobRunner, job_id: str) -> JobStatus:
    return await runner.status(job_id)


@task(
    name="read-job-output",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=_retry_unless_lost,
)
async def read_job_output(runner: JobRunner, job_id: str) -> str:
    return await runner.output(job_id)


@task(
    name="cancel-job",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=_retry_unless_lost,
)
async def cancel_job(runner: JobRunner, job_id: str) -> None:
    await runner.cancel(job_id)


@task(name="find-job-by-marker", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
async def find_job_by_marker(
    runner: JobRunner, template: Any, key: str, value: str, since: datetime
) -> JobRef | None:
    """The job of `template` created since `since` carrying `key=value` in its extra
    vars, or None (a runner that cannot be sure raises instead)."""
    return await runner.find_by_marker(template, key=key, value=value, since=since)
