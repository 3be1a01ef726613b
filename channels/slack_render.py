"""Channel-neutral messages (`core.messages`) as Slack Block Kit: pure, no I/O.

Every message kind has its renderer here, each degrading to a plain-text message
(`channels.slack_blocks.degrades`); every word comes from `core.words`. Everything that is
not this module's own markup is escaped (`channels.slack_blocks`), so nothing in data can
ping; approvers are shown as their ids in code spans, never as `<@…>` mentions. The
deadline is a `<!date^…>` each reader sees in their own zone, with the UTC time as its
fallback; the approval card links the run's page in the Prefect UI with a button.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from channels.slack_blocks import (
    BLOCKS_MAX,
    Block,
    SlackMessage,
    chunks,
    code,
    context,
    date,
    degrades,
    escape,
    field_sections,
    fill,
    header,
    labelled,
    link,
    link_button,
    listing,
    mark,
    message,
    plain,
    quoted,
    section,
)
from core import words
from core.analysis import ManualIssue
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
    investigate_by_hand,
)
from core.models import Issue
from core.notice import Moment, Notice, Part, Quoted
from core.params import parameters_inline, parameters_json
from core.policy import Policy, RiskLevel
from core.records import Decision
from core.summary import AttemptDetail
from core.verify import Verification, full_explanation
from core.vetting import AttemptRecord, ProposedAction
from core.wire import JobState

CHANNEL = "Slack"
OPEN_RUN = "open_prefect_run"  # the link button's action_id (no interactivity needed)


def _cycle(cycle_id: str) -> Block:
    return context(plain(f"cycle {cycle_id}", 300))


def _utc(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


# --- notices ------------------------------------------------------------------------------
def moment(at: Moment) -> str:
    """Relative for every reader ("in 5 minutes"), and the UTC time beside it."""
    return f"{date(at.at, '{ago}')} ({at.at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC)"


def mrkdwn_pieces(parts: Sequence[Part]) -> list[str]:
    """A notice's parts as escaped mrkdwn (untrusted text only inside code blocks)."""
    out = []
    for p in parts:
        if isinstance(p, Quoted):
            out.append(quoted(p.text, min(p.limit, 2800)))
        elif isinstance(p, Moment):
            out.append(moment(p))
        else:
            out.append(fill(p))
    return out


@degrades("notice")
def notice_message(notice: Notice) -> SlackMessage:
    texts = chunks(mrkdwn_pieces(notice.text), sep="")
    blocks = [header(notice.title), *(section(t) for t in texts[: BLOCKS_MAX - 2])]
    if notice.cycle_id:
        blocks.append(_cycle(notice.cycle_id))
    return message(notice.title, blocks)


# --- the approval card and its reminder ---------------------------------------------------
def approvers_text(approvers: Approvers) -> str:
    """Who may approve, as ids in code spans: shown, never pinged."""
    who = [code(u, 40) for u in approvers.user_ids]
    who += [f"{code(g, 40)} (user group)" for g in approvers.role_ids]
    if who:
        return ", ".join(who)
    if approvers.any_member:
        return escape(words.ANY_MEMBER)
    return escape(words.nobody_may_approve(CHANNEL))


def _evidence(action: ProposedAction) -> str:
    # Summaries carry label values from the hosts (unit names, mountpoints): data.
    lines = [f"• {i.summary or i.fingerprint}" for i in action.issues[:10]]
    return quoted("\n".join(lines), 1000) if lines else "-"


def _history(records: Sequence[AttemptRecord]) -> str:
    if not records:
        return escape(words.NO_EARLIER_ATTEMPTS)
    return plain("\n".join(f"{r.at:%Y-%m-%d %H:%M} UTC: {r.outcome}" for r in records[-5:]), 1900)


