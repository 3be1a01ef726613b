"""The dead-man's switch as rules: declared freshness, the limit chosen, stale or not, what
clears an alert, and the listener judged only while approvals wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from channels.discord_render import notice_embed
from core.deadman import (
    AlertState,
    Beat,
    cleared_by,
    cycle_silence,
    declared_staleness,
    heartbeat_detail,
    listener_silence,
    stale_limit,
)
from core.policy import Policy
from core.report import CycleOutcome, CycleReport
from core.words import (
    cycle_silent,
    kill_switch_notice,
    listener_silent,
    maintenance_notices,
    pending_answered,
)
from tests.core.factories import issue

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_a_heartbeat_declares_how_long_it_stays_fresh() -> None:
    assert declared_staleness(heartbeat_detail(1800)) == 1800
    assert declared_staleness(heartbeat_detail(0.5)) == 0.5


def test_no_declaration_or_nonsense_declares_nothing() -> None:
    for detail in ("", "not json", "[1, 2]", '{"stale_after_seconds": -5}', '{"other": 3}'):
        assert declared_staleness(detail) is None, detail
    assert declared_staleness('{"stale_after_seconds": "60"}') is None


def test_the_limit_is_the_one_given_else_the_declared_one_else_the_default() -> None:
    beat = Beat(at=NOW, detail=heartbeat_detail(300))
    assert stale_limit(60, beat, 900) == 60
    assert stale_limit(None, beat, 900) == 300
    assert stale_limit(None, Beat(at=NOW), 900) == 900
    assert stale_limit(None, None, 900) == 900


def test_a_cycle_never_completed_is_not_judged() -> None:
    assert cycle_silence(None, NOW, 60) is None


def test_the_cycle_is_silent_once_its_last_beat_is_older_than_the_limit() -> None:
    declared = Beat(at=ago(200), detail=heartbeat_detail(1800))
    assert cycle_silence(declared, NOW, None).silent is False  # 200 s < its 30 min
    silence = cycle_silence(declared, NOW, 120)  # a 60 s interval, twice
    assert silence.silent and silence.last == ago(200) and silence.limit_seconds == 120
    undeclared = Beat(at=ago(1801))
    assert cycle_silence(undeclared, NOW, None).silent  # twice 15 minutes by default
    assert not cycle_silence(Beat(at=ago(1799)), NOW, None).silent


def test_the_listener_is_silent_only_while_approvals_wait() -> None:
    old = Beat(at=ago(300))
    assert listener_silence(old, [], NOW, None).silent is False  # nobody waits
    silence = listener_silence(old, [ago(10)], NOW, None)  # 2 minutes by default
    assert silence.silent and silence.last == ago(300)
    assert listener_silence(old, [ago(10)], NOW, 600).silent is False


def test_a_listener_never_seen_counts_from_the_oldest_waiting_approval() -> None:
    silence = listener_silence(None, [ago(30), ago(500)], NOW, None)
    assert silence.silent and silence.last == ago(500)
    assert listener_silence(None, [ago(30)], NOW, None).silent is False


def test_only_a_beat_after_the_alert_fired_clears_it() -> None:
    firing = AlertState(firing=True, since=ago(60))
    assert cleared_by(firing, ago(10))
    assert not cleared_by(firing, ago(90))  # the beat the alert fired about
    assert not cleared_by(firing, None)
    assert not cleared_by(AlertState(firing=False, since=ago(60)), ago(10))  # not firing
    assert not cleared_by(None, ago(10))


def test_notices_name_who_noticed_and_what_to_check() -> None:
    silent = notice_embed(cycle_silent(ago(200), 120, "watchdog"))
    assert silent.title == "💀 Remediation cycle silent"
    assert (
        "every 120 s" in silent.description and "(Noticed by the watchdog.)" in silent.description
    )
    never = notice_embed(listener_silent(None, 2, "cycle"))
    assert "has polled at all while 2 approval(s) wait" in never.description
    assert "since <t:" in notice_embed(listener_silent(ago(300), 1, "cycle")).description
    assert notice_embed(kill_switch_notice(True, "remediation_kill_switch")).title.startswith("⛔")
    assert (
        "`remediation_kill_switch`"
        in notice_embed(kill_switch_notice(False, "remediation_kill_switch")).description
    )
    answered = notice_embed(pending_answered([("restart_unit", "web-02")]))
    assert answered.title == "⛔ Paused by operator: 1 pending approval(s) answered"
    assert "- `restart_unit` on web-02" in answered.description


def test_maintenance_notices_name_only_hosts_with_new_issues_in_a_window() -> None:
    policy = Policy.model_validate(
        {
            "maintenance": [
                {
                    "name": "patching",
                    "hosts": ["web-02", "db-01"],
                    "start": ago(3600).isoformat(),
                    "end": (NOW + timedelta(hours=1)).isoformat(),
                }
            ]
        }
    )
    web, db, other = issue("web-02"), issue("db-01"), issue("web-01")
    report = CycleReport(
        cycle_id="c",
        started_at=NOW,
        outcome=CycleOutcome.MANUAL_ONLY,
        issues=[web, db, other],
        new_issues=[web.fingerprint, other.fingerprint],
    )
    [notice] = maintenance_notices(policy, report, NOW)
    assert notice.startswith("web-02 is in maintenance window 'patching'")
