"""The words of every notice an action run posts to the approvals channel (rejected,
still gated, expired, not run, waiting to launch, launch refused, job timeout …)."""

from __future__ import annotations

from core.action_run import FailedRun
from core.launch import (
    MARKER_KEY,
    JobRefused,
    KillSwitchEngaged,
    LaunchUnknown,
    NoJobToPoll,
    RunnerRefused,
)
from core.policy import RiskLevel
from core.records import ActionStatus, Decision
from core.render import GREY, RED, notice_message, quoted
from core.vetting import ProposedAction
from core.wire import Embed


def _on(action: ProposedAction) -> str:
    return f"{action.catalog_key} on {action.host}"


def rejected(action: ProposedAction, decision: Decision) -> Embed:
    comment = f": {decision.comment}" if decision.comment else ""
    return notice_message(
        f"❌ Rejected: {_on(action)}",
        f"Rejected by {decision.decider} ({decision.via}){comment}. Nothing was launched.",
        color=GREY,
    )


def still_gated(action: ProposedAction, level: RiskLevel) -> Embed:
    """A Prefect UI approve the risk level does not accept."""
    return notice_message(
        f"🔒 Still gated: {_on(action)}",
        f"An approval from the Prefect UI is not sufficient for {action.risk.value}-risk "
        f"actions. `{action.catalog_key}` on `{action.host}` stays gated until "
        f"{level.approvers_needed} approvers react ✅ in Discord (or someone rejects).",
        color=level.color,
    )


def run_failed(
    action: ProposedAction, kind: FailedRun, status: ActionStatus | None, message: str
) -> Embed:
    """The failure hook's notice: what the failed run leaves behind."""
    if kind is FailedRun.WAITING:
        title = f"⏱️ Expired: {_on(action)} did not run"
        text = (
            "Nobody decided before the deadline and the approval listener did not "
            "apply the deadline default (is it running?). Nothing was launched."
        )
    elif kind is FailedRun.STRANDED:
        title = f"⚠️ Not run: {_on(action)}"
        text = (
            "The run failed after the approval, before its launch: "
            f"{quoted(message, 800)}Nothing was launched; the next "
            "cycle reports the issue again if it persists."
        )
    else:
        title = f"⚠️ Action run failed: {_on(action)}"
        text = (
            f"The run failed while the action was {status.value if status else 'unknown'}: "
            f"{quoted(message, 800)}The ledger keeps its state; "
            "the reconciler continues it if a job was launched."
        )
    return notice_message(title, text, color=GREY)


def slot_wait_reason(claim: str, max_running: int) -> str:
    """Why an approved action cannot launch yet (`claim`: the ledger's answer)."""
    if claim == "host_busy":
        return "another remediation job is running on this host"
    return f"{max_running} remediation jobs are running"


def waiting_to_launch(action: ProposedAction, why: str) -> Embed:
    return notice_message(
        f"⏳ Waiting: {_on(action)}", f"Approved, waiting to launch: {why}.", color=GREY
    )


def not_run_why(stopped: NoJobToPoll, action: ProposedAction) -> str:
    """Why the action's job did not run (or cannot be followed): for the ledger, the
    notice, the artifact and the run's result alike."""
    if isinstance(stopped, KillSwitchEngaged):
        return "Paused by operator (kill switch): nothing launched."
    if isinstance(stopped, JobRefused):
        return f"Launch refused: template does not prompt on launch ({stopped.detail})"
    if isinstance(stopped, LaunchUnknown):
        if stopped.local_job_id is not None:
            return (
                f"Launch state unknown: local Ansible job `{stopped.local_job_id}` was "
                "started by a process that has since died, so its outcome cannot be read. "
                "It was NOT relaunched — please check the host by hand."
            )
        searched = (
            f"the job could not be looked up ({stopped.lookup_error})"
            if stopped.lookup_error is not None
            else f"none carrying marker {action.action_id} was found"
        )
        return (
            f"Launch state unknown: the request to {action.runner.value} may have created "
            f"a job, but {searched}. It was NOT relaunched — please check the runner by "
            f"hand (marker {MARKER_KEY}={action.action_id})."
        )
    where = (
        "the runner refused it"
        if isinstance(stopped, RunnerRefused)
        else ("it never reached the runner")
    )
    return f"Not launched: {where}. {stopped}"


def not_run(stopped: NoJobToPoll, action: ProposedAction) -> Embed:
    if isinstance(stopped, KillSwitchEngaged):
        title = f"⛔ Paused by operator: {action.catalog_key}"
    elif isinstance(stopped, JobRefused):
        title = f"🚫 Launch refused: {_on(action)}"
    elif isinstance(stopped, LaunchUnknown):
        title = f"❓ Launch state unknown: {_on(action)}"
    else:
        title = f"⚠️ Not launched: {_on(action)}"
    return notice_message(title, not_run_why(stopped, action), color=RED)


def job_timeout(action: ProposedAction, job_id: str, tail: str) -> Embed:
    return notice_message(
        f"⏱️ Job timeout: {_on(action)}",
        f"Job `{job_id}` did not finish within {action.max_job_seconds} s "
        "and was cancelled. Last output:\n" + quoted(tail[-1500:], 1600),
        color=RED,
    )
