"""Discord messages of the cycle: manual issues, the multi-action summary and notices.

Untrusted text (anything that came from hosts, logs or the model) is shown as quoted
data in code blocks; the client always sends `allowed_mentions: {parse: []}`, so nothing
rendered here can ping anyone.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.analysis import ManualIssue
from core.fallback import degrades
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
                name=f"{m.host} · {m.severity}"[:256],
                value=(
                    quoted(m.problem, 500)
                    + (
                        f"Recommendation:\n{quoted(m.recommendation, 400)}"
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
                title=f"📋 {len(manual)} issue(s) need a human{part}",
                description="These were not remediated automatically." if n == 1 else None,
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
        line = f"{i}. `{a.catalog_key}` on **{a.host}** — risk {a.risk.value}"
        if a.parameters:
            line += f" ({code_span(parameters_inline(a.parameters), 120)})"
        if len(text) + len(line) + 80 > 4096:  # the rest is counted, never cut silently
            text += f"… and {len(actions) - i + 1} more (each is asked for below)"
            break
        text += line + "\n"
    return Embed(
        title=f"📊 {len(actions)} remediation actions proposed",
        description=text.rstrip("\n"),
        color=BLUE,
        footer=f"cycle {cycle_id} · each action is approved separately below",
    )


@degrades("analysis-unavailable message", "embeds")
def analysis_unavailable_message(
    issues: Sequence[Issue], *, reason: str, excerpt: str, cycle_id: str
) -> list[Embed]:
    """Every issue posted as a manual issue, marked "analysis unavailable"."""
    manual = [
        ManualIssue(
            host=i.host,
            problem=i.summary or i.fingerprint,
            severity=i.severity.value,
            recommendation="Investigate by hand.",
            source="analysis_unavailable",
        )
        for i in issues
    ]
    embeds = manual_issues_message(manual, cycle_id=cycle_id)
    first = embeds[0]
    note = f"⚠️ Analysis unavailable: {reason}"
    if excerpt:
        note += "\nExcerpt of the answer:\n" + quoted(excerpt, 600)
    embeds[0] = first.model_copy(
        update={
            "title": "⚠️ " + (first.title or "").removeprefix("📋 "),
            "description": note[:4096],
            "color": RED,
        }
    )
    return embeds


def notice_message(
    title: str, text: str, *, cycle_id: str | None = None, color: int = RED
) -> Embed:
    return Embed(
        title=title[:256],
        description=text[:4096],
        color=color,
        footer=f"cycle {cycle_id}" if cycle_id else None,
    )


def ledger_unavailable_message(error: object, cycle_id: str) -> Embed:
    """The cycle could not reach its ledger: it stops before detecting anything."""
    return notice_message(
        "⚠️ Ledger unavailable — remediation cycle skipped",
        "The cycle could not write to its ledger, so it stopped before detecting anything: "
        "without the ledger it can neither deduplicate nor record what it does. This "
        "notice repeats every cycle until the ledger answers.\n" + quoted(str(error), 1500),
        cycle_id=cycle_id,
    )
