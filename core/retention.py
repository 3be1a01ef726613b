"""What pruning the ledger keeps: the attempt history the remediator still reads."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from core.policy import Policy


def attempt_horizon(policy: Policy) -> timedelta:
    """How far back the attempt history is read (limits, cooldown, relapses): never
    pruned, whatever age was asked for."""
    return timedelta(
        seconds=max(policy.attempt_window_seconds, policy.cooldown_seconds, policy.relapse_seconds)
    )


def prune_cutoff(now: datetime, older_than: timedelta, policy: Policy) -> datetime:
    """Rows older than this go: the age asked for, or the attempt horizon if longer."""
    return now - max(older_than, attempt_horizon(policy))


def prune_rows(deleted: dict[str, int], remaining: dict[str, int]) -> list[dict[str, Any]]:
    """The prune report's table: per table, rows deleted and rows left."""
    rows = sorted(deleted.items())
    return [{"table": t, "deleted": n, "remaining": remaining.get(t)} for t, n in rows]
