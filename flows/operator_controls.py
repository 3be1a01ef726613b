"""TEMPORARY: the old names of the operator controls, until every caller has moved.

The rules are in `core.deadman`, the words in `core.operator_notices`, the I/O in
`tasks.operator`, the settings in `core.settings.OperatorSettings`.
`answer_pending_when_paused` (the listener's) stays here until the listener part moves it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect.logging import get_logger

from core import render
from core.deadman import heartbeat_detail
from core.operator_notices import OPERATOR, PAUSED_COMMENT
from core.records import ActionRecord, Decision
from core.settings import OperatorSettings
from tasks.controls import kill_switch_engaged
from tasks.notify import post_notice
from tasks.operator import (
    check_dead_mans_switch,
    cycle_completed,
    note_kill_switch,
    publish_self_metrics,
    record_heartbeat,
)

__all__ = [
    "OperatorSettings",
    "answer_pending_when_paused",
    "check_dead_mans_switch",
    "cycle_completed",
    "heartbeat_detail",
    "publish_self_metrics",
    "record_heartbeat",
]

log = get_logger("remediation.operator")
_note_kill_switch = note_kill_switch


async def _post(conns: Any, title: str, text: str, color: int) -> bool:
    return await post_notice(conns, render.notice_message(title, text, color=color), log)


async def answer_pending_when_paused(
    listener: Any, waiting: list[ActionRecord], now: datetime
) -> bool:
    """With the kill switch on, answer every pending approval "paused by operator" and
    return True (the listener then resumes nothing else this poll)."""
    engaged = await kill_switch_engaged()
    await _note_kill_switch(listener.conns, engaged, now)
    if not engaged:
        return False
    run_ids = [r.request.flow_run_id for r in waiting if r.request and r.request.flow_run_id]
    paused = await listener.paused_action_runs(run_ids) if run_ids else {}
    answered: list[ActionRecord] = []
    for record in waiting:
        run = paused.get(record.request.flow_run_id or "") if record.request else None
        if run is None:
            continue  # not paused yet: answered on a later poll
        # An intent recorded before the switch went on is applied as it is (the first
        # intent always wins); if it is an approve, the launcher refuses to launch.
        decision = record.decision or Decision(
            action_id=record.proposal.action_id,
            decision="reject",
            decider=OPERATOR,
            via="operator",
            comment=PAUSED_COMMENT,
            intended_at=now,
        )
        try:
            if await listener.apply(record, run, decision) and record.decision is None:
                answered.append(record)
        except Exception as exc:  # noqa: BLE001 - one action's trouble never stops the rest
            log.warning("could not answer %s: %s", record.proposal.action_id, exc)
    if answered:
        lines = "\n".join(f"- `{r.proposal.catalog_key}` on {r.proposal.host}" for r in answered)
        await _post(
            listener.conns,
            f"⛔ Paused by operator: {len(answered)} pending approval(s) answered",
            f"Rejected with \u201c{PAUSED_COMMENT}\u201d; nothing was launched.\n{lines}",
            render.GREY,
        )
    return True
