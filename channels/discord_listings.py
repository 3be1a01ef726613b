"""Discord embeds of the cycle's listings: manual issues, the multi-action summary, the
issues that need no action or were not addressed (words from `core.words`).

Untrusted text (anything that came from hosts, logs or the model) is shown as quoted
data in code blocks; the client always sends `allowed_mentions: {parse: []}`, so nothing
rendered here can ping anyone.
"""

from __future__ import annotations

from collections.abc import Sequence

from channels.discord_fallback import degrades
from core import words
from core.analysis import ManualIssue
from core.messages import investigate_by_hand
from core.models import Issue
from core.params import code_span, parameters_inline
from core.vetting import ProposedAction
from core.wire import Embed, EmbedField

GREY, BLUE, ORANGE, RED, GREEN = 0x95A5A6, 0x3498DB, 0xE67E22, 0xE74C3C, 0x2ECC71
MAX_FIELDS = 25


def quoted(text: str, limit: int = 900) -> str:
    """Text as an inert code block (backtick fences inside cannot break out)."""
    text = text.replace("```", "ʼʼʼ")
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"```text\n{text}\n```"


def _chunks(items: Sequence, size: int) -> list[Sequence]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


@degrades("manual-issues message", "embeds")
def manual_issues_message(manual: Sequence[ManualIssue], *, cycle_id: str) -> list[Embed]:
    """One message listing every manual issue (several embeds when there are many)."""
    embeds = []
    chunks = _chunks(list(manual), MAX_FIELDS)
    for n, chunk in enumerate(chunks, 1):
        fields = [
            EmbedField(
                name=words.manual_issue_name(m)[:256],
                value=(
                    quoted(m.problem, 500)
                    + (
                        f"{words.RECOMMENDATION}\n{quoted(m.recommendation, 400)}"
                        if m.recommendation
                        else ""
                    )
                )[:1024],
            )
            for m in chunk
        ]
        part = f" ({n}/{len(chunks)})" if len(chunks) > 1 else ""
        embeds.append(
            Embed(
                title=words.manual_issues_title(len(manual)) + part,
                description=words.MANUAL_ISSUES_TEXT if n == 1 else None,
                color=ORANGE,
                fields=fields,
                footer=f"cycle {cycle_id}",
            )
        )
    return embeds[:10]


@degrades("cycle summary", "embed")
def summary_message(summary: str, actions: Sequence[ProposedAction], *, cycle_id: str) -> Embed:
    """The chart's "Post Summary": sent before dispatch when there is more than one action.
    Parameters of every catalog type are shown by `core.params`, as data in code spans."""
    text = quoted(summary, 1500) if summary else ""
    for i, a in enumerate(actions, 1):
        line = words.proposal_line(i, a, key=f"`{a.catalog_key}`", host=f"**{a.host}**")
        if a.parameters:
            line += f" ({code_span(parameters_inline(a.parameters), 120)})"
        if len(text) + len(line) + 80 > 4096:  # the rest is counted, never cut silently
            text += words.more_proposals(len(actions) - i + 1)
            break
        text += line + "\n"
    return Embed(
        title=words.proposal_summary_title(len(actions)),
        description=text.rstrip("\n"),
        color=BLUE,
        footer=words.proposal_summary_footer(cycle_id),
    )


@degrades("analysis-unavailable message", "embeds")
def analysis_unavailable_message(
    issues: Sequence[Issue], *, reason: str, excerpt: str, cycle_id: str
) -> list[Embed]:
    """Every issue posted as a manual issue, marked "analysis unavailable"."""
    manual = investigate_by_hand(issues)
    embeds = manual_issues_message(manual, cycle_id=cycle_id)
    first = embeds[0]
    note = words.analysis_unavailable_note(reason)
    if excerpt:
        note += f"\n{words.EXCERPT_OF_ANSWER}\n" + quoted(excerpt, 600)
    embeds[0] = first.model_copy(
        update={
            "title": words.analysis_unavailable_title(first.title or ""),
            "description": note[:4096],
            "color": RED,
        }
    )
    return embeds