@degrades("approval request")
def approval_message(
    action: ProposedAction,
    level: RiskLevel,
    *,
    deadline: datetime,
    approvers: Approvers,
    history: Sequence[AttemptRecord],
    ui_url: str | None,
) -> SlackMessage:
    """The approval request (people react ✅ or ❌)."""
    outcome = deadline_outcome(level, action)
    blocks: list[Block] = [
        header(words.approval_title(level, action)),
        *field_sections(
            [
                labelled(words.HOST, code(action.host)),
                labelled(words.RISK, plain(words.risk_text(level, action), 500)),
                labelled(words.ACTION, code(action.catalog_key)),
            ]
        ),
        section(labelled(words.PARAMETERS, quoted(parameters_json(action.parameters), 900))),
        section(labelled(words.EVIDENCE, _evidence(action))),
        section(labelled(words.REASON, quoted(action.reason or "-", 900))),
        section(labelled(words.EXPECTED, quoted(action.expected_outcome or "-", 900))),
        *field_sections(
            [
                labelled(words.HISTORY, _history(history)),
                labelled(words.WHO_MAY_APPROVE, approvers_text(approvers)),
            ]
        ),
    ]
    if action.notes:
        blocks.append(section(labelled(words.POLICY_NOTES, plain("\n".join(action.notes), 2000))))
    deadline_text = fill(words.deadline_then(mark("when"), outcome), when=date(deadline))
    blocks.append(
        context(
            f"*{escape(words.DEADLINE)}:* {deadline_text}",
            plain(words.approval_footer(action), 500),
        )
    )
    button = link_button(words.OPEN_IN_PREFECT, ui_url, OPEN_RUN) if ui_url else None
    if button is not None:
        blocks.append(button)
    text = (
        f"{words.approval_title(level, action)} "
        f"{words.DEADLINE}: {words.deadline_then(_utc(deadline), outcome)}"
    )
    return message(text, blocks)


# --- the request once decided ------------------------------------------------------------
OUTCOME_BLOCK_ID = "remediation_outcome"  # found and replaced by a later edit, never doubled


def outcome_section(text: str) -> Block:
    """The outcome line ("✅ Approved by alice") in bold; the decider's name is data."""
    return {**section(fill(f"**{text}**")), "block_id": OUTCOME_BLOCK_ID}


def decided_card(blocks: Sequence[Block], text: str) -> SlackMessage:
    """The request's card (its blocks as Slack returned them) showing its outcome: a
    section right after the header, every other block kept, except its actions (the
    link button: nothing is left to decide) and an outcome shown by an earlier edit."""
    kept = [
        b for b in blocks if b.get("type") != "actions" and b.get("block_id") != OUTCOME_BLOCK_ID
    ]
    at = 1 if kept and kept[0].get("type") == "header" else 0
    return message(text, [*kept[:at], outcome_section(text), *kept[at:]])


def outcome_only(text: str, action_id: str, risk: str) -> SlackMessage:
    """The request showing only its outcome (when its card could not be read back)."""
    return message(
        text, [outcome_section(text), context(plain(f"action {action_id} · {risk} risk", 500))]
    )


def outcome_reply(text: str) -> SlackMessage:
    """The outcome as a short reply in the request's thread (an edit notifies no one)."""
    return message(text, [section(fill(f"**{text}**"))])


@degrades("approval reminder")
def reminder_message(
    action: ProposedAction,
    level: RiskLevel,
    *,
    deadline: datetime,
    approvals: Sequence[str] = (),
) -> SlackMessage:
    """The one reminder before the deadline, in the request's thread (the request is the
    thread's first message: "the request above")."""
    outcome = deadline_outcome(level, action)
    said = words.reminder_text(
        level, outcome, approvals, when=mark("when"), where=words.THE_REQUEST_ABOVE
    )
    blocks = [
        header(words.reminder_title(action)),
        section(fill(said, when=date(deadline))),
        context(plain(words.reminder_footer(action), 500)),
    ]
    plain_said = words.reminder_text(
        level, outcome, approvals, when=_utc(deadline), where=words.THE_REQUEST_ABOVE
    )
    return message(f"{words.reminder_title(action)} {plain_said}", blocks)


# --- an action's result -------------------------------------------------------------------
@degrades("action result")
def result_message(
    *,
    action: ProposedAction,
    decision: Decision,
    job_id: str | None,
    job_url: str | None,
    job_state: JobState,
    duration_s: float | None,
    verification: Verification,
    output_tail: str,
) -> SlackMessage:
    """The structured result of one action."""
    verdict = verification.verdict
    job = code(job_id) if job_id else "-"
    if job_url:
        job += f" ({link(job_url, words.OPEN)})"
    succeeded = job_state == JobState.SUCCESSFUL
    state = escape(str(job_state)) if succeeded else f"*{escape(str(job_state))}*"
    title = words.result_title(verdict, action, job_state, succeeded)
    blocks = [
        header(title),
        section(
            labelled(
                words.ACTION,
                f"{code(action.catalog_key)} {code(parameters_json(action.parameters), 1500)}",
            )
        ),
        *field_sections(
            [
                labelled(words.HOST, code(action.host)),
                labelled(
                    words.APPROVED if decision.decision == "approve" else words.DECISION,
                    plain(words.decided_text(decision), 1000),
                ),
                labelled(words.JOB, job),
                labelled(words.JOB_STATE, state),
                labelled(words.DURATION, "-" if duration_s is None else f"{duration_s:.1f} s"),
            ]
        ),
        section(
            labelled(
                words.METRIC_BEFORE_AFTER,
                plain("\n".join(verification.recheck.metric_lines()), 2000) or "-",
            )
        ),
        section(
            labelled(
                words.verdict_label(verdict),
                plain(
                    words.verdict_text(full_explanation(verification), verification.recheck.detail),
                    2000,
                ),
            )
        ),
        section(labelled(words.LAST_OUTPUT, quoted(output_tail[-900:] or words.NO_OUTPUT, 950))),
        context(plain(words.reminder_footer(action), 500)),
    ]
    return message(title, blocks)


