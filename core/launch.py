"""The action's job: the rules of launching it at most once and following it to an end,
and the typed outcomes callers branch on.

A launch either returns the job (`JobRef`) or raises one `NoJobToPoll` subclass per
reason there is none (the way prefect-databricks raises one exception per terminal
state). A poll ends in a `JobEnd` whose `state` says how: the runner's end state,
`TIMED_OUT` at the entry's maximum job time (the job is cancelled and still verified:
it may have changed the host), or `UNKNOWN` when the job cannot be followed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from core.errors import RemediationError
from core.models import Frozen
from core.records import ActionStatus, JobRecord
from core.redact import redact
from core.vetting import ProposedAction
from core.wire import JobState, JobStatus

MARKER_KEY = "remediation_action_id"  # in the job's extra vars: finds a job again
RUN_ID_KEY = "remediation_flow_run_id"
OUTPUT_TAIL_LINES = 40
SLOT_WAIT_SECONDS = 5.0  # longest wait between two tries for a host slot
MARKER_SEARCH_SLACK = timedelta(minutes=1)  # clocks of the runner and this machine differ


# --- why there is no job to poll ---------------------------------------------------------
class NoJobToPoll(RemediationError):
    """This run has no job to poll; the subclass says why. `job_state` is the end state
    recorded on the job's row (None: nothing to record)."""

    job_state: JobState | None = None


class ActionAlreadyEnded(NoJobToPoll):
    """The action ended before this run could launch (a rerun, or it was expired while
    the run waited): nothing to do."""

    def __init__(self, status: ActionStatus, job: JobRecord | None) -> None:
        self.status, self.job = status, job
        super().__init__(f"action already {status.value}")


class KillSwitchEngaged(NoJobToPoll):
    """The operator's kill switch is on: nothing launched."""

    def __init__(self, *, claimed: bool) -> None:
        # Once the launch is claimed the job row exists: it ends `not_launched`.
        self.job_state = JobState.NOT_LAUNCHED if claimed else None
        super().__init__("kill switch engaged")


class JobRefused(NoJobToPoll):
    """The runner would run the job wider than asked (e.g. an AWX template that does not
    prompt on launch for `limit` and variables): it was cancelled at once."""

    job_state = JobState.REFUSED

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"launch refused: {detail}")


class NotLaunched(NoJobToPoll):
    """No job exists: the request did not create one."""

    job_state = JobState.NOT_LAUNCHED

    def __init__(self, error: str) -> None:
        self.error = error
        super().__init__(error)


class RunnerRefused(NotLaunched):
    """The runner answered 4xx (bad request, auth, unknown template, rate limit)."""


class RequestNotSent(NotLaunched):
    """The request provably never left this process (even after the retries)."""


class LaunchUnknown(NoJobToPoll):
    """A job may exist (or have run) that cannot be found or followed: escalated as a
    counted attempt, never relaunched. `local_job_id`: a local Ansible job of a process
    that has died; otherwise the marker search found nothing (`lookup_error`: it failed)."""

    job_state = JobState.UNKNOWN

    def __init__(self, *, local_job_id: str | None = None, lookup_error: str | None = None):
        self.local_job_id, self.lookup_error = local_job_id, lookup_error
        super().__init__(f"launch state unknown ({local_job_id or lookup_error or 'not found'})")


# --- the rules -------------------------------------------------------------------------
class LaunchFailure(StrEnum):
    """What a failed launch request means for the job."""

    RUNNER_REFUSED = "runner_refused"  # a 4xx answer: the runner created no job
    NOT_SENT = "not_sent"  # never left this process: no job
    OUTCOME_UNKNOWN = "outcome_unknown"  # may have created one: look it up, never relaunch


def runner_refused(status_code: int | None) -> bool:
    """A 4xx answer (bad request, auth, unknown template, rate limit) means the runner
    refused: it created no job, so there is nothing to look up."""
    return status_code is not None and 400 <= status_code < 500


def launch_failure(status_code: int | None, *, request_sent: bool) -> LaunchFailure:
    if runner_refused(status_code):
        return LaunchFailure.RUNNER_REFUSED
    if not request_sent:
        return LaunchFailure.NOT_SENT
    return LaunchFailure.OUTCOME_UNKNOWN


def launch_template(action: ProposedAction) -> Any:
    """The runner's template id as its client takes it (`Runner.template_kind`)."""
    return action.runner.template_kind.parse(action.template)


def launch_extra_vars(action: ProposedAction, run_id: str) -> dict[str, Any]:
    """The action's parameters plus the markers that find the job (and its run) again."""
    return {**action.parameters, MARKER_KEY: action.action_id, RUN_ID_KEY: run_id}


def marker_search_since(intent_at: datetime) -> datetime:
    return intent_at - MARKER_SEARCH_SLACK


def slot_retry_seconds(job_poll_seconds: float) -> float:
    return min(job_poll_seconds, SLOT_WAIT_SECONDS)


def poll_deadline(launched_at: datetime | None, now: datetime, max_job_seconds: float) -> datetime:
    """The entry's maximum job time, counted from the launch (from now if unrecorded)."""
    return (launched_at or now) + timedelta(seconds=max_job_seconds)


def output_tail(text: str, secrets: Iterable[str], lines: int = OUTPUT_TAIL_LINES) -> str:
    """The job's last lines, secrets masked (the tail goes to the ledger and Discord)."""
    return "\n".join(redact(text, secrets).splitlines()[-lines:])


class JobEnd(Frozen):
    """How the poll of a job ended: `state` is terminal; `status` the last one read."""

    state: JobState
    status: JobStatus | None = None

    @classmethod
    def finished(cls, status: JobStatus) -> JobEnd:
        return cls(state=status.state, status=status)

    @classmethod
    def timed_out(cls, last: JobStatus | None) -> JobEnd:
        return cls(state=JobState.TIMED_OUT, status=last)

    @classmethod
    def lost(cls) -> JobEnd:
        """The job cannot be followed any more (a local job of a process that died)."""
        return cls(state=JobState.UNKNOWN)

    def ended_at(self, now: datetime) -> datetime:
        """When the job ended: the runner's time, else now (a timed-out job ends now)."""
        if self.state is not JobState.TIMED_OUT and self.status and self.status.finished:
            return self.status.finished
        return now

    @property
    def duration_seconds(self) -> float | None:
        status = self.status
        if status is None:
            return None
        if status.elapsed is not None:
            return status.elapsed
        if status.started and status.finished:
            return (status.finished - status.started).total_seconds()
        return None
