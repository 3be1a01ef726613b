"""Ledger rows → core records."""

from __future__ import annotations

from typing import Any

from clients.ledger_base import from_ts
from core.models import Risk
from core.records import ApprovalRequest, Decision, JobRecord, Vote


def request_row(r: Any) -> ApprovalRequest:
    return ApprovalRequest(
        action_id=r.action_id,
        channel_id=r.channel_id,
        message_id=r.message_id,
        flow_run_id=r.flow_run_id,
        risk=Risk(r.risk),
        deadline=from_ts(r.deadline),
        policy_hash=r.policy_hash,
        requested_at=from_ts(r.requested_at),
        reminder_sent_at=from_ts(r.reminder_sent_at),
        pause_key=r.pause_key,
    )


def decision_row(r: Any) -> Decision:
    return Decision(
        action_id=r.action_id,
        decision=r.decision,
        decider=r.decider,
        via=r.via,
        comment=r.comment,
        intended_at=from_ts(r.intended_at),
        applied_at=from_ts(r.applied_at),
    )


def job_row(r: Any) -> JobRecord:
    return JobRecord(
        action_id=r.action_id,
        runner=r.runner,
        template=r.template,
        marker=r.marker,
        intent_at=from_ts(r.intent_at),
        job_id=r.job_id,
        job_url=r.job_url,
        launched_at=from_ts(r.launched_at),
        state=r.state,
        finished_at=from_ts(r.finished_at),
        output_tail=r.output_tail,
    )


def vote_row(r: Any) -> Vote:
    return Vote(
        action_id=r.action_id,
        user_id=r.user_id,
        username=r.username,
        emoji=r.emoji,
        first_seen_at=from_ts(r.first_seen_at),
        removed_at=from_ts(r.removed_at),
    )
