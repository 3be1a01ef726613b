"""The cycle's decisions: an empty Prometheus answer is not "all clear", where a cycle
ends, the report's action rows, the manual issue for issues left out of the prompt, when
a listener run must be started, and the report as it is built."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from channels.discord_render import notice_embed
from core.analysis import Analysis, ManualIssue, ModelAction
from core.cycle import (
    CycleProgress,
    action_outcomes,
    announce_prometheus,
    manual_issues,
    nothing_scraped,
    omitted_from_prompt,
    outcome_without_new_issues,
    routed_outcome,
    with_dispatch,
)
from core.detect import Detection
from core.dispatch import (
    DispatchResult,
    ListenerRun,
    action_deployment,
    action_run_parameters,
    listener_covers,
)
from core.policy import Policy
from core.report import CycleOutcome
from core.words import prometheus_transition
from tests.core.factories import issue, vet

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
NGINX = issue("web-02")


def _restart(host: str, unit: str) -> ModelAction:
    return ModelAction(catalog_key="restart_unit", host=host, parameters={"unit": unit}, risk="low")


def test_an_empty_up_answer_is_nothing_scraped_not_all_clear() -> None:
    empty = Detection(issues=[], checks_ok=frozenset({"host_down", "cpu"}))
    assert nothing_scraped(empty)
    assert not nothing_scraped(empty.model_copy(update={"hosts_up": frozenset({"web-01"})}))
    assert not nothing_scraped(empty.model_copy(update={"hosts_down": frozenset({"web-01"})}))
    # `up` itself failed: that is a check error, not an empty fleet
    assert not nothing_scraped(Detection(issues=[], checks_ok=frozenset({"cpu"})))


def test_prometheus_down_is_announced_once_and_every_cycle_when_the_ledger_cannot_say() -> None:
    assert announce_prometheus(changed=True, down=True)
    assert announce_prometheus(changed=True, down=False)  # the recovery, once
    assert not announce_prometheus(changed=False, down=True)  # said before
    assert announce_prometheus(changed=None, down=True)
    assert not announce_prometheus(changed=None, down=False)
    what, down = prometheus_transition(True, {"cpu": "refused", "disk": "refused"}, "c1")
    notice = notice_embed(down)
    assert what == "Prometheus notice" and notice.title.startswith("⚠️ Prometheus unreachable")
    assert notice.description.count("refused") == 1 and notice.footer == "cycle c1"
    what, notice = prometheus_transition(False, {}, "c1")
    assert (what, notice.title) == ("Prometheus recovery", "✅ Prometheus reachable again")


def test_a_cycle_with_nothing_new_ends_manual_cached_or_without_issues() -> None:
    assert outcome_without_new_issues(escalated=True, found_any=True) is CycleOutcome.MANUAL_ONLY
    assert outcome_without_new_issues(escalated=False, found_any=True) is CycleOutcome.ALL_CACHED
    assert outcome_without_new_issues(escalated=False, found_any=False) is CycleOutcome.NO_ISSUES


def test_a_routed_cycle_ends_with_actions_manual_issues_or_no_action_needed() -> None:
    assert routed_outcome(actions=True, manual_or_unaddressed=True) is CycleOutcome.ACTIONS
    assert routed_outcome(actions=False, manual_or_unaddressed=True) is CycleOutcome.MANUAL_ONLY
    assert (
        routed_outcome(actions=False, manual_or_unaddressed=False) is CycleOutcome.NO_ACTION_NEEDED
    )


def test_the_report_lists_allowed_actions_then_rejected_ones_with_the_reason() -> None:
    vetting = vet([_restart("web-02", "nginx.service"), _restart("db-09", "x.service")], [NGINX])
    allowed, rejected = action_outcomes(vetting)
    assert (allowed.policy, allowed.action_id) == ("allowed", vetting.approved[0].action_id)
    assert rejected.host == "db-09" and rejected.policy != "allowed"
    assert rejected.action_id is None
    result = DispatchResult(
        dispatched={allowed.action_id: "run-1"}, errors={"other": "dispatch failed"}
    )
    ran, not_run = with_dispatch([allowed, rejected], result)
    assert (ran.dispatched, ran.flow_run_id, ran.dispatch_error) == (True, "run-1", None)
    assert (not_run.dispatched, not_run.flow_run_id) == (False, None)


def test_issues_left_out_of_the_prompt_go_to_a_human_as_one_manual_issue() -> None:
    assert omitted_from_prompt(0, []) is None
    omitted = omitted_from_prompt(3, ["a", "b", "c"])
    assert omitted.fingerprints == ["a", "b", "c"] and omitted.source == "capacity"
    assert omitted.problem.startswith("3 issues were not analysed (prompt token budget)")
    model = ManualIssue(host="web-02", problem="look")
    analysis = Analysis(manual_issues=[model], summary="")
    vetting = vet([_restart("db-09", "x.service")], [NGINX])
    manual = manual_issues(analysis, vetting, omitted)
    assert manual[0] == model and manual[-1] == omitted and len(manual) == 3


def test_a_listener_run_running_or_due_within_30_s_covers_the_new_requests() -> None:
    assert listener_covers([ListenerRun(scheduled=False)], NOW)
    soon = ListenerRun(scheduled=True, expected_start=NOW + timedelta(seconds=30))
    later = ListenerRun(scheduled=True, expected_start=NOW + timedelta(seconds=31))
    assert listener_covers([soon], NOW)
    assert not listener_covers([later], NOW)
    assert not listener_covers([ListenerRun(scheduled=True)], NOW)
    assert not listener_covers([], NOW)


def test_an_action_run_gets_the_cycles_options_and_its_deployment_from_settings() -> None:
    [action] = vet([_restart("web-02", "nginx.service")], [NGINX]).approved
    params = action_run_parameters(action, {"policy": {"a": 1}, "settings": {"x": 2}})
    assert params["action"]["action_id"] == action.action_id
    assert (params["policy"], params["blocks"], params["settings"]) == ({"a": 1}, {}, {"x": 2})
    assert action_deployment({}) == "remediate-action/remediate-action"
    assert action_deployment({"settings": {"deployment": "a/b"}}) == "a/b"


def test_issues_nobody_saw_are_unreported_and_the_final_report_carries_notices() -> None:
    progress = CycleProgress.start("c1", NOW)
    progress.update(issues=[NGINX], new_issues=[NGINX.fingerprint, "other"])
    progress.reported([NGINX.fingerprint])
    assert progress.unreported == {"other"}
    progress.notices.append("Loki unavailable")
    progress.timings["detect"] = 0.5
    report = progress.finished(Policy(), NOW, NOW + timedelta(seconds=2))
    assert report.notices == ["Loki unavailable"] and report.stage_seconds == {"detect": 0.5}
    assert report.finished_at == NOW + timedelta(seconds=2)
