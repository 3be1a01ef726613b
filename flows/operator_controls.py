"""Operator controls woven into the cycle and the listener (kill switch, dead-man's
switch). The cycle and the listener call these hooks; they decide and act."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.records import ActionRecord


async def cycle_paused_by_operator(conns: Any, now: datetime) -> bool:
    """True when the kill switch is on: the cycle proposes nothing (still detects)."""
    return False


async def answer_pending_when_paused(listener: Any, waiting: list[ActionRecord],
                                     now: datetime) -> bool:
    """With the kill switch on, answer every pending approval "paused by operator" and
    return True (the listener then resumes nothing else this poll)."""
    return False


async def check_dead_mans_switch(conns: Any, component: str, now: datetime) -> None:
    """Alert once when the cycle or the listener stopped beating, and once on recovery."""
    return None
