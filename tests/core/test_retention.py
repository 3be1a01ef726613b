"""Pruning never cuts into the attempt history the remediator still reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.policy import Policy
from core.retention import attempt_horizon, prune_cutoff, prune_rows

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_the_horizon_is_the_longest_of_attempt_window_cooldown_and_relapse() -> None:
    policy = Policy.model_validate(
        {"attempt_window_seconds": 3600, "cooldown_seconds": 600, "relapse_seconds": 7200}
    )
    assert attempt_horizon(policy) == timedelta(seconds=7200)


def test_the_cutoff_is_the_age_asked_for_unless_the_horizon_is_longer() -> None:
    policy = Policy.model_validate(
        {"attempt_window_seconds": 86400, "cooldown_seconds": 600, "relapse_seconds": 3600}
    )
    assert prune_cutoff(NOW, timedelta(days=30), policy) == NOW - timedelta(days=30)
    assert prune_cutoff(NOW, timedelta(hours=6), policy) == NOW - timedelta(days=1)


def test_the_report_lists_each_table_with_rows_deleted_and_left() -> None:
    assert prune_rows({"audit": 2, "actions": 0}, {"audit": 5}) == [
        {"table": "actions", "deleted": 0, "remaining": None},
        {"table": "audit", "deleted": 2, "remaining": 5},
    ]
