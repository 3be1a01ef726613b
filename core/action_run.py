"""The decisions of one action run (`remediate_action`): how it waits (pause or suspend),
what a resume means, how long a pause lasts, what a failed run leaves behind — and the
run's typed result."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel

from core.models import Verdict
from core.policy import RiskLevel, WaitMode
from core.records import ActionRecord, ActionStatus, Decision
from core.wire import JobState


class ActionResult(BaseModel):
    """What the run returns: where the action ended, and how."""

    action_id: str
    status: ActionStatus
    decision: Decision | None = None
    job_id: str | None = None
    job_state: JobState | None = None
    verdict: Verdict | None = None
    explanation: str = ""

    @classmethod
    def ended_before(cls, record: ActionRecord) -> ActionResult:
        """A rerun of an action that had already ended undecided: nothing to do."""
        return cls(action_id=record.proposal.action_id, status=record.status)


def applied_decision(record: ActionRecord) -> Decision | None:
    """A decision applied before a restart (never ask again), or None."""
    decision = record.decision
    return decision if decision is not None and decision.applied_at is not None else None


def pause_key(action_id: str, regates: int = 0) -> str:
    """One key per pause: a reused key answers at once with the old input (see the
    Prefect notes), so each re-gate pauses under a fresh one."""
    base = f"approve-{action_id}"
    return base if regates == 0 else f"{base}-regate-{regates}"


def regates_of(key: str) -> int:
    """How many times the run was re-gated before pausing under `key` (`pause_key`)."""
    _, _, count = key.rpartition("-regate-")
    return int(count) if count.isdigit() else 0


def pause_timeout(deadline: datetime, now: datetime, grace_seconds: int) -> int:
    """Seconds to pause: until the deadline, plus the grace in which the listener applies
    the deadline default (a Prefect timeout means it did not)."""
    return max(int((deadline - now).total_seconds()), 0) + grace_seconds


class WaitChoice(BaseModel):
    """How this run waits for its decision: its level's mode, or pause when Prefect
    cannot suspend it (`fallback` says why; the run says so in its log and the ledger)."""

    mode: WaitMode
    fallback: str | None = None


def wait_choice(level: RiskLevel, *, deployment: bool, subflow: bool) -> WaitChoice:
    """Suspend ends the process, and Prefect re-runs the flow from a deployment on resume:
    it needs a deployment and a top-level run. Where it cannot, the run waits paused
    (a careful user wants the approval asked, not refused for want of a worker)."""
    if level.wait == "pause":
        return WaitChoice(mode="pause")
    if not deployment:
        return WaitChoice(mode="pause", fallback="the run has no deployment (in-process run)")
    if subflow:
        return WaitChoice(mode="pause", fallback="the run is a subflow of another run")
    return WaitChoice(mode="suspend")


class ResumeKind(StrEnum):
    """Who resumed a paused action run."""

    LISTENER = "listener"  # the listener recorded this decision before resuming
    UI = "ui"  # a Prefect UI resume the risk level accepts: recorded as applied
    UI_APPROVE_REGATED = "ui_approve_regated"  # a UI approve the level refuses: ask again


def classify_resume(
    answer: Literal["approve", "reject"], recorded: Decision | None, *, ui_approval_allowed: bool
) -> ResumeKind:
    """The listener records its decision before resuming; any other resume came from the
    Prefect UI (the form carries no trustworthy "who"). A UI approve is only enough where
    the risk level allows UI approvals; a UI reject always is."""
    if recorded is not None and recorded.via != "ui" and recorded.decision == answer:
        return ResumeKind.LISTENER
    if answer == "approve" and not ui_approval_allowed:
        return ResumeKind.UI_APPROVE_REGATED
    return ResumeKind.UI


def ui_decision(
    action_id: str, answer: Literal["approve", "reject"], comment: str, now: datetime
) -> Decision:
    return Decision(
        action_id=action_id,
        decision=answer,
        decider="Prefect UI",
        via="ui",
        comment=comment or None,
        intended_at=now,
        applied_at=now,
    )


class FailedRun(StrEnum):
    """Where a failed action run left its action (the failure hook's cases)."""

    WAITING = "waiting"  # still undecided: its pause timed out; nothing ran (expired)
    STRANDED = "stranded"  # approved, launch never claimed: nothing ran (not run)
    OTHER = "other"  # launched or ended: the ledger keeps its state


def classify_failed_run(record: ActionRecord | None) -> FailedRun:
    """A run that fails while its action awaits approval timed out in its pause: nobody
    decided and the listener was absent. One that fails approved but before claiming its
    launch (e.g. waiting for its host) ran nothing, and no reconciler continues a failed
    run without a launch intent — so it ends there."""
    if record is None or record.status in (ActionStatus.PROPOSED, ActionStatus.AWAITING_APPROVAL):
        return FailedRun.WAITING
    if record.status is ActionStatus.APPROVED and record.job is None:
        return FailedRun.STRANDED
    return FailedRun.OTHER
