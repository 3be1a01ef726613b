"""What the ledger knows about one action, as typed records (read by flows and listener)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal, get_args

from core.models import Frozen, Risk
from core.vetting import ProposedAction
from core.wire import JobState


class ActionStatus(StrEnum):
    PROPOSED = "proposed"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"  # decided to run; until its launch is claimed (host or cap busy)
    REJECTED = "rejected"
    EXPIRED = "expired"
    NOT_RUN = "not_run"  # approved but stopped (kill switch, launch refused, dispatch failed)
    LAUNCHING = "launching"
    RUNNING = "running"
    VERIFYING = "verifying"
    FINISHED = "finished"
    DISPATCH_FAILED = "dispatch_failed"

    @property
    def terminal(self) -> bool:
        return self in (
            ActionStatus.REJECTED,
            ActionStatus.EXPIRED,
            ActionStatus.NOT_RUN,
            ActionStatus.FINISHED,
            ActionStatus.DISPATCH_FAILED,
        )


# Where a decision was made: a chat channel's registry name ("chat": several channels at
# once), the Prefect UI, a deadline default, the operator, or an expired run.
Via = Literal["discord", "slack", "chat", "ui", "deadline", "operator", "expired"]
CHAT_VIAS: tuple[str, ...] = tuple(
    v for v in get_args(Via) if v not in ("ui", "deadline", "operator", "expired")
)


class ApprovalRequest(Frozen):
    action_id: str
    channel_id: str | None
    message_id: str | None
    flow_run_id: str | None
    risk: Risk
    deadline: datetime
    policy_hash: str
    requested_at: datetime
    reminder_sent_at: datetime | None = None
    pause_key: str | None = None


class Decision(Frozen):
    action_id: str
    decision: Literal["approve", "reject"]
    decider: str
    via: Via
    comment: str | None = None
    intended_at: datetime
    applied_at: datetime | None = None


class JobRecord(Frozen):
    action_id: str
    runner: str
    template: str
    marker: str
    intent_at: datetime
    job_id: str | None = None
    job_url: str | None = None
    launched_at: datetime | None = None
    state: JobState | None = None
    finished_at: datetime | None = None
    output_tail: str | None = None


class Vote(Frozen):
    action_id: str
    user_id: str
    username: str
    emoji: str
    first_seen_at: datetime
    removed_at: datetime | None = None


class ActionRecord(Frozen):
    proposal: ProposedAction
    status: ActionStatus
    flow_run_id: str | None
    created_at: datetime
    updated_at: datetime
    request: ApprovalRequest | None = None
    decision: Decision | None = None
    job: JobRecord | None = None