# --- issue coverage: "no action needed" and "not addressed by the analysis" ---------------
EMBEDS_MAX = 10
EMBED_BUDGET = 5800  # Discord allows 6,000 characters over all embeds of one message
FIELD_LINES_MAX = 550  # characters of listed issues per field (a field holds 1,024)


def _line_chunks(lines: Sequence[str], limit: int = FIELD_LINES_MAX) -> list[list[str]]:
    """Lines in consecutive chunks of at most `limit` characters (a longer line alone)."""
    chunks: list[list[str]] = []
    size = limit + 1
    for line in lines:
        if size + len(line) + 1 > limit:
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += len(line) + 1
    return chunks


def _listing(
    title: str,
    description: str,
    fields: Sequence[tuple[EmbedField, int]],
    *,
    color: int,
    cycle_id: str,
) -> list[Embed]:
    """Fields (each listing a number of issues) packed into one message within Discord's
    limits (25 fields an embed, 10 embeds, 6,000 characters); the issues that do not fit
    are counted in the text, never cut silently."""
    footer = f"cycle {cycle_id}"
    per_embed = len(title) + 10 + len(footer)  # the title with its "(n/m)", the footer
    budget = EMBED_BUDGET - len(description) - 120  # room for the "and N more" line
    chunks: list[list[EmbedField]] = [[]]
    used, left = per_embed, 0
    for n, (f, _count) in enumerate(fields):
        size = len(f.name) + len(f.value)
        if len(chunks[-1]) == MAX_FIELDS:
            if len(chunks) == EMBEDS_MAX or used + per_embed + size > budget:
                left = sum(c for _, c in fields[n:])
                break
            chunks.append([])
            used += per_embed
        if used + size > budget:
            left = sum(c for _, c in fields[n:])
            break
        chunks[-1].append(f)
        used += size
    if left:
        description += "\n" + words.more_issues_not_listed(left)
    return [
        Embed(
            title=(title + (f" ({n}/{len(chunks)})" if len(chunks) > 1 else ""))[:256],
            description=description[:4096] if n == 1 else None,
            color=color,
            fields=chunk,
            footer=footer,
        )
        for n, chunk in enumerate(chunks, 1)
    ]


@degrades("no-action-needed message", "embeds")
def no_action_needed_message(
    items: Sequence[tuple[Issue, str]], *, summary: str, cycle_id: str
) -> list[Embed]:
    """The issues the analysis said need no action, each named under its reason."""
    by_reason: dict[str, list[str]] = {}
    for issue, reason in items:
        by_reason.setdefault(reason, []).append(issue.fingerprint)
    fields = [
        (
            EmbedField(
                name=words.no_action_field(len(chunk)),
                value=(quoted("\n".join(chunk), 600) + f"{words.WHY}\n" + quoted(reason, 380))[
                    :1024
                ],
            ),
            len(chunk),
        )
        for reason, fps in by_reason.items()
        for chunk in _line_chunks(fps)
    ]
    description = words.NO_ACTION_TEXT
    if summary:
        description += f"\n{words.ANALYSIS_SUMMARY}\n" + quoted(summary, 800)
    return _listing(
        words.no_action_title(len(items)),
        description,
        fields,
        color=GREEN,
        cycle_id=cycle_id,
    )


@degrades("not-addressed message", "embeds")
def unaddressed_issues_message(
    issues: Sequence[Issue], *, notes: Sequence[str], cycle_id: str
) -> list[Embed]:
    """Issues the analysis did not mention at all: a human looks at them."""
    by_host: dict[str, list[str]] = {}
    for i in issues:
        line = words.unaddressed_line(i)
        by_host.setdefault(i.host, []).append(line)
    fields = [
        (
            EmbedField(
                name=words.host_issues(host, len(chunk))[:256],
                value=quoted("\n".join(chunk), 900),
            ),
            len(chunk),
        )
        for host, lines in by_host.items()
        for chunk in _line_chunks(lines)
    ]
    description = words.NOT_ADDRESSED_TEXT
    if notes:
        description += f"\n{words.READER_NOTES}\n" + quoted("\n".join(notes), 800)
    return _listing(
        words.not_addressed_title(len(issues)),
        description,
        fields,
        color=ORANGE,
        cycle_id=cycle_id,
    )
