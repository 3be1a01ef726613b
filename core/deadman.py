"""The dead-man's switch, as rules: when the cycle or the approval listener counts as silent.

Every heartbeat declares how long it stays fresh (the cycle: twice its schedule interval;
the listener: its `listener_stale_seconds`). Whoever runs next — the cycle, the listener
or the `remediation-watchdog` flow — compares the last beat with a limit: the one it was
given, else the one the beat declared, else the defaults below. The ledger's alert states
make each firing and each recovery post exactly once; only a beat that arrived after the
alert fired clears it, so checkers with different limits never flip it back and forth.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from core.models import Frozen

KILL_SWITCH_ALERT = "kill-switch"
CYCLE_ALERT = "dead-mans-switch-cycle"
LISTENER_ALERT = "dead-mans-switch-listener"
DEFAULT_CYCLE_INTERVAL = 900.0
DEFAULT_LISTENER_STALE = 120.0


class Beat(Frozen):
    """A component's last heartbeat and what it declared with it."""

    at: datetime
    detail: str = ""


class AlertState(Frozen):
    """Whether one of the remediator's own alerts fires, and since when."""

    firing: bool
    since: datetime


class Silence(Frozen):
    """What a check of one component found."""

    silent: bool
    last: datetime
    limit_seconds: float


def heartbeat_detail(stale_after_seconds: float) -> str:
    """The detail a heartbeat is recorded with: how long it stays fresh."""
    return json.dumps({"stale_after_seconds": stale_after_seconds})


def declared_staleness(detail: str) -> float | None:
    """The freshness a heartbeat declared; None when it declared none (or nonsense)."""
    try:
        value = json.loads(detail).get("stale_after_seconds") if detail else None
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) and value > 0 else None


def stale_limit(given: float | None, beat: Beat | None, default: float) -> float:
    """The limit a check uses: the one given, else the beat's own, else `default`."""
    return given or (declared_staleness(beat.detail) if beat else None) or default


def is_stale(last: datetime, now: datetime, limit_seconds: float) -> bool:
    return (now - last).total_seconds() > limit_seconds


def cleared_by(alert: AlertState | None, beat: datetime | None) -> bool:
    """True when the alert fires and a beat arrived after it fired: a recovery. Only a
    new beat clears an alert, so checkers with different thresholds never flip it."""
    return alert is not None and alert.firing and beat is not None and beat > alert.since


def cycle_silence(beat: Beat | None, now: datetime, given: float | None) -> Silence | None:
    """Whether the cycle went silent: its last completed cycle is older than the limit
    (default twice 15 minutes). None when no cycle ever completed (nothing to compare)."""
    if beat is None:
        return None
    limit = stale_limit(given, beat, 2 * DEFAULT_CYCLE_INTERVAL)
    return Silence(silent=is_stale(beat.at, now, limit), last=beat.at, limit_seconds=limit)


def listener_silence(
    beat: Beat | None, waiting_since: Sequence[datetime], now: datetime, given: float | None
) -> Silence:
    """Whether the listener went silent: no poll for longer than the limit (default
    2 minutes) — and only while approvals wait (with none waiting, nobody misses it).
    Never seen, it counts from the oldest waiting approval."""
    last = beat.at if beat else min(waiting_since, default=now)
    limit = stale_limit(given, beat, DEFAULT_LISTENER_STALE)
    silent = is_stale(last, now, limit) and bool(waiting_since)
    return Silence(silent=silent, last=last, limit_seconds=limit)
