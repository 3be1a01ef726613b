"""Channel-neutral messages (`core.messages`) as Discord embeds: pure, no I/O.

Each message kind has its Discord renderer here (the approval card, the reminder, the
result, the cycle summary, the escalation; the issue listings in
`channels.discord_listings`), each degrading to a plain-text embed
(`channels.discord_fallback`); every word comes from `core.words`. A `Notice`'s parts
become Markdown: untrusted parts as inert code blocks, moments as `<t:…:R>` with the UTC
time, approvers as `<@id>` / `<@&id>` mentions. Discord's limits (256-character titles,
1,024 a field, 4,096 of description) are applied here, and the client sends every message
with `allowed_mentions: {parse: []}`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from channels.discord_fallback import degrades
from channels.discord_listings import (
    BLUE,
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
from core import words
from core.approval import deadline_outcome
from core.approvers import Approvers
from core.messages import (
    AnalysisUnavailable,
    ApprovalCard,
    ChatMessage,
    CycleSummary,
    Escalation,
    ManualIssues,
    NoActionNeeded,
    NotAddressed,
    ProposalSummary,
    Reminder,
    ResultCard,
)
from core.models import Issue
from core.notice import Moment, Notice, Part, Quoted, Tone
from core.params import code_span, parameters_json
from core.policy import Policy, RiskLevel
from core.records import Decision
from core.summary import AttemptDetail
from core.verify import Verification, full_explanation
from core.vetting import AttemptRecord, ProposedAction
from core.wire import Embed, EmbedField, JobState

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


def message_url(guild_id: str | None, channel_id: str, message_id: str) -> str | None:
    """A link to a Discord message (needs the guild id; None without it)."""
    if not guild_id:
        return None
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


# --- the approval card and its reminder ---------------------------------------------------
CHANNEL = "Discord"


def approvers_text(approvers: Approvers) -> str:
    """Who may approve, as Discord mentions (sent with mentions disabled: nobody is pinged)."""
    who = [f"<@{u}>" for u in approvers.user_ids] + [f"<@&{r}>" for r in approvers.role_ids]
    if who:
        return ", ".join(who)
    if approvers.any_member:
        return words.ANY_MEMBER
    return words.nobody_may_approve(CHANNEL)


def _evidence(action: ProposedAction) -> str:
    # Summaries carry label values from the hosts (unit names, mountpoints): data.
    lines = [f"• {i.summary or i.fingerprint}" for i in action.issues[:10]]
    return quoted("\n".join(lines), 1000) if lines else "-"


def _history(records: Sequence[AttemptRecord]) -> str:
    if not records:
        return words.NO_EARLIER_ATTEMPTS
    return "\n".join(f"{r.at:%Y-%m-%d %H:%M} UTC: {r.outcome}" for r in records[-5:])


@degrades("approval request", "embed")
def approval_embed(
    action: ProposedAction,
    level: RiskLevel,
    *,
    deadline: datetime,
    approvers: Approvers,
    history: Sequence[AttemptRecord],
    ui_url: str | None,
) -> Embed:
    """The approval request posted to Discord (react ✅ or ❌)."""
    ts = int(deadline.timestamp())
    when = f"<t:{ts}:R> (<t:{ts}:f>)"
    outcome = deadline_outcome(level, action)
    fields = [
        EmbedField(name=words.HOST, value=f"`{action.host}`", inline=True),
        EmbedField(name=words.RISK, value=words.risk_text(level, action), inline=True),
        EmbedField(name=words.ACTION, value=f"`{action.catalog_key}`", inline=True),
        EmbedField(name=words.PARAMETERS, value=quoted(parameters_json(action.parameters), 900)),
        EmbedField(name=words.EVIDENCE, value=_evidence(action)),
        EmbedField(name=words.REASON, value=quoted(action.reason or "-", 900)),
        EmbedField(name=words.EXPECTED, value=quoted(action.expected_outcome or "-", 900)),
        EmbedField(name=words.HISTORY, value=_history(history)[:1024]),
        EmbedField(name=words.WHO_MAY_APPROVE, value=approvers_text(approvers)[:1024]),
        EmbedField(
            name=words.DEADLINE,
            value=words.deadline_then(when, outcome),
        ),
    ]
    if action.notes:
        fields.append(EmbedField(name=words.POLICY_NOTES, value="\n".join(action.notes)[:1024]))
    if ui_url:
        fields.append(EmbedField(name=words.PREFECT, value=f"[{words.OPEN_IN_PREFECT}]({ui_url})"))
    return Embed(
        title=words.approval_title(level, action),
        color=level.color,
        fields=fields,
        url=ui_url,
        footer=words.approval_footer(action),
    )


@degrades("approval reminder", "embed")
def reminder_embed(
    action: ProposedAction,
    level: RiskLevel,
    *,
    deadline: datetime,
    approvals: Sequence[str] = (),
    message_url: str | None = None,
) -> Embed:
    """The one reminder posted before the deadline."""
    when = f"<t:{int(deadline.timestamp())}:R>"
    outcome = deadline_outcome(level, action)
    where = f"[the request]({message_url})" if message_url else words.THE_REQUEST_ABOVE
    return Embed(
        title=words.reminder_title(action)[:256],
        description=words.reminder_text(
            level,
            outcome,
            approvals,
            when=when,
            where=where,
        ),
        color=level.color,
        footer=words.reminder_footer(action),
    )


# --- the cycle summary and the escalation -------------------------------------------------
@degrades("workflow-complete summary", "embed")
def cycle_summary_embed(cycle_id: str, rows: Sequence[Mapping[str, str]]) -> Embed:
    fields = [
        EmbedField(
            name=words.summary_row_name(r)[:256],
            value=words.summary_row_text(r, verdict=f"**{r['verdict']}**")[:1024],
        )
        for r in rows[:25]
    ]
    return Embed(
        title=words.cycle_summary_title(len(rows)),
        description=words.verdict_tally(rows),
        color=BLUE,
        fields=fields,
        footer=f"cycle {cycle_id}",
    )


@degrades("escalation", "embed")
def escalation_embed(
    issue: Issue, history: Sequence[AttemptDetail], policy: Policy, *, cycle_id: str
) -> Embed:
    """The issue as a manual issue: automatic remediation gave up, here is what it tried."""
    counted = [a for a in history if a.counts]
    lines = [
        f"{a.at.isoformat(timespec='seconds')}  {a.catalog_key:<16} {a.outcome:<12} "
        f"{a.explanation[:120]}"
        for a in history[-10:]
    ]
    return Embed(
        title=words.escalation_title(issue)[:256],
        description=words.escalation_text(len(counted), policy),
        color=RED,
        fields=[
            EmbedField(name=words.HOST, value=f"`{issue.host}`", inline=True),
            EmbedField(name=words.ISSUE, value=f"`{issue.fingerprint}`"[:1024], inline=True),
            EmbedField(name=words.NOW_LABEL, value=(issue.summary or "-")[:1024]),
            EmbedField(name=words.ATTEMPT_HISTORY, value=quoted("\n".join(lines) or "-", 1000)),
        ],
        footer=f"cycle {cycle_id}",
    )


# --- an action's result -------------------------------------------------------------------
VERDICT_COLORS = {"effective": 0x2ECC71, "ineffective": 0xE74C3C, "inconclusive": 0xF1C40F}


@degrades("action result", "embed")
def result_embed(
    *,
    action: ProposedAction,
    decision: Decision,
    job_id: str | None,
    job_url: str | None,
    job_state: JobState,
    duration_s: float | None,
    verification: Verification,
    output_tail: str,
) -> Embed:
    """The structured result of one action, coloured by verdict."""
    verdict = verification.verdict
    job = f"`{job_id}`" if job_id else "-"
    if job_url:
        job += f" ([{words.OPEN}]({job_url}))"
    succeeded = job_state == JobState.SUCCESSFUL
    state = f"{job_state}" if succeeded else f"**{job_state}**"
    fields = [
        EmbedField(
            name=words.ACTION,
            value=f"`{action.catalog_key}` "
            + code_span(parameters_json(action.parameters), 1000 - len(action.catalog_key)),
            inline=False,
        ),
        EmbedField(name=words.HOST, value=f"`{action.host}`", inline=True),
        EmbedField(
            name=words.APPROVED if decision.decision == "approve" else words.DECISION,
            value=words.decided_text(decision)[:1024],
            inline=True,
        ),
        EmbedField(name=words.JOB, value=job[:1024], inline=True),
        EmbedField(name=words.JOB_STATE, value=state, inline=True),
        EmbedField(
            name=words.DURATION,
            value="-" if duration_s is None else f"{duration_s:.1f} s",
            inline=True,
        ),
        EmbedField(
            name=words.METRIC_BEFORE_AFTER,
            value="\n".join(verification.recheck.metric_lines())[:1024],
            inline=False,
        ),
        EmbedField(
            name=words.verdict_label(verdict),
            value=words.verdict_text(full_explanation(verification), verification.recheck.detail)[
                :1024
            ],
        ),
        EmbedField(
            name=words.LAST_OUTPUT, value=quoted(output_tail[-900:] or words.NO_OUTPUT, 950)
        ),
    ]
    return Embed(
        title=words.result_title(verdict, action, job_state, succeeded)[:256],
        color=VERDICT_COLORS[verdict],
        fields=fields,
        footer=words.reminder_footer(action),
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
