"""The words of every notice, in one place: what an action run, the cycle, the operator
controls and the reconciler say in chat, as channel-neutral `core.messages.Notice`s (an
adapter renders them), and the lines of the reports' visible notices.

The cards and listings with structure of their own (the approval card, the reminder, the
result, the summaries and issue listings) are typed messages in `core.messages`; the
decision a request is edited to show is `outcome_text` here; the approval card's and the
reminder's words are here too (a channel renders them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from core.action_run import FailedRun
from core.analysis import ManualIssue
from core.launch import (
    MARKER_KEY,
    JobRefused,
    KillSwitchEngaged,
    LaunchUnknown,
    NoJobToPoll,
    RunnerRefused,
)
from core.liveness import MAX_CONTINUATIONS
from core.models import Issue
from core.notice import Moment, Notice, Part, Quoted, Tone
from core.policy import Policy, RiskLevel
from core.records import CHAT_VIAS, ActionStatus, Decision
from core.report import CycleReport
from core.vetting import ProposedAction


def _on(action: ProposedAction) -> str:
    return f"{action.catalog_key} on {action.host}"


# --- an action run ----------------------------------------------------------------------
def rejected(action: ProposedAction, decision: Decision) -> Notice:
    comment = f": {decision.comment}" if decision.comment else ""
    return Notice(
        title=f"❌ Rejected: {_on(action)}",
        text=[f"Rejected by {decision.decider} ({decision.via}){comment}. Nothing was launched."],
        tone=Tone.QUIET,
    )


def still_gated(action: ProposedAction, level: RiskLevel, *, channel: str) -> Notice:
    """A Prefect UI approve the risk level does not accept (`channel`: where people
    decide, by its title)."""
    return Notice(
        title=f"🔒 Still gated: {_on(action)}",
        text=[
            f"An approval from the Prefect UI is not sufficient for {action.risk.value}-risk "
            f"actions. `{action.catalog_key}` on `{action.host}` stays gated until "
            f"{level.approvers_needed} approvers react ✅ in {channel} (or someone rejects)."
        ],
        risk=level,
    )


def run_failed(
    action: ProposedAction, kind: FailedRun, status: ActionStatus | None, message: str
) -> Notice:
    """The failure hook's notice: what the failed run leaves behind."""
    if kind is FailedRun.WAITING:
        title = f"⏱️ Expired: {_on(action)} did not run"
        text: list[Part] = [
            "Nobody decided before the deadline and the approval listener did not "
            "apply the deadline default (is it running?). Nothing was launched."
        ]
    elif kind is FailedRun.STRANDED:
        title = f"⚠️ Not run: {_on(action)}"
        text = [
            "The run failed after the approval, before its launch: ",
            Quoted(text=message, limit=800),
            "Nothing was launched; the next cycle reports the issue again if it persists.",
        ]
    else:
        title = f"⚠️ Action run failed: {_on(action)}"
        text = [
            f"The run failed while the action was {status.value if status else 'unknown'}: ",
            Quoted(text=message, limit=800),
            "The ledger keeps its state; the reconciler continues it if a job was launched.",
        ]
    return Notice(title=title, text=text, tone=Tone.QUIET)


def slot_wait_reason(claim: str, max_running: int) -> str:
    """Why an approved action cannot launch yet (`claim`: the ledger's answer)."""
    if claim == "host_busy":
        return "another remediation job is running on this host"
    return f"{max_running} remediation jobs are running"


