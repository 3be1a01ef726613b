"""Channel-neutral messages (`core.messages`) as Discord embeds: pure, no I/O.

Each message kind is rendered by its Discord renderer (the approval card, the reminder,
the result, the summaries and the issue listings are `core`'s embed renderers, with
their plain-text fallback from `core.fallback`); a `Notice`'s parts become Markdown here:
untrusted parts as inert code blocks, moments as `<t:…:R>` with the UTC time. Discord's
limits (256-character titles, 4,096 of description) are applied here, and the client
sends every message with `allowed_mentions: {parse: []}`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC

from core.approval import approval_embed, reminder_embed
from core.messages import (
    AnalysisUnavailable,
    ApprovalCard,
    ChatMessage,
    CycleSummary,
    Escalation,
    ManualIssues,
    Moment,
    NoActionNeeded,
    NotAddressed,
    Notice,
    Part,
    ProposalSummary,
    Quoted,
    Reminder,
    ResultCard,
    Tone,
)
from core.render import (
    GREEN,
    GREY,
    ORANGE,
    RED,
    analysis_unavailable_message,
    manual_issues_message,
    no_action_needed_message,
    quoted,
    summary_message,
    unaddressed_issues_message,
)
from core.summary import BLUE, cycle_summary_embed, escalation_embed
from core.verify import result_embed
from core.wire import Embed

TONE_COLORS = {
    Tone.ALERT: RED,
    Tone.WARNING: ORANGE,
    Tone.INFO: BLUE,
    Tone.OK: GREEN,
    Tone.QUIET: GREY,
}


def moment(at: Moment) -> str:
    """A time every reader sees in their own zone, and the UTC time beside it."""
    return f"<t:{int(at.at.timestamp())}:R> ({at.at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC)"


def markdown(parts: Sequence[Part]) -> str:
    """A notice's parts as Discord Markdown (untrusted text only inside code blocks)."""
    out = []
    for p in parts:
        if isinstance(p, Quoted):
            out.append(quoted(p.text, p.limit))
        elif isinstance(p, Moment):
            out.append(moment(p))
        else:
            out.append(p)
    return "".join(out)


def notice_embed(notice: Notice) -> Embed:
    color = notice.risk.color if notice.risk is not None else TONE_COLORS[notice.tone]
    return Embed(
        title=notice.title[:256],
        description=markdown(notice.text)[:4096],
        color=color,
        footer=f"cycle {notice.cycle_id}" if notice.cycle_id else None,
    )


def embeds(message: ChatMessage, *, request_url: str | None = None) -> list[Embed]:
    """The embeds of one message (one message may need several: Discord's limits);
    `request_url` is the link a reminder gives to its request."""
    match message:
        case Notice():
            return [notice_embed(message)]
        case ApprovalCard():
            return [
                approval_embed(
                    message.action,
                    message.level,
                    deadline=message.deadline,
                    approvers=message.approvers,
                    history=message.history,
                    ui_url=message.ui_url,
                )
            ]
        case Reminder():
            return [
                reminder_embed(
                    message.action,
                    message.level,
                    deadline=message.deadline,
                    approvals=message.approvals,
                    message_url=request_url,
                )
            ]
        case ResultCard():
            return [
                result_embed(
                    action=message.action,
                    decision=message.decision,
                    job_id=message.job_id,
                    job_url=message.job_url,
                    job_state=message.job_state,
                    duration_s=message.duration_s,
                    verification=message.verification,
                    output_tail=message.output_tail,
                )
            ]
        case ProposalSummary():
            return [summary_message(message.summary, message.actions, cycle_id=message.cycle_id)]
        case ManualIssues():
            return manual_issues_message(message.manual, cycle_id=message.cycle_id)
        case AnalysisUnavailable():
            return analysis_unavailable_message(
                message.issues,
                reason=message.reason,
                excerpt=message.excerpt,
                cycle_id=message.cycle_id,
            )
        case NoActionNeeded():
            return no_action_needed_message(
                message.items, summary=message.summary, cycle_id=message.cycle_id
            )
        case NotAddressed():
            return unaddressed_issues_message(
                message.issues, notes=message.notes, cycle_id=message.cycle_id
            )
        case CycleSummary():
            return [cycle_summary_embed(message.cycle_id, message.rows)]
        case Escalation():
            return [
                escalation_embed(
                    message.issue, message.history, message.policy, cycle_id=message.cycle_id
                )
            ]
    raise TypeError(f"no Discord rendering for {type(message).__name__}")
