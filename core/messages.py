"""What the project says in chat, channel-neutral: one typed model per message kind.

`core` builds these once; each chat channel's adapter renders them (Discord: embeds,
`<t:…:R>` timestamps, mentions disabled; Slack: Block Kit, `<!date^…>`, escaped text) and
posts them. Nothing here is markup of one channel: a deadline is a `datetime`, approvers
are ids, risk is the policy's `RiskLevel`, and text that came from hosts, logs or the
model is marked `Untrusted` (or a `Quoted` part), so every adapter shows it as inert data.
The words of the notices are in `core.words`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import Field

from core.analysis import ManualIssue
from core.approvers import Approvers
from core.models import Frozen, Issue
from core.notice import Moment, Notice, Part, Quoted, Untrusted
from core.policy import Policy, RiskLevel
from core.records import ApprovalRequest, Decision
from core.summary import AttemptDetail
from core.verify import Verification
from core.vetting import AttemptRecord, ProposedAction
from core.wire import JobState
from core.words import INVESTIGATE_BY_HAND, outcome_text


class ApprovalCard(Frozen):
    """The request people decide on (a channel adds ✅ and ❌ to it)."""

    kind: Literal["approval_card"] = "approval_card"
    action: ProposedAction
    level: RiskLevel
    deadline: datetime
    approvers: Approvers
    history: list[AttemptRecord] = []
    ui_url: str | None = None


class Reminder(Frozen):
    """The one reminder before the deadline, pointing at its request."""

    kind: Literal["reminder"] = "reminder"
    action: ProposedAction
    level: RiskLevel
    deadline: datetime
    approvals: list[str] = []
    request: ApprovalRequest | None = None


class DecisionOutcome(Frozen):
    """What a request is edited to show once its decision is applied."""

    kind: Literal["decision_outcome"] = "decision_outcome"
    decision: Decision

    def text(self) -> str:
        return outcome_text(self.decision)


class RequestClosed(Frozen):
    """What a request is edited to show when it can no longer be decided (its run died)."""

    kind: Literal["request_closed"] = "request_closed"
    text: str


class ResultCard(Frozen):
    """The result of one action: job, re-check and verdict."""

    kind: Literal["action_result"] = "action_result"
    action: ProposedAction
    decision: Decision
    job_id: str | None
    job_url: str | None
    job_state: JobState
    duration_s: float | None
    verification: Verification
    output_tail: Untrusted


class ProposalSummary(Frozen):
    """The analysis' summary and the actions it proposes (before each is asked)."""

    kind: Literal["proposal_summary"] = "proposal_summary"
    summary: Untrusted
    actions: list[ProposedAction]
    cycle_id: str


class ManualIssues(Frozen):
    kind: Literal["manual_issues"] = "manual_issues"
    manual: list[ManualIssue]
    cycle_id: str


def investigate_by_hand(issues: Sequence[Issue]) -> list[ManualIssue]:
    """Issues the analysis could not cover, each as a manual issue to investigate by hand
    (how every channel lists an `AnalysisUnavailable`)."""
    return [
        ManualIssue(
            host=i.host,
            problem=i.summary or i.fingerprint,
            severity=i.severity.value,
            recommendation=INVESTIGATE_BY_HAND,
            source="analysis_unavailable",
        )
        for i in issues
    ]


class AnalysisUnavailable(Frozen):
    """Every issue posted for a human: the analysis could not be had or read."""

    kind: Literal["analysis_unavailable"] = "analysis_unavailable"
    issues: list[Issue]
    reason: Untrusted
    excerpt: Untrusted
    cycle_id: str


class NoActionNeeded(Frozen):
    kind: Literal["no_action_needed"] = "no_action_needed"
    items: list[tuple[Issue, Untrusted]]
    summary: Untrusted
    cycle_id: str


class NotAddressed(Frozen):
    kind: Literal["not_addressed"] = "not_addressed"
    issues: list[Issue]
    notes: list[Untrusted]
    cycle_id: str


class CycleSummary(Frozen):
    """The cycle's "workflow complete" summary: one row per action (`core.summary`)."""

    kind: Literal["cycle_summary"] = "cycle_summary"
    cycle_id: str
    rows: list[dict[str, str]]


class Escalation(Frozen):
    """An issue out of attempts, handed to a human with its history."""

    kind: Literal["escalation"] = "escalation"
    issue: Issue
    history: list[AttemptDetail]
    policy: Policy
    cycle_id: str


ChatMessage = Annotated[
    Notice
    | ApprovalCard
    | Reminder
    | ResultCard
    | ProposalSummary
    | ManualIssues
    | AnalysisUnavailable
    | NoActionNeeded
    | NotAddressed
    | CycleSummary
    | Escalation,
    Field(discriminator="kind"),
]
# What a request is edited to show.
RequestUpdate = DecisionOutcome | RequestClosed


def parts_text(parts: Sequence[Part]) -> str:
    """A notice's parts as plain words (for logs and reports; no channel's markup)."""
    out = []
    for p in parts:
        if isinstance(p, Quoted):
            out.append(p.text)
        elif isinstance(p, Moment):
            out.append(f"{p.at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC")
        else:
            out.append(p)
    return "".join(out)
