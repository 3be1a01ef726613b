"""When an action run is dead and what the reconciler does about it (core.liveness), and
the words of its notices (core.words)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from channels import discord_listings as render
from channels.discord_render import notice_embed
from core.liveness import (
    CLAIM_WINDOW,
    MAX_CONTINUATIONS,
    STALE_HEARTBEATS,
    ActionRun,
    Outcome,
    Remedy,
    RunStateType,
    Via,
    action_id_of,
    claim_window,
    claimant,
    continuation_deployment,
    continuation_key,
    continuation_tags,
    continues_of,
    crashed_message,
    dead_run,
    dead_run_ids,
    failed_before_launch,
    heartbeat_seconds_of,
    hook_missed,
    is_claim,
    is_dead,
    remedy,
    stale_after,
    to_mark_crashed,
    unannounced_continuation,
    via_of,
)
from core.settings import ActionSettings
from core.vetting import ProposedAction
from core.words import continuing_message, expired_message, gave_up_message
from tests.core.factories import NOW, action, issue, vet

S = timedelta(seconds=1)
STALE = 50 * S


def run(
    run_id: str = "run-1",
    state: RunStateType | None = RunStateType.RUNNING,
    started_ago: timedelta = 10 * 60 * S,
    **kw: Any,
) -> ActionRun:
    name = state.value.title() if state is not None else None
    return ActionRun(id=run_id, state=state, state_name=name, started=NOW - started_ago, **kw)


def restart() -> ProposedAction:
    [proposed] = vet([action()], [issue()]).approved
    return proposed


def dead(runs: list[ActionRun], at: timedelta | None, by: str | None) -> bool:
    """is_dead with the heartbeat written `at` ago by `by` (None: never)."""
    return is_dead(
        runs,
        heartbeat_at=None if at is None else NOW - at,
        heartbeat_by=by,
        now=NOW,
        stale=STALE,
    )


# --- reading runs ---------------------------------------------------------------------
def test_an_action_run_is_known_by_its_action_parameter_before_its_tag() -> None:
    params = {"action": {"action_id": "act-1"}}
    assert action_id_of(params, ["action:act-2"]) == "act-1"
    assert action_id_of({"action": "not a dict"}, ["x", "action:act-2"]) == "act-2"
    assert action_id_of(None, None) is None
    assert action_id_of({"action": {"action_id": 7}}, []) is None


def test_a_fresh_run_names_the_dead_run_it_continues_in_a_tag() -> None:
    assert continues_of(["remediation-action", "continues:run-0"]) == "run-0"
    assert continues_of(["remediation-action"]) is None and continues_of(None) is None
    tags = continuation_tags("act-1", "run-0")
    assert tags == ["remediation-action", "action:act-1", "reconciled", "continues:run-0"]
    assert continues_of(tags) == "run-0" and action_id_of({}, tags) == "act-1"


def test_a_runs_heartbeat_interval_comes_from_its_settings_or_the_default() -> None:
    assert heartbeat_seconds_of({"settings": {"heartbeat_seconds": 2}}) == 2
    default = ActionSettings().heartbeat_seconds
    assert heartbeat_seconds_of({}) == default and heartbeat_seconds_of(None) == default
    assert heartbeat_seconds_of({"settings": {"heartbeat_seconds": -1}}) == default


def test_a_continuation_goes_through_the_deployment_its_settings_name() -> None:
    assert continuation_deployment({"settings": {"deployment": "a/b"}}) == "a/b"
    assert continuation_deployment({}) == ActionSettings().deployment
    assert continuation_key("run-0") == "reconcile-run-0"


def test_a_continuation_runs_via_the_deployment_only_when_it_came_from_one() -> None:
    assert via_of(run(deployment_id="dep-1")) is Via.DEPLOYMENT
    assert via_of(run()) is Via.IN_PROCESS


def test_a_claim_is_a_heartbeat_written_by_the_reconciler_for_the_dead_run() -> None:
    assert claimant("run-0") == "reconciler:run-0" and is_claim(claimant("run-0"))
    assert not is_claim("run-0") and not is_claim(None)


# --- windows --------------------------------------------------------------------------
def test_a_heartbeat_is_stale_after_five_beats_of_the_slowest_run_unless_told() -> None:
    runs = [run(heartbeat_seconds=2), run("run-2", heartbeat_seconds=4)]
    assert stale_after(runs) == STALE_HEARTBEATS * 4 * S
    assert stale_after([]) == STALE_HEARTBEATS * 10 * S
    assert stale_after(runs, 90 * S) == 90 * S


def test_a_claim_waits_for_its_fresh_run_at_most_the_claim_window_or_the_stale_window() -> None:
    assert claim_window(90 * S) == CLAIM_WINDOW
    assert claim_window(5 * S) == 5 * S


# --- is_dead --------------------------------------------------------------------------
def test_an_action_with_a_coming_run_is_not_dead_whatever_its_heartbeat() -> None:
    assert not dead([run(state=RunStateType.SCHEDULED)], None, None)
    assert not dead([run(state=RunStateType.CRASHED), run("r2", RunStateType.PENDING)], None, None)


def test_a_live_run_that_just_started_is_given_time_for_its_first_heartbeat() -> None:
    assert not dead([run(started_ago=10 * S)], None, None)
    assert not dead([run(state=RunStateType.PAUSED, started_ago=STALE)], None, None)
    assert dead([run(started_ago=STALE + S)], None, None)


def test_an_action_whose_run_never_beat_is_dead() -> None:
    assert dead([run(state=RunStateType.CRASHED, started_ago=S)], None, None)


def test_a_stale_heartbeat_means_dead_and_a_fresh_one_alive() -> None:
    assert dead([run()], STALE + S, "run-1")
    assert not dead([run()], STALE - S, "run-1")


def test_a_fresh_heartbeat_by_a_run_known_dead_means_dead() -> None:
    assert dead([run(state=RunStateType.CRASHED)], S, "run-1")
    assert dead([run(state=RunStateType.FAILED)], S, "run-1")
    assert not dead([run(state=RunStateType.CRASHED)], S, "run-other")


def test_a_claim_whose_fresh_run_never_came_is_dead_after_the_claim_window_only() -> None:
    crashed = [run(state=RunStateType.CRASHED)]
    assert not dead(crashed, CLAIM_WINDOW - S, claimant("run-1"))
    assert dead(crashed, CLAIM_WINDOW + S, claimant("run-1"))


# --- what is done ---------------------------------------------------------------------
def test_runs_that_all_failed_before_any_launch_are_left_to_their_failure_hook() -> None:
    failed = [run(state=RunStateType.FAILED), run("r2", RunStateType.FAILED)]
    assert failed_before_launch(failed, launch_intent=False)
    assert not failed_before_launch(failed, launch_intent=True)
    assert not failed_before_launch(
        [run(state=RunStateType.FAILED), run("r2", RunStateType.CRASHED)], launch_intent=False
    )


def test_an_undecided_action_expires_a_decided_one_continues_until_the_limit() -> None:
    assert remedy(decision=None, continuations=0) is Remedy.EXPIRE
    assert remedy(decision=None, continuations=MAX_CONTINUATIONS) is Remedy.EXPIRE
    assert remedy(decision="approve", continuations=MAX_CONTINUATIONS - 1) is Remedy.CONTINUE
    assert remedy(decision="approve", continuations=MAX_CONTINUATIONS) is Remedy.GIVE_UP


def test_the_run_a_take_over_replaces_is_the_latest_and_dead_ids_are_crashed_or_failed() -> None:
    old = run("old", RunStateType.CRASHED, started_ago=60 * S)
    new = run("new", RunStateType.FAILED, started_ago=30 * S)
    live = run("live", RunStateType.RUNNING, started_ago=90 * S)
    assert dead_run([old, new, live]).id == "new"
    assert dead_run_ids([old, new, live]) == {"old", "new"}


def test_only_runs_prefect_still_shows_running_or_paused_are_marked_crashed() -> None:
    runs = [run("a"), run("b", RunStateType.PAUSED), run("c", RunStateType.CRASHED)]
    assert [r.id for r in to_mark_crashed(runs)] == ["a", "b"]


def test_the_crashed_message_says_what_became_of_the_action() -> None:
    assert crashed_message(Outcome.CONTINUED) == (
        "Its process died (no heartbeat): continued by a fresh run (reconciler)."
    )
    assert "its action expired" in crashed_message(Outcome.EXPIRED)
    assert "not continued again" in crashed_message(Outcome.GAVE_UP)


def test_a_fresh_run_not_dead_is_the_continuation_whose_announcement_may_be_missing() -> None:
    dead_one = run("dead", RunStateType.CRASHED, started_ago=60 * S)
    older = run("f1", continues="dead", started_ago=40 * S)
    newer = run("f2", RunStateType.SCHEDULED, continues="dead", started_ago=20 * S)
    crashed = run("f3", RunStateType.CRASHED, continues="dead", started_ago=5 * S)
    assert unannounced_continuation([dead_one, older, newer, crashed]) == newer
    assert unannounced_continuation([dead_one, crashed]) is None


def test_a_run_without_a_state_reads_as_unknown_state() -> None:
    assert run(state=None).state_label == "unknown state"
    assert run(state=RunStateType.CRASHED).state_label == "Crashed"


# --- notices --------------------------------------------------------------------------
def test_the_expired_notice_names_the_action_and_the_dead_run() -> None:
    embed = notice_embed(expired_message(restart(), "run-0", "Crashed"))
    assert embed.title == "⏱️ Expired: restart_unit on web-02 did not run"
    assert "(run `run-0`, Crashed)" in (embed.description or "")
    assert embed.color == render.GREY


def test_the_continuing_notice_says_how_the_fresh_run_finds_its_job() -> None:
    def text(job_id: str | None, intent: bool) -> str:
        embed = notice_embed(continuing_message(restart(), "run-0", "Crashed", job_id=job_id,
                                                launch_intent=intent))  # fmt: skip
        assert embed.title == "🔁 Continuing: restart_unit on web-02"
        return embed.description or ""

    assert "job `7` is polled" in text("7", True)
    assert "looked up by its marker" in text(None, True)
    assert "launches once" in text(None, False) and "(run `run-0`, Crashed)" in text(None, False)


def test_the_gave_up_notice_says_why_in_red() -> None:
    kept_dying = notice_embed(gave_up_message(restart(), "run-3", "Crashed", job_id="77"))
    assert kept_dying.title == "🛑 Not continued again: restart_unit on web-02"
    assert kept_dying.color == render.RED
    text = kept_dying.description or ""
    assert f"died {MAX_CONTINUATIONS + 1} times" in text and "Job `77` was launched" in text
    gave_up = gave_up_message(restart(), "run-3", "Crashed", job_id=None,
                              ended_run_id="run-4", ended_state="Cancelled")  # fmt: skip
    ended = notice_embed(gave_up)
    assert "ended Cancelled (`run-4`)" in (ended.description or "")
    assert "Job" not in (ended.description or "")


# --- suspended runs -------------------------------------------------------------------
def suspended(run_id: str = "run-1") -> ActionRun:
    return ActionRun(
        id=run_id, state=RunStateType.PAUSED, state_name="Suspended", started=NOW - 3600 * S
    )


def test_a_suspended_run_is_alive_without_a_process_or_a_heartbeat() -> None:
    assert suspended().suspended and not run(state=RunStateType.PAUSED).suspended
    assert not dead([suspended()], None, None)
    assert not dead([suspended()], 60 * 60 * S, "run-1")  # its last beat before suspending
    assert dead([run(state=RunStateType.PAUSED)], 60 * 60 * S, "run-1")  # paused: a process


def test_a_resumed_suspended_run_waits_for_a_worker_and_then_gets_a_heartbeat_window() -> None:
    resuming = ActionRun(
        id="run-1", state=RunStateType.SCHEDULED, state_name="Resuming", started=NOW - 3600 * S
    )
    assert not dead([resuming], 3600 * S, "run-1")  # waiting for a worker: coming
    running_again = ActionRun(
        id="run-1",
        state=RunStateType.RUNNING,
        state_name="Running",
        started=NOW - 3600 * S,
        state_since=NOW - 5 * S,
    )
    assert not dead([running_again], 3600 * S, "run-1")  # before its first new beat
    later = running_again.model_copy(update={"state_since": NOW - STALE - S})
    assert dead([later], 3600 * S, "run-1")  # no beat for a whole window: its process died


def test_a_suspended_run_failed_by_prefects_timeout_missed_its_failure_hook() -> None:
    failed = ActionRun(
        id="run-1",
        state=RunStateType.FAILED,
        state_name="Failed",
        started=NOW - 3600 * S,
        state_since=NOW - STALE - S,
    )
    assert hook_missed([failed], awaiting_decision=True, now=NOW, stale=STALE)
    assert not hook_missed([failed], awaiting_decision=False, now=NOW, stale=STALE)
    just = failed.model_copy(update={"state_since": NOW - S})  # its hook may be running
    assert not hook_missed([just], awaiting_decision=True, now=NOW, stale=STALE)
    crashed = failed.model_copy(update={"state": RunStateType.CRASHED})
    assert not hook_missed([crashed], awaiting_decision=True, now=NOW, stale=STALE)