# --- the cycle summary and the escalation -------------------------------------------------
@degrades("workflow-complete summary")
def cycle_summary_message(cycle_id: str, rows: Sequence[Mapping[str, str]]) -> SlackMessage:
    title = words.cycle_summary_title(len(rows))
    tally = words.verdict_tally(rows)
    head = [header(title), *([section(escape(tally))] if tally else [])]
    fields = [
        labelled(
            words.summary_row_name(r),
            fill(
                words.summary_row_text(r, verdict=mark("verdict")),
                verdict=f"*{escape(r['verdict'])}*",
            ),
        )
        for r in rows
    ]
    items = [(s, len(s["fields"])) for s in field_sections(fields)]
    blocks = listing(head, items, [_cycle(cycle_id)], more=words.more_actions_not_listed)
    return message(f"{title} {tally or ''}", blocks)


@degrades("escalation")
def escalation_message(
    issue: Issue, history: Sequence[AttemptDetail], policy: Policy, *, cycle_id: str
) -> SlackMessage:
    """The issue as a manual issue: automatic remediation gave up, here is what it tried."""
    counted = [a for a in history if a.counts]
    lines = [
        f"{a.at.isoformat(timespec='seconds')}  {a.catalog_key:<16} {a.outcome:<12} "
        f"{a.explanation[:120]}"
        for a in history[-10:]
    ]
    title = words.escalation_title(issue)
    blocks = [
        header(title),
        section(escape(words.escalation_text(len(counted), policy))),
        *field_sections(
            [labelled(words.HOST, code(issue.host)), labelled(words.ISSUE, code(issue.fingerprint))]
        ),
        section(labelled(words.NOW_LABEL, plain(issue.summary or "-", 2000))),
        section(labelled(words.ATTEMPT_HISTORY, quoted("\n".join(lines) or "-", 2000))),
        _cycle(cycle_id),
    ]
    return message(title, blocks)


# --- the cycle's listings -----------------------------------------------------------------
@degrades("cycle summary")
def proposal_summary_message(
    summary: str, actions: Sequence[ProposedAction], *, cycle_id: str
) -> SlackMessage:
    """The analysis' summary and the actions it proposes, before each is asked."""
    title = words.proposal_summary_title(len(actions))
    lines = []
    for i, a in enumerate(actions, 1):
        line = fill(
            words.proposal_line(i, a, key=mark("key"), host=mark("host")),
            key=code(a.catalog_key, 200),
            host=f"*{plain(a.host, 200)}*",
        )
        if a.parameters:
            line += f" ({code(parameters_inline(a.parameters), 120)})"
        lines.append(line)
    texts = chunks(lines)
    head = [header(title), *([section(quoted(summary, 1500))] if summary else [])]
    room = BLOCKS_MAX - len(head) - 1
    if len(texts) > room:  # the rest is counted, never cut silently
        shown = texts[: room - 1]
        listed = sum(t.count("\n") + 1 for t in shown)
        texts = [*shown, escape(words.more_proposals(len(actions) - listed))]
    blocks = [
        *head,
        *(section(t) for t in texts),
        context(plain(words.proposal_summary_footer(cycle_id), 500)),
    ]
    return message(title, blocks)


def _manual_item(m: ManualIssue) -> str:
    text = labelled(words.manual_issue_name(m), quoted(m.problem, 500))
    if m.recommendation:
        text += f"\n{escape(words.RECOMMENDATION)}\n{quoted(m.recommendation, 400)}"
    return text


def _manual_blocks(
    title: str, intro: str, manual: Sequence[ManualIssue], cycle_id: str
) -> list[Block]:
    head = [header(title), section(intro)]
    return listing(head, [(section(_manual_item(m)), 1) for m in manual], [_cycle(cycle_id)])


