"""Weekly maintenance windows: a window belongs to the day it STARTS on, so one crossing
midnight runs into the next day; start == end is a whole 24 hours. Vetting and the
cycle's notices read the same rule (`Policy.maintenance_for`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.analysis import ModelAction
from core.errors import ConfigError
from core.models import Risk
from core.policy import MaintenanceWindow, Policy, load_policy, policy_hash
from core.report import CycleOutcome, CycleReport
from core.vetting import vet_actions
from core.words import maintenance_notices
from tests.core.factories import issue

MON, TUE, WED, FRI, SAT, SUN = 0, 1, 2, 4, 5, 6


def at(day: int, hhmm: str) -> datetime:
    """`hhmm` UTC on the given weekday of the week starting Monday 2026-11-23."""
    hour, minute = (int(p) for p in hhmm.split(":"))
    return datetime(2026, 11, 23 + day, hour, minute, tzinfo=UTC)


def weekly(days: list[int], start: str, end: str) -> MaintenanceWindow:
    return MaintenanceWindow(
        name="w", hosts=["web-02"], weekdays=days, start_time=start, end_time=end
    )


@pytest.mark.parametrize(
    ("days", "start", "end", "now", "covered"),
    [
        # Monday 23:00-01:00: Monday 23:00-24:00 and Tuesday 00:00-01:00
        ([MON], "23:00", "01:00", at(MON, "23:00"), True),
        ([MON], "23:00", "01:00", at(MON, "23:59"), True),
        ([MON], "23:00", "01:00", at(TUE, "00:30"), True),
        ([MON], "23:00", "01:00", at(TUE, "00:59"), True),
        ([MON], "23:00", "01:00", at(TUE, "01:00"), False),  # the end is exclusive
        ([MON], "23:00", "01:00", at(MON, "22:59"), False),
        ([MON], "23:00", "01:00", at(MON, "00:30"), False),  # belongs to Sunday's window
        ([MON], "23:00", "01:00", at(TUE, "23:30"), False),  # Tuesday's is not listed
        ([MON, SUN], "23:00", "01:00", at(MON, "00:30"), True),  # Sunday's runs into Monday
        # Sunday -> Monday: weekday 6 wraps to 0
        ([SUN], "22:00", "02:00", at(SUN, "23:00"), True),
        ([SUN], "22:00", "02:00", at(MON, "01:59"), True),
        ([SUN], "22:00", "02:00", at(MON, "02:00"), False),
        ([SUN], "22:00", "02:00", at(SAT, "23:00"), False),
        # every day when no weekday is listed
        ([], "23:00", "01:00", at(WED, "00:30"), True),
        ([], "23:00", "01:00", at(WED, "12:00"), False),
        # not crossing midnight: the listed day only, start inclusive, end exclusive
        ([SUN], "01:00", "03:00", at(SUN, "01:00"), True),
        ([SUN], "01:00", "03:00", at(SUN, "02:59"), True),
        ([SUN], "01:00", "03:00", at(SUN, "03:00"), False),
        ([SUN], "01:00", "03:00", at(MON, "02:00"), False),
        ([SUN], "01:00", "03:00", at(SAT, "02:00"), False),
        # start == end: 24 hours from the start (00:00-00:00 is the whole listed day)
        ([SAT], "00:00", "00:00", at(SAT, "00:00"), True),
        ([SAT], "00:00", "00:00", at(SAT, "23:59"), True),
        ([SAT], "00:00", "00:00", at(SUN, "00:00"), False),
        ([SAT], "00:00", "00:00", at(FRI, "23:59"), False),
        ([SAT], "22:00", "22:00", at(SUN, "21:59"), True),
        ([SAT], "22:00", "22:00", at(SUN, "22:00"), False),
        ([SAT], "22:00", "22:00", at(SAT, "21:59"), False),
    ],
)
def test_weekly_window_covers(
    days: list[int], start: str, end: str, now: datetime, covered: bool
) -> None:
    window = weekly(days, start, end)
    assert window.active(now) is covered
    assert window.covers("web-02", now) is covered
    assert (Policy(maintenance=[window]).maintenance_for("web-02", now) is window) is covered


def test_weekly_times_are_utc_whatever_zone_now_is_given_in() -> None:
    window = weekly([MON], "23:00", "01:00")
    berlin = timezone(timedelta(hours=1))
    assert window.active(datetime(2026, 11, 24, 1, 30, tzinfo=berlin))  # Tue 00:30 UTC
    assert not window.active(datetime(2026, 11, 23, 23, 30, tzinfo=berlin))  # Mon 22:30 UTC


def test_vetting_and_notices_use_the_same_rule() -> None:
    policy = Policy(maintenance=[weekly([MON], "23:00", "01:00")])
    found = issue()
    for now, covered in ((at(TUE, "00:30"), True), (at(MON, "00:30"), False)):
        vetting = vet_actions(
            [
                ModelAction(
                    catalog_key="restart_unit",
                    host="web-02",
                    risk=Risk.LOW,
                    parameters={"unit": "nginx.service"},
                )
            ],
            [found],
            policy=policy,
            policy_hash=policy_hash(policy),
            history={},
            pending_approvals=0,
            cycle_id="c1",
            now=now,
        )
        report = CycleReport(
            cycle_id="c1",
            started_at=now,
            outcome=CycleOutcome.ACTIONS,
            issues=[found],
            new_issues=[found.fingerprint],
        )
        notices = maintenance_notices(policy, report, now)
        if covered:
            [rejected] = vetting.rejected
            assert rejected.reason == "host 'web-02' is in maintenance window 'w'"
            assert notices == [
                "web-02 is in maintenance window 'w': its issues are reported, "
                "no action is proposed for it"
            ]
        else:
            assert len(vetting.approved) == 1 and vetting.rejected == []
            assert notices == []


@pytest.mark.parametrize(
    ("window", "field", "message"),
    [
        (
            {"start_time": "23:00+02:00", "end_time": "01:00"},
            "policy.maintenance.0.start_time",
            "UTC",
        ),
        ({"start_time": "25:00", "end_time": "01:00"}, "policy.maintenance.0.start_time", "hour"),
        ({"start_time": "23:00", "end_time": "1am"}, "policy.maintenance.0.end_time", "HH:MM"),
        (
            {"start": "2026-12-02T02:00:00+00:00", "end": "2026-12-01T22:00:00+00:00"},
            "policy.maintenance.0",
            "end must be after start",
        ),
        (
            {"start": "2026-12-01T22:00:00", "end": "2026-12-02T02:00:00+00:00"},
            "policy.maintenance.0.start",
            "time zone",
        ),
        (
            {
                "start": "2026-12-01T22:00:00+00:00",
                "end": "2026-12-02T02:00:00+00:00",
                "weekdays": [MON],
            },
            "policy.maintenance.0",
            "weekdays apply to a weekly window",
        ),
        (
            {"weekdays": [7], "start_time": "23:00", "end_time": "01:00"},
            "policy.maintenance.0.weekdays",
            "0 \\(Monday\\) to 6 \\(Sunday\\)",
        ),
    ],
    ids=[
        "weekly-time-with-zone",
        "hour-25",
        "not-hh-mm",
        "one-off-ending-before-it-starts",
        "one-off-without-zone",
        "one-off-with-weekdays",
        "weekday-7",
    ],
)
def test_a_window_that_could_never_mean_what_it_says_is_refused_naming_the_field(
    window: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_policy({"maintenance": [{"name": "w", "hosts": ["web-02"], **window}]})
    assert caught.value.field == field
