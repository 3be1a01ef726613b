"""Dedup and episode policy: which detected issues are new, and which episodes are over.

An *episode* is the ledger's record of one issue from when it is first detected until it
is seen cleared. The ledger reads the open episodes inside a locked transaction, asks
these pure functions what to do, and writes the answer back.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum

from core.models import Frozen, Issue


class DropReason(StrEnum):
    REPORTED_WITHIN_TTL = "reported within TTL"
    ACTION_IN_FLIGHT = "action in flight"
    CLAIMED_BY_OTHER_CYCLE = "being reported by a concurrent cycle"


class EpisodeView(Frozen):
    """What the dedup decision needs to know about one open episode."""

    fingerprint: str
    opened_at: datetime
    reported_at: datetime | None = None
    claimed_by: str | None = None
    claimed_at: datetime | None = None


class DroppedIssue(Frozen):
    issue: Issue
    reason: DropReason


class DedupDecision(Frozen):
    new: list[Issue]
    dropped: list[DroppedIssue]

    def drop_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d in self.dropped:
            counts[d.reason.value] = counts.get(d.reason.value, 0) + 1
        return counts


def decide(
    issues: Iterable[Issue],
    episodes: dict[str, EpisodeView],
    in_flight: set[str],
    *,
    cycle_id: str,
    now: datetime,
    ttl: timedelta,
    claim_ttl: timedelta,
) -> DedupDecision:
    """Split `issues` into new ones and dropped ones (with the reason).

    - an action in flight for the fingerprint drops it;
    - reported less than `ttl` ago drops it;
    - claimed (not yet reported) by another cycle less than `claim_ttl` ago drops it,
      so two concurrent cycles never both report the same new issue;
    - otherwise it is new (first seen, TTL expired, released, or a stale claim).
    """
    new: list[Issue] = []
    dropped: list[DroppedIssue] = []
    seen: set[str] = set()
    for issue in issues:
        fp = issue.fingerprint
        if fp in seen:
            continue
        seen.add(fp)
        ep = episodes.get(fp)
        reason: DropReason | None = None
        if fp in in_flight:
            reason = DropReason.ACTION_IN_FLIGHT
        elif ep is not None and ep.reported_at is not None and now - ep.reported_at < ttl:
            reason = DropReason.REPORTED_WITHIN_TTL
        elif (
            ep is not None
            and ep.claimed_by not in (None, cycle_id)
            and ep.claimed_at is not None
            and (ep.reported_at is None or ep.claimed_at > ep.reported_at)
            and now - ep.claimed_at < claim_ttl
        ):
            reason = DropReason.CLAIMED_BY_OTHER_CYCLE
        if reason is None:
            new.append(issue)
        else:
            dropped.append(DroppedIssue(issue=issue, reason=reason))
    return DedupDecision(new=new, dropped=dropped)


def cleared(
    open_fingerprints: Iterable[str],
    current: set[str],
    *,
    checks_ok: set[str],
    hosts_up: set[str],
) -> list[str]:
    """Open episodes that are over: their check ran successfully, their host is up,
    and the issue is no longer detected. A failed query or a down host clears nothing."""
    out = []
    for fp in open_fingerprints:
        host, check, _subject = fp.split("|", 2)
        if fp not in current and check in checks_ok and host in hosts_up:
            out.append(fp)
    return out
