"""The launch rules (`core.launch`): what a failed launch request means, where the job's
markers and poll deadline come from, its output tail, and how a poll ended."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.catalog import Runner
from core.launch import (
    MARKER_KEY,
    RUN_ID_KEY,
    JobEnd,
    JobRefused,
    KillSwitchEngaged,
    LaunchFailure,
    LaunchUnknown,
    NoJobToPoll,
    NotLaunched,
    RequestNotSent,
    RunnerRefused,
    launch_extra_vars,
    launch_failure,
    launch_template,
    marker_search_since,
    output_tail,
    poll_deadline,
    runner_refused,
    slot_retry_seconds,
)
from core.wire import JobRef, JobState, JobStatus
from tests.core.factories import NOW, action, issue, vet


def proposed(**update: object):
    [a] = vet([action()], [issue()]).approved
    return a.model_copy(update=update)


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 422, 429, 499])
def test_a_4xx_answer_means_the_runner_refused(code: int) -> None:
    assert runner_refused(code)
    assert launch_failure(code, request_sent=True) is LaunchFailure.RUNNER_REFUSED


@pytest.mark.parametrize("code", [None, 200, 302, 500, 502, 503, 504])
def test_no_answer_or_a_5xx_is_not_a_refusal(code: int | None) -> None:
    assert not runner_refused(code)


@pytest.mark.parametrize("code", [None, 500, 503])
def test_a_sent_request_without_a_4xx_may_have_created_a_job(code: int | None) -> None:
    assert launch_failure(code, request_sent=True) is LaunchFailure.OUTCOME_UNKNOWN


def test_a_request_that_never_left_created_no_job() -> None:
    assert launch_failure(None, request_sent=False) is LaunchFailure.NOT_SENT


def test_a_4xx_is_a_refusal_even_when_marked_unsent() -> None:
    assert launch_failure(404, request_sent=False) is LaunchFailure.RUNNER_REFUSED


def test_the_template_is_a_number_on_awx_and_semaphore_and_a_path_for_local_ansible() -> None:
    a = proposed()
    assert launch_template(a) == int(a.template)
    local = a.model_copy(update={"runner": Runner.ANSIBLE, "template": "/p/restart_unit.yml"})
    assert launch_template(local) == "/p/restart_unit.yml"


def test_the_extra_vars_carry_the_parameters_and_both_markers() -> None:
    a = proposed()
    extra = launch_extra_vars(a, "run-1")
    assert extra == {**a.parameters, MARKER_KEY: a.action_id, RUN_ID_KEY: "run-1"}


def test_the_marker_search_starts_a_minute_before_the_intent() -> None:
    assert marker_search_since(NOW) == NOW - timedelta(minutes=1)


def test_slot_retries_wait_at_most_five_seconds() -> None:
    assert slot_retry_seconds(1.0) == 1.0
    assert slot_retry_seconds(30.0) == 5.0


def test_the_poll_deadline_counts_from_the_launch_else_from_now() -> None:
    launched = NOW - timedelta(seconds=50)
    assert poll_deadline(launched, NOW, 60) == NOW + timedelta(seconds=10)
    assert poll_deadline(None, NOW, 60) == NOW + timedelta(seconds=60)


def test_the_output_tail_keeps_the_last_lines_with_secrets_masked() -> None:
    text = "\n".join(f"line {i}" for i in range(100)) + "\ntoken s3cr3t used"
    tail = output_tail(text, ["s3cr3t"], lines=3)
    assert tail == "line 98\nline 99\ntoken [REDACTED] used"


def _status(state: JobState, elapsed: float | None = None) -> JobStatus:
    return JobStatus(
        ref=JobRef(runner="awx", job_id="7"),
        state=state,
        started=NOW,
        finished=NOW + timedelta(seconds=4),
        elapsed=elapsed,
    )


def test_a_finished_job_ends_at_the_runners_time_with_its_state() -> None:
    end = JobEnd.finished(_status(JobState.FAILED))
    assert end.state is JobState.FAILED
    assert end.ended_at(NOW + timedelta(hours=1)) == NOW + timedelta(seconds=4)
    assert end.duration_seconds == 4.0
    assert JobEnd.finished(_status(JobState.SUCCESSFUL, elapsed=2.5)).duration_seconds == 2.5


def test_a_timed_out_job_ends_now_even_if_the_runner_says_otherwise() -> None:
    later = NOW + timedelta(minutes=5)
    end = JobEnd.timed_out(_status(JobState.RUNNING))
    assert end.state is JobState.TIMED_OUT and end.ended_at(later) == later
    assert JobEnd.timed_out(None).duration_seconds is None


def test_a_lost_job_is_unknown_and_ends_now() -> None:
    end = JobEnd.lost()
    assert end.state is JobState.UNKNOWN and end.ended_at(NOW) == NOW


def test_the_projects_end_states_keep_their_stored_words_and_are_terminal() -> None:
    ours = {
        JobState.TIMED_OUT: "timeout",
        JobState.REFUSED: "refused",
        JobState.NOT_LAUNCHED: "not_launched",
        JobState.UNKNOWN: "unknown",
    }
    for state, word in ours.items():
        assert state.value == word and JobState(word) is state and state.terminal
    assert not JobState.PENDING.terminal and not JobState.RUNNING.terminal


@pytest.mark.parametrize(
    ("stopped", "state"),
    [
        (KillSwitchEngaged(claimed=False), None),
        (KillSwitchEngaged(claimed=True), JobState.NOT_LAUNCHED),
        (JobRefused("no prompt on launch"), JobState.REFUSED),
        (RunnerRefused("HTTP 403"), JobState.NOT_LAUNCHED),
        (RequestNotSent("connection refused"), JobState.NOT_LAUNCHED),
        (LaunchUnknown(lookup_error="HTTP 502"), JobState.UNKNOWN),
    ],
)
def test_each_reason_for_no_job_records_its_end_state(
    stopped: NoJobToPoll, state: JobState | None
) -> None:
    assert stopped.job_state == state


def test_the_two_ways_of_not_launching_are_both_not_launched() -> None:
    assert isinstance(RunnerRefused("x"), NotLaunched)
    assert isinstance(RequestNotSent("x"), NotLaunched)
    assert not isinstance(JobRefused("x"), NotLaunched)