def waiting_to_launch(action: ProposedAction, why: str) -> Notice:
    return Notice(
        title=f"⏳ Waiting: {_on(action)}",
        text=[f"Approved, waiting to launch: {why}."],
        tone=Tone.QUIET,
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


def not_run(stopped: NoJobToPoll, action: ProposedAction) -> Notice:
    if isinstance(stopped, KillSwitchEngaged):
        title = f"⛔ Paused by operator: {action.catalog_key}"
    elif isinstance(stopped, JobRefused):
        title = f"🚫 Launch refused: {_on(action)}"
    elif isinstance(stopped, LaunchUnknown):
        title = f"❓ Launch state unknown: {_on(action)}"
    else:
        title = f"⚠️ Not launched: {_on(action)}"
    return Notice(title=title, text=[not_run_why(stopped, action)])


def job_timeout(action: ProposedAction, job_id: str, tail: str) -> Notice:
    return Notice(
        title=f"⏱️ Job timeout: {_on(action)}",
        text=[
            f"Job `{job_id}` did not finish within {action.max_job_seconds} s "
            "and was cancelled. Last output:\n",
            Quoted(text=tail[-1500:], limit=1600),
        ],
    )


# --- the cycle --------------------------------------------------------------------------
NO_TARGETS = (
    "Prometheus answered, but knows no scrape target (`up` is empty): no host was "
    "checked and nothing was cleared"
)
LOKI_UNAVAILABLE = "Loki unavailable: analysis ran without logs"


def prometheus_alert_detail(check_errors: dict[str, str]) -> str:
    """What the alert state records with the Prometheus transition."""
    return "; ".join(sorted(check_errors.values()))[:500]


def prometheus_transition(
    down: bool, check_errors: dict[str, str], cycle_id: str
) -> tuple[str, Notice]:
    """The notice of the Prometheus alert going on (every check failed) or off, and what
    it is called if its post fails."""
    if down:
        return "Prometheus notice", Notice(
            title="⚠️ Prometheus unreachable — remediation cycle degraded",
            text=[
                "Every check failed, so this cycle could not detect anything.\n",
                Quoted(text="\n".join(sorted(set(check_errors.values()))), limit=1500),
            ],
            cycle_id=cycle_id,
        )
    return "Prometheus recovery", Notice(
        title="✅ Prometheus reachable again",
        text=["Checks are running normally."],
        cycle_id=cycle_id,
        tone=Tone.OK,
    )


def policy_invalid(block: str | None, error: object, cycle_id: str) -> Notice:
    return Notice(
        title=f"⚠️ Policy block {block!r} is invalid — remediation stopped",
        text=[
            f"{error}\nEvery run fails at its start until the block is fixed "
            "(`remediation-policy validate`, then `remediation-policy apply`)."
        ],
        cycle_id=cycle_id,
    )


def policy_valid(block: str | None, cycle_id: str) -> Notice:
    return Notice(
        title=f"✅ Policy block {block!r} is valid again",
        text=["Cycles run normally."],
        cycle_id=cycle_id,
        tone=Tone.OK,
    )


def ledger_unavailable(error: object, cycle_id: str) -> Notice:
    """The cycle could not reach its ledger: it stops before detecting anything."""
    return Notice(
        title="⚠️ Ledger unavailable — remediation cycle skipped",
        text=[
            "The cycle could not write to its ledger, so it stopped before detecting "
            "anything: without the ledger it can neither deduplicate nor record what it "
            "does. This notice repeats every cycle until the ledger answers.\n",
            Quoted(text=str(error), limit=1500),
        ],
        cycle_id=cycle_id,
    )


def alert_state_unavailable(error: object) -> str:
    return f"ledger unavailable for alert state: {error}"


def post_failed(channel: str, what: str, error: object) -> str:
    return f"{channel} post of the {what} failed: {error}"


def claude_unreachable(error: object) -> str:
    return f"Claude unreachable after retries: {error}"


def answer_unreadable(reason: str) -> str:
    return f"the answer could not be read ({reason})"


def analysis_unavailable(reason: str) -> str:
    return f"analysis unavailable: {reason}"


def not_addressed(count: int) -> str:
    return f"{count} issue(s) not addressed by the analysis: posted for a human"


# --- the operator controls --------------------------------------------------------------
PAUSED_COMMENT = "paused by operator"
OPERATOR = "operator (kill switch)"


def kill_switch_notice(engaged: bool, variable: str) -> Notice:
    """The kill switch (the Prefect Variable `variable`) went on or off."""
    if engaged:
        return Notice(
            title="⛔ Remediation paused by operator",
            text=[
                f"The kill switch (Prefect Variable `{variable}`) is on: issues are still "
                "detected, but no action is proposed or launched, and pending approvals are "
                "answered \u201cpaused by operator\u201d."
            ],
        )
    return Notice(
        title="▶️ Remediation resumed",
        text=[f"The kill switch (`{variable}`) is off: cycles propose actions again."],
        tone=Tone.OK,
    )


def cycle_silent(last: datetime, limit_seconds: float, noticed_by: str) -> Notice:
    return Notice(
        title="💀 Remediation cycle silent",
        text=[
            "No remediation cycle has completed since ",
            Moment(at=last),
            f"; one is expected at least every {limit_seconds:.0f} s. Check the cycle "
            "deployment's schedule, its work pool's worker and the last cycle run in "
            f"Prefect. (Noticed by the {noticed_by}.)",
        ],
    )


def cycle_running_again(completed_at: datetime) -> Notice:
    return Notice(
        title="✅ Remediation cycle running again",
        text=["A cycle completed ", Moment(at=completed_at), "."],
        tone=Tone.OK,
    )


def listener_silent(last_poll: datetime | None, waiting: int, noticed_by: str) -> Notice:
    """`last_poll` None: no listener ever polled."""
    last: list[str | Quoted | Moment] = (
        ["since ", Moment(at=last_poll)] if last_poll else ["at all"]
    )
    return Notice(
        title="💀 Approval listener silent",
        text=[
            "No approval listener has polled ",
            *last,
            f" while {waiting} approval(s) wait: reactions are not read and deadlines are "
            "not applied. Start `remediation-listener` or check the approval-listener "
            f"deployment. (Noticed by the {noticed_by}.)",
        ],
    )


def listener_polling_again(polled_at: datetime) -> Notice:
    return Notice(
        title="✅ Approval listener polling again",
        text=[
            "The listener polled ",
            Moment(at=polled_at),
            ": reactions are read and deadlines applied again.",
        ],
        tone=Tone.OK,
    )


def pending_answered(answered: Sequence[tuple[str, str]]) -> Notice:
    """Pending approvals answered "paused by operator": (catalog key, host) of each."""
    lines = "\n".join(f"- `{key}` on {host}" for key, host in answered)
    return Notice(
        title=f"⛔ Paused by operator: {len(answered)} pending approval(s) answered",
        text=[f"Rejected with \u201c{PAUSED_COMMENT}\u201d; nothing was launched.\n{lines}"],
        tone=Tone.QUIET,
    )


def maintenance_notices(policy: Policy, report: CycleReport, now: datetime) -> list[str]:
    """Why hosts with new issues got no action: they are in a maintenance window."""
    new = set(report.new_issues)
    hosts = sorted({i.host for i in report.issues if i.fingerprint in new})
    notices = []
    for host in hosts:
        window = policy.maintenance_for(host, now)
        if window is not None:
            notices.append(
                f"{host} is in maintenance window {window.name!r}: its issues are reported, "
                "no action is proposed for it"
            )
    return notices


# --- the reconciler ---------------------------------------------------------------------
# What the approval request's message becomes once its run died before a decision.
EXPIRED_APPROVAL = "⏱️ Expired — the run that asked died; this will not run."


def expired_message(action: ProposedAction, dead_run_id: str, dead_state: str) -> Notice:
    """The run waiting for approval died: a decision can no longer resume it."""
    return Notice(
        title=f"⏱️ Expired: {_on(action)} did not run",
        text=[
            f"The run waiting for approval died (run `{dead_run_id}`, {dead_state}), so a "
            "decision can no longer resume it. Nothing was launched; the next cycle "
            "reports the issue again if it persists."
        ],
        tone=Tone.QUIET,
    )


def continuing_message(
    action: ProposedAction,
    dead_run_id: str,
    dead_state: str,
    *,
    job_id: str | None,
    launch_intent: bool,
) -> Notice:
    """A fresh run continues a decided action from the ledger, saying how it finds its
    job (polled, looked up by its marker, or launched once)."""
    job = (
        f"job `{job_id}` is polled"
        if job_id
        else "the job is looked up by its marker (never launched twice)"
        if launch_intent
        else "it launches once, as approved"
    )
    return Notice(
        title=f"🔁 Continuing: {_on(action)}",
        text=[
            f"The run handling this approved action died (run `{dead_run_id}`, "
            f"{dead_state}). A fresh run continues it from the ledger: {job}."
        ],
        tone=Tone.QUIET,
    )


def gave_up_message(
    action: ProposedAction,
    dead_run_id: str,
    dead_state: str,
    *,
    job_id: str | None,
    ended_run_id: str | None = None,
    ended_state: str | None = None,
) -> Notice:
    """The action is not continued again: its runs kept dying, or the fresh run that was
    to continue it ended (`ended_run_id`) without finishing it."""
    job = f" Job `{job_id}` was launched." if job_id else ""
    why = (
        f"Its run died (`{dead_run_id}`, {dead_state}) and the run that was to continue "
        f"it ended {ended_state} (`{ended_run_id}`) without finishing it."
        if ended_run_id is not None
        else f"Its run died {MAX_CONTINUATIONS + 1} times (last: `{dead_run_id}`, {dead_state})."
    )
    return Notice(
        title=f"🛑 Not continued again: {_on(action)}",
        text=[f"{why}{job} Please check the runner and the host by hand."],
    )


# --- the approval card, its reminder and the decision it is edited to show ----------------
# Field labels of the approval card, in the order a channel shows them.
HOST, RISK, ACTION, PARAMETERS = "Host", "Risk", "Action", "Parameters"
EVIDENCE, REASON, EXPECTED = "Issue and evidence", "Reason (Claude)", "Expected outcome"
HISTORY, WHO_MAY_APPROVE, DEADLINE = "Earlier attempts on this issue", "Who may approve", "Deadline"
POLICY_NOTES, PREFECT, OPEN_IN_PREFECT = "Policy notes", "Prefect", "Open the run in the Prefect UI"
NO_EARLIER_ATTEMPTS = "no earlier attempts"
ANY_MEMBER = "any member of this channel"


def at_deadline(outcome: str) -> str:
    """What happens at the deadline (`core.approval.deadline_outcome`: run or skip)."""
    return "runs automatically" if outcome == "run" else "will not run"


def quorum_note(approvers_needed: int) -> str:
    return f" ({approvers_needed} approvers needed)" if approvers_needed > 1 else ""


def risk_text(level: RiskLevel, action: ProposedAction) -> str:
    return f"{level.emoji} {action.risk.value}{quorum_note(level.approvers_needed)}"


def approval_title(level: RiskLevel, action: ProposedAction) -> str:
    return f"{level.emoji} Approve {_on(action)}? React ✅ or ❌"


def deadline_then(when: str, outcome: str) -> str:
    """The deadline field: `when` as the channel shows a moment."""
    return f"{when} — then it {at_deadline(outcome)}"


def approval_footer(action: ProposedAction) -> str:
    return f"action {action.action_id} · policy {action.policy_hash}"


def nobody_may_approve(channel: str) -> str:
    return f"nobody from {channel} (no approvers configured): use the Prefect UI"


def reminder_title(action: ProposedAction) -> str:
    return f"⏳ Reminder: {_on(action)} awaits a decision"


THE_REQUEST_ABOVE = "the request above"


def reminder_text(
    level: RiskLevel, outcome: str, approvals: Sequence[str], *, when: str, where: str
) -> str:
    """The reminder's text: `when` the deadline as the channel shows a moment, `where`
    the request (a link, or `THE_REQUEST_ABOVE`)."""
    so_far = (
        f" Approvals so far: {', '.join(approvals)} of {level.approvers_needed} needed."
        if level.approvers_needed > 1
        else ""
    )
    then = at_deadline(outcome)
    return f"The deadline is {when}; then it {then}. React ✅ or ❌ on {where}.{so_far}"


def reminder_footer(action: ProposedAction) -> str:
    return f"action {action.action_id}"


def outcome_text(decision: Decision) -> str:
    """The line the approval message is edited to show once a decision is applied."""
    approved = decision.decision == "approve"
    verb = "✅ Approved" if approved else "❌ Rejected"
    comment = f" — {decision.comment}" if decision.comment and decision.via != "deadline" else ""
    if decision.via in CHAT_VIAS:
        return f"{verb} by {decision.decider}{comment}"
    if decision.via == "ui":
        return f"{verb} — decided in the Prefect UI{comment}"
    if decision.via == "deadline":
        if approved:
            return "⏰ Deadline passed with no decision: ran by deadline default"
        return "⏰ Deadline passed with no decision: will not run"
    if decision.via == "operator":
        return f"⛔ {verb} by operator ({decision.decider}){comment}: " + (
            "it runs" if approved else "will not run"
        )
    return f"{verb} ({decision.via}, {decision.decider}){comment}"


# --- the cycle summary and the escalation of an issue out of attempts ---------------------
def cycle_summary_title(count: int) -> str:
    return f"🏁 Workflow complete: {count} action(s) of this cycle ended"


def summary_row_name(row: Mapping[str, str]) -> str:
    return f"{row['action']} on {row['host']}"


def summary_row_text(row: Mapping[str, str], *, verdict: str) -> str:
    """One action's line; `verdict` as the channel emphasises it."""
    return (
        f"{row['decision']}; job {row['job']} ({row['job_seconds']} s); "
        f"verdict {verdict}; decided in {row['decision_seconds']} s, "
        f"{row['total_seconds']} s in all"
    )


def more_actions_not_listed(count: int) -> str:
    return (
        f"… and {count} more action(s) not listed here (the cycle report in Prefect "
        "lists every one)."
    )


def verdict_tally(rows: Sequence[Mapping[str, str]]) -> str | None:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    tally = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    return f"Verdicts: {tally}." if rows else None


def _window_text(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def escalation_title(issue: Issue) -> str:
    return f"🆘 Manual issue: {issue.check.value} {issue.subject} on {issue.host} — out of attempts"


def escalation_text(counted: int, policy: Policy) -> str:
    return (
        f"{counted} failed or ineffective attempt(s) in the last "
        f"{_window_text(policy.attempt_window_seconds)} (limit "
        f"{policy.attempts_per_window}). No further action will be proposed for this "
        "issue until the window passes; please look at it by hand."
    )


ISSUE, NOW_LABEL, ATTEMPT_HISTORY = "Issue", "Now", "Attempt history"


# --- an action's result -------------------------------------------------------------------
VERDICT_ICONS = {"effective": "✅", "ineffective": "❌", "inconclusive": "❔"}
APPROVED, DECISION, JOB, JOB_STATE, DURATION = (
    "Approved",
    "Decision",
    "Job",
    "Job state",
    "Duration",
)
METRIC_BEFORE_AFTER, LAST_OUTPUT, NO_OUTPUT = "Metric before → after", "Last output lines", "(none)"
OPEN = "open"


def decided_text(decision: Decision) -> str:
    """Who decided, and how: "alice (in Discord)" (`via` is where the decision was made)."""
    how = {
        "discord": "in Discord",
        "slack": "in Slack",
        "chat": "in chat",
        "ui": "in the Prefect UI",
        "deadline": "by deadline default",
        "operator": "by operator",
    }.get(decision.via, decision.via)
    return f"{decision.decider} ({how})"


def verdict_label(verdict: str) -> str:
    return f"Verdict: {verdict}"


def verdict_text(explanation: str, detail: str) -> str:
    """The explanation, and the re-check's own finding when it is not already said."""
    text = explanation
    if detail and detail not in text:
        text = f"{text}\nRe-check: {detail}" if text else f"Re-check: {detail}"
    return text or "-"


def result_title(verdict: str, action: ProposedAction, job_state: str, succeeded: bool) -> str:
    job_note = "" if succeeded else f" (job {job_state})"
    return f"{VERDICT_ICONS[verdict]} {verdict.upper()}: {_on(action)}{job_note}"


# --- the cycle's listings: manual issues, proposals, no action needed, not addressed -----
MANUAL_ISSUES_TEXT = "These were not remediated automatically."
RECOMMENDATION, WHY, INVESTIGATE_BY_HAND = "Recommendation:", "Why:", "Investigate by hand."
EXCERPT_OF_ANSWER, ANALYSIS_SUMMARY = "Excerpt of the answer:", "Summary of the analysis:"
READER_NOTES = "What the reader repaired or dropped:"
NO_ACTION_TEXT = (
    "The analysis looked at these issues and found nothing to do; each is named with "
    "its reason. Nothing was run. They are not reported again while they persist "
    "(within the dedup TTL)."
)
NOT_ADDRESSED_TEXT = (
    "The analysis did not address these issues: no proposed action, manual issue or "
    "'no action needed' named them. They were not remediated; look at them by hand."
)


def manual_issue_name(m: ManualIssue) -> str:
    return f"{m.host} · {m.severity}"


def manual_issues_title(count: int) -> str:
    return f"📋 {count} issue(s) need a human"


def analysis_unavailable_note(reason: str) -> str:
    return f"⚠️ Analysis unavailable: {reason}"


def analysis_unavailable_title(manual_title: str) -> str:
    """The manual-issues title, marked as the fallback of an unavailable analysis."""
    return "⚠️ " + manual_title.removeprefix("📋 ")


def proposal_line(n: int, action: ProposedAction, *, key: str, host: str) -> str:
    """One proposed action; `key` and `host` as the channel marks them."""
    return f"{n}. {key} on {host} — risk {action.risk.value}"


def more_proposals(count: int) -> str:
    return f"… and {count} more (each is asked for below)"


def proposal_summary_title(count: int) -> str:
    return f"📊 {count} remediation actions proposed"


def proposal_summary_footer(cycle_id: str) -> str:
    return f"cycle {cycle_id} · each action is approved separately below"


def more_issues_not_listed(count: int) -> str:
    return (
        f"… and {count} more issue(s) not listed here (the cycle report in Prefect "
        "lists every issue)."
    )


def no_action_field(count: int) -> str:
    return f"{count} issue(s) — no action needed"


def no_action_title(count: int) -> str:
    return f"✅ {count} issue(s) need no action"


def unaddressed_line(issue: Issue) -> str:
    return f"{issue.severity.value} · {issue.fingerprint}" + (
        f" — {issue.summary}" if issue.summary else ""
    )


def host_issues(host: str, count: int) -> str:
    return f"{host} · {count} issue(s)"


def not_addressed_title(count: int) -> str:
    return f"⚠️ {count} issue(s) not addressed by the analysis need a human"


# --- a message that could not be rendered -------------------------------------------------
def plain_fallback_title(what: str) -> str:
    return f"⚠️ {what} (plain-text fallback)"