@degrades("manual-issues message")
def manual_issues_message(manual: Sequence[ManualIssue], *, cycle_id: str) -> SlackMessage:
    """One message listing every manual issue."""
    title = words.manual_issues_title(len(manual))
    return message(title, _manual_blocks(title, escape(words.MANUAL_ISSUES_TEXT), manual, cycle_id))


@degrades("analysis-unavailable message")
def analysis_unavailable_message(
    issues: Sequence[Issue], *, reason: str, excerpt: str, cycle_id: str
) -> SlackMessage:
    """Every issue posted as a manual issue, marked "analysis unavailable"."""
    manual = investigate_by_hand(issues)
    title = words.analysis_unavailable_title(words.manual_issues_title(len(manual)))
    note = plain(words.analysis_unavailable_note(reason), 1500)
    if excerpt:
        note += f"\n{escape(words.EXCERPT_OF_ANSWER)}\n" + quoted(excerpt, 600)
    return message(title, _manual_blocks(title, note, manual, cycle_id))


def _line_chunks(lines: Sequence[str], limit: int = 550) -> list[list[str]]:
    """Lines in consecutive chunks of at most `limit` characters (a longer line alone)."""
    out: list[list[str]] = []
    for line in lines:
        if out and sum(len(x) + 1 for x in out[-1]) + len(line) <= limit:
            out[-1].append(line)
        else:
            out.append([line])
    return out


@degrades("no-action-needed message")
def no_action_needed_message(
    items: Sequence[tuple[Issue, str]], *, summary: str, cycle_id: str
) -> SlackMessage:
    """The issues the analysis said need no action, each named under its reason."""
    by_reason: dict[str, list[str]] = {}
    for issue, reason in items:
        by_reason.setdefault(reason, []).append(issue.fingerprint)
    entries = [
        (
            section(
                labelled(words.no_action_field(len(chunk)), quoted("\n".join(chunk), 1200))
                + f"\n{escape(words.WHY)}\n"
                + quoted(reason, 800)
            ),
            len(chunk),
        )
        for reason, fps in by_reason.items()
        for chunk in _line_chunks(fps)
    ]
    intro = escape(words.NO_ACTION_TEXT)
    if summary:
        intro += f"\n{escape(words.ANALYSIS_SUMMARY)}\n" + quoted(summary, 800)
    title = words.no_action_title(len(items))
    return message(title, listing([header(title), section(intro)], entries, [_cycle(cycle_id)]))


@degrades("not-addressed message")
def not_addressed_message(
    issues: Sequence[Issue], *, notes: Sequence[str], cycle_id: str
) -> SlackMessage:
    """Issues the analysis did not mention at all: a human looks at them."""
    by_host: dict[str, list[str]] = {}
    for i in issues:
        by_host.setdefault(i.host, []).append(words.unaddressed_line(i))
    entries = [
        (
            section(labelled(words.host_issues(host, len(chunk)), quoted("\n".join(chunk), 2000))),
            len(chunk),
        )
        for host, lines in by_host.items()
        for chunk in _line_chunks(lines)
    ]
    intro = escape(words.NOT_ADDRESSED_TEXT)
    if notes:
        intro += f"\n{escape(words.READER_NOTES)}\n" + quoted("\n".join(notes), 800)
    title = words.not_addressed_title(len(issues))
    return message(title, listing([header(title), section(intro)], entries, [_cycle(cycle_id)]))


def render(message: ChatMessage) -> SlackMessage:
    """The Slack message of one channel-neutral message."""
    match message:
        case Notice():
            return notice_message(message)
        case ApprovalCard():
            return approval_message(
                message.action,
                message.level,
                deadline=message.deadline,
                approvers=message.approvers,
                history=message.history,
                ui_url=message.ui_url,
            )
        case Reminder():
            return reminder_message(
                message.action,
                message.level,
                deadline=message.deadline,
                approvals=message.approvals,
            )
        case ResultCard():
            return result_message(
                action=message.action,
                decision=message.decision,
                job_id=message.job_id,
                job_url=message.job_url,
                job_state=message.job_state,
                duration_s=message.duration_s,
                verification=message.verification,
                output_tail=message.output_tail,
            )
        case ProposalSummary():
            return proposal_summary_message(
                message.summary, message.actions, cycle_id=message.cycle_id
            )
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
            return not_addressed_message(
                message.issues, notes=message.notes, cycle_id=message.cycle_id
            )
        case CycleSummary():
            return cycle_summary_message(message.cycle_id, message.rows)
        case Escalation():
            return escalation_message(
                message.issue, message.history, message.policy, cycle_id=message.cycle_id
            )
    raise TypeError(f"no Slack rendering for {type(message).__name__}")
