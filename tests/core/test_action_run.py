"""The decisions of an action run (`core.action_run`): pause keys and timeouts, who
resumed a paused run, what a failed run leaves behind — and their notices
(`core.words`)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from channels.discord_render import notice_embed
from core import words
from core.action_run import (
    ActionResult,
    FailedRun,
    ResumeKind,
    applied_decision,
    classify_failed_run,
    classify_resume,
    pause_key,
    pause_timeout,
    regates_of,
    ui_decision,
    wait_choice,
)
from core.launch import (
    MARKER_KEY,
    JobRefused,
    KillSwitchEngaged,
    LaunchUnknown,
    RequestNotSent,
    RunnerRefused,
)
from core.policy import Policy
from core.records import ActionRecord, ActionStatus, Decision, JobRecord
from core.wire import JobState
from tests.core.factories import NOW, action, issue, vet


def proposed():
    [a] = vet([action()], [issue()]).approved
    return a


def decision(answer: str = "approve", via: str = "discord") -> Decision:
    return Decision(
        action_id="a1",
        decision=answer,
        decider="alice",
        via=via,
        intended_at=NOW,
        applied_at=NOW,
    )


def record(status: ActionStatus, *, job: bool = False) -> ActionRecord:
    a = proposed()
    claimed = JobRecord(
        action_id=a.action_id, runner="awx", template="10", marker=a.action_id, intent_at=NOW
    )
    return ActionRecord(
        proposal=a,
        status=status,
        flow_run_id="fr",
        created_at=NOW,
        updated_at=NOW,
        job=claimed if job else None,
    )


def test_each_pause_has_its_own_key() -> None:
    assert pause_key("a1") == "approve-a1"
    assert pause_key("a1", 2) == "approve-a1-regate-2"


def test_a_pause_lasts_until_the_deadline_plus_the_grace() -> None:
    assert pause_timeout(NOW + timedelta(seconds=90.7), NOW, 30) == 120
    assert pause_timeout(NOW - timedelta(seconds=10), NOW, 30) == 30  # already past


def test_a_resume_the_listener_recorded_is_the_listeners() -> None:
    recorded = decision("approve", via="discord")
    kind = classify_resume("approve", recorded, ui_approval_allowed=False)
    assert kind is ResumeKind.LISTENER


@pytest.mark.parametrize("via", ["deadline", "operator", "expired"])
def test_every_listener_way_of_deciding_counts_as_the_listeners(via: str) -> None:
    kind = classify_resume("reject", decision("reject", via=via), ui_approval_allowed=False)
    assert kind is ResumeKind.LISTENER


def test_a_resume_that_differs_from_the_recorded_decision_came_from_the_ui() -> None:
    recorded = decision("reject", via="discord")
    assert classify_resume("approve", recorded, ui_approval_allowed=True) is ResumeKind.UI


def test_an_earlier_ui_decision_does_not_make_a_resume_the_listeners() -> None:
    recorded = decision("reject", via="ui")
    assert classify_resume("reject", recorded, ui_approval_allowed=False) is ResumeKind.UI


def test_a_ui_approve_the_risk_level_refuses_is_regated() -> None:
    kind = classify_resume("approve", None, ui_approval_allowed=False)
    assert kind is ResumeKind.UI_APPROVE_REGATED
    assert classify_resume("approve", None, ui_approval_allowed=True) is ResumeKind.UI


def test_a_ui_reject_is_always_enough() -> None:
    assert classify_resume("reject", None, ui_approval_allowed=False) is ResumeKind.UI


def test_a_ui_decision_is_applied_as_it_is_made_and_names_no_person() -> None:
    d = ui_decision("a1", "reject", "", NOW)
    assert (d.decider, d.via, d.comment) == ("Prefect UI", "ui", None)
    assert d.intended_at == d.applied_at == NOW
    assert ui_decision("a1", "approve", "ok", NOW).comment == "ok"


@pytest.mark.parametrize(
    ("status", "job", "kind"),
    [
        (ActionStatus.PROPOSED, False, FailedRun.WAITING),
        (ActionStatus.AWAITING_APPROVAL, False, FailedRun.WAITING),
        (ActionStatus.APPROVED, False, FailedRun.STRANDED),
        (ActionStatus.APPROVED, True, FailedRun.OTHER),  # a launch was claimed
        (ActionStatus.RUNNING, True, FailedRun.OTHER),
        (ActionStatus.FINISHED, True, FailedRun.OTHER),
    ],
)
def test_a_failed_run_is_classified_by_where_it_left_its_action(
    status: ActionStatus, job: bool, kind: FailedRun
) -> None:
    assert classify_failed_run(record(status, job=job)) is kind


def test_a_failed_run_with_no_recorded_action_was_still_waiting() -> None:
    assert classify_failed_run(None) is FailedRun.WAITING


def test_the_result_is_typed_and_still_compares_with_the_stored_words() -> None:
    result = ActionResult.model_validate(
        {"action_id": "a1", "status": "finished", "job_state": "timeout", "verdict": "effective"}
    )
    assert result.status is ActionStatus.FINISHED and result.job_state is JobState.TIMED_OUT
    assert result.status == "finished" and result.job_state == "timeout"
    with pytest.raises(ValueError):
        ActionResult.model_validate({"action_id": "a1", "status": "finished", "verdict": "ok"})


# --- the notices ------------------------------------------------------------------------
def test_a_rejection_names_who_and_says_nothing_ran() -> None:
    a = proposed()
    d = decision("reject").model_copy(update={"comment": "not now"})
    embed = notice_embed(words.rejected(a, d))
    assert embed.title == "❌ Rejected: restart_unit on web-02"
    assert embed.description == "Rejected by alice (discord): not now. Nothing was launched."


def test_a_regated_ui_approval_says_how_many_discord_approvers_are_needed() -> None:
    a = proposed()
    level = Policy().risk.level(a.risk).model_copy(update={"approvers_needed": 2})
    embed = notice_embed(words.still_gated(a, level, channel="Discord"))
    assert embed.title == "🔒 Still gated: restart_unit on web-02"
    assert "until 2 approvers react ✅ in Discord" in (embed.description or "")


def test_each_failed_run_says_what_it_left_behind() -> None:
    a = proposed()
    waiting = notice_embed(words.run_failed(a, FailedRun.WAITING, None, "x"))
    stranded = notice_embed(words.run_failed(a, FailedRun.STRANDED, ActionStatus.APPROVED, "boom"))
    other = notice_embed(words.run_failed(a, FailedRun.OTHER, ActionStatus.RUNNING, "boom"))
    assert waiting.title == "⏱️ Expired: restart_unit on web-02 did not run"
    assert stranded.title == "⚠️ Not run: restart_unit on web-02"
    assert "boom" in (stranded.description or "") and "Nothing was launched" in (
        stranded.description or ""
    )
    assert other.title == "⚠️ Action run failed: restart_unit on web-02"
    assert "while the action was running" in (other.description or "")


def test_the_wait_for_a_slot_says_why() -> None:
    assert words.slot_wait_reason("host_busy", 3) == (
        "another remediation job is running on this host"
    )
    assert words.slot_wait_reason("cap_full", 3) == "3 remediation jobs are running"
    embed = notice_embed(words.waiting_to_launch(proposed(), "x"))
    assert embed.title == "⏳ Waiting: restart_unit on web-02"
    assert embed.description == "Approved, waiting to launch: x."


@pytest.mark.parametrize(
    ("stopped", "title", "why"),
    [
        (KillSwitchEngaged(claimed=True), "⛔ Paused by operator: restart_unit",
         "Paused by operator (kill switch): nothing launched."),
        (JobRefused("ignored limit"), "🚫 Launch refused: restart_unit on web-02",
         "Launch refused: template does not prompt on launch (ignored limit)"),
        (RunnerRefused("AWX launch failed (HTTP 403): no"),
         "⚠️ Not launched: restart_unit on web-02",
         "Not launched: the runner refused it. AWX launch failed (HTTP 403): no"),
        (RequestNotSent("connect refused"), "⚠️ Not launched: restart_unit on web-02",
         "Not launched: it never reached the runner. connect refused"),
    ],
)  # fmt: skip
def test_each_reason_for_no_job_has_its_own_notice(stopped, title: str, why: str) -> None:
    a = proposed()
    embed = notice_embed(words.not_run(stopped, a))
    assert embed.title == title
    assert words.not_run_why(stopped, a) == why == embed.description


def test_an_unknown_launch_says_it_was_not_relaunched_and_how_to_find_the_job() -> None:
    a = proposed()
    lost = words.not_run_why(LaunchUnknown(local_job_id="local-1-ab"), a)
    assert "local Ansible job `local-1-ab`" in lost and "NOT relaunched" in lost
    searched = words.not_run_why(LaunchUnknown(lookup_error="HTTP 502"), a)
    assert "could not be looked up (HTTP 502)" in searched
    assert f"{MARKER_KEY}={a.action_id}" in searched
    missing = words.not_run_why(LaunchUnknown(), a)
    assert f"none carrying marker {a.action_id} was found" in missing
    assert words.not_run(LaunchUnknown(), a).title == (
        "❓ Launch state unknown: restart_unit on web-02"
    )


def test_a_job_timeout_gives_the_job_and_its_last_output() -> None:
    a = proposed().model_copy(update={"max_job_seconds": 2})
    embed = notice_embed(words.job_timeout(a, "42", "still waiting"))
    assert embed.title == "⏱️ Job timeout: restart_unit on web-02"
    assert "Job `42` did not finish within 2 s" in (embed.description or "")
    assert "still waiting" in (embed.description or "")


def test_only_an_applied_decision_stops_a_rerun_from_asking_again() -> None:
    applied = record(ActionStatus.APPROVED).model_copy(update={"decision": decision()})
    unapplied = applied.model_copy(
        update={"decision": decision().model_copy(update={"applied_at": None})}
    )
    assert applied_decision(applied) == decision()
    assert applied_decision(unapplied) is None
    assert applied_decision(record(ActionStatus.AWAITING_APPROVAL)) is None


def test_a_rerun_of_an_ended_action_reports_where_it_ended() -> None:
    ended = record(ActionStatus.EXPIRED)
    result = ActionResult.ended_before(ended)
    assert (result.action_id, result.status) == (ended.proposal.action_id, ActionStatus.EXPIRED)


def test_a_level_waits_suspended_only_where_prefect_can_suspend_else_paused_with_a_reason() -> None:
    register = Policy().risk
    assert (register.low.wait, register.medium.wait, register.high.wait) == (
        "pause",
        "pause",
        "suspend",
    )
    assert wait_choice(register.high, deployment=True, subflow=False).mode == "suspend"
    local = wait_choice(register.high, deployment=False, subflow=True)
    assert local.mode == "pause" and "no deployment" in (local.fallback or "")
    child = wait_choice(register.high, deployment=True, subflow=True)
    assert child.mode == "pause" and "subflow" in (child.fallback or "")
    plain = wait_choice(register.low, deployment=False, subflow=False)
    assert plain.mode == "pause" and plain.fallback is None


def test_a_regate_count_is_read_back_from_its_pause_key() -> None:
    assert regates_of(pause_key("a1")) == 0
    assert regates_of(pause_key("a1", 2)) == 2
    assert regates_of(pause_key("a-regate-x", 1)) == 1
