"""Ledger steps of the cycle (writes are not retried blindly: they are transactions
that either happened or did not, and the next cycle re-derives everything)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE

from clients.ledger import Ledger
from core.dedup import DedupDecision
from core.models import Issue
from core.vetting import AttemptRecord


@task(name="close-cleared-episodes", cache_policy=NO_CACHE)
async def close_cleared_episodes(
    ledger: Ledger, current: set[str], checks_ok: set[str], hosts_up: set[str], now: datetime
) -> list[str]:
    return await ledger.episodes.close_cleared(
        current, checks_ok=checks_ok, hosts_up=hosts_up, now=now
    )


@task(name="claim-new-issues", cache_policy=NO_CACHE)
async def claim_new_issues(
    ledger: Ledger, issues: Sequence[Issue], cycle_id: str, now: datetime, ttl: timedelta
) -> DedupDecision:
    return await ledger.episodes.claim_issues(issues, cycle_id=cycle_id, now=now, ttl=ttl)


@task(name="confirm-reported", cache_policy=NO_CACHE)
async def confirm_reported(
    ledger: Ledger, fingerprints: Iterable[str], cycle_id: str, now: datetime
) -> int:
    return await ledger.episodes.confirm_reported(fingerprints, cycle_id=cycle_id, now=now)


@task(name="read-attempt-history", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
async def read_attempt_history(
    ledger: Ledger, fingerprints: Iterable[str], since: datetime, suspended_risks: Iterable[str]
) -> tuple[dict[str, list[AttemptRecord]], int, int]:
    """Attempt history of the issues, and how many actions await approval now: those
    holding a paused process, and those waiting suspended (at `suspended_risks`)."""
    history = await ledger.episodes.attempt_history(fingerprints, since=since)
    holding = await ledger.operations.pending_approvals()
    suspended = await ledger.operations.suspended_approvals(suspended_risks)
    return history, holding - suspended, suspended


@task(name="prune-ledger-rows", cache_policy=NO_CACHE, retries=0)
async def prune_ledger_rows(
    ledger: Ledger, older_than: timedelta, keep: timedelta, now: datetime
) -> tuple[dict[str, int], dict[str, int]]:
    """Delete rows older than `max(older_than, keep)` in one transaction (a failure
    deletes nothing). Rows deleted per table, and rows left per table."""
    deleted = await ledger.operations.prune(older_than=older_than, now=now, keep=keep)
    return deleted, await ledger.operations.row_counts()
