"""Slack Block Kit pieces, escaped and within Slack's limits: pure, no I/O.

Slack has no `allowed_mentions`: `<!channel>`, `<!here>`, `<@U…>` or `<!subteam^…>` in any
text Slack reads would notify people. So every string this module is given as text is
escaped (`&`, `<`, `>`), and markup (`<!date^…>` timestamps, `<url|label>` links) is only
ever written by the functions here, around already-escaped text. The renderers
(`channels.slack_render`) build text from `core.words` with `mark`s where markup goes,
and `fill` escapes the words and puts the markup in.

Limits: 50 blocks a message, 3,000 characters of section text, 2,000 a section field and
10 fields a section, 150 of header text, 75 of button text; the plain `text` (the
notification and fallback) is kept short.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ParamSpec

from pydantic import Field

from core import fallback, words
from core.models import Frozen
from core.params import ELLIPSIS, inline

P = ParamSpec("P")
BLOCKS_MAX, SECTION_MAX, FIELD_MAX, FIELDS_MAX = 50, 3000, 2000, 10
HEADER_MAX, BUTTON_MAX, CONTEXT_MAX, URL_MAX = 150, 75, 10, 3000
TEXT_MAX = 3000  # of 40,000: Slack truncates long texts well before; detail goes in blocks
Block = dict[str, Any]


class SlackMessage(Frozen):
    """One Slack message: the plain `text` (notifications, fallback) and its blocks."""

    text: str
    blocks: list[Block]
    notice: str | None = Field(default=None, description="Set when the fallback was used.")


# --- escaping -----------------------------------------------------------------------------
def escape(text: str) -> str:
    """Text Slack shows as it is: `&`, `<` and `>` as entities (nothing can ping or link)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def trim(markup: str, limit: int) -> str:
    """Escaped text or markup cut to `limit` characters with "…", never inside an entity
    or a `<…>` token (a cut token would show its raw insides)."""
    if len(markup) <= limit:
        return markup
    head = markup[: max(limit - 1, 0)]
    for start, end in (("&", ";"), ("<", ">")):
        at = head.rfind(start)
        if at != -1 and end not in head[at:]:
            head = head[:at]
    return head + ELLIPSIS


def plain(text: str, limit: int) -> str:
    """Untrusted or trusted text, escaped, at most `limit` characters."""
    return trim(escape(text), limit)


def bold_markdown(text: str) -> str:
    """`core.words`' Discord-style `**bold**` as Slack's `*bold*`."""
    return re.sub(r"\*\*(.+?)\*\*", r"*\1*", text)


def mark(name: str) -> str:
    """A place for markup in words that are escaped afterwards (see `fill`)."""
    return f"\ue000{name}\ue001"


def fill(text: str, **markup: str) -> str:
    """`text` (words with data in them) escaped as mrkdwn, with each `mark(name)` replaced
    by its already-safe `markup`."""
    out = bold_markdown(escape(text))
    for name, value in markup.items():
        out = out.replace(mark(name), value)
    return out


def code(text: str, limit: int = 1000) -> str:
    """`text` as an inline code span, escaped (no backticks or line breaks inside)."""
    return f"`{plain(inline(text), max(limit - 2, 1)) or '(empty)'}`"


def quoted(text: str, limit: int = 900) -> str:
    """Text as an inert code block, escaped (backtick fences inside cannot break out)."""
    return f"```\n{plain(text.replace('```', 'ʼʼʼ'), limit)}\n```"


def date(at: datetime, token: str = "{date_short_pretty} {time}") -> str:
    """A time every reader sees in their own zone; the UTC time where Slack cannot."""
    utc = f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    return f"<!date^{int(at.timestamp())}^{token}|{utc}>"


def link(url: str, label: str) -> str:
    """A link written here: the URL escaped and without `|`, the label escaped."""
    return f"<{escape(url).replace('|', '%7C')}|{plain(label, 200)}>"


def labelled(label: str, body: str) -> str:
    """A field's or section's bold label over its (already-safe) body."""
    return f"*{escape(label)}*\n{body}"


# --- blocks -------------------------------------------------------------------------------
def header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": plain(text, HEADER_MAX)}}


def section(markup: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": trim(markup or "-", SECTION_MAX)}}


def field_sections(fields: Sequence[str]) -> list[Block]:
    """Fields (already-safe mrkdwn) in sections of at most 10."""
    return [
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": trim(f or "-", FIELD_MAX)}
                for f in fields[i : i + FIELDS_MAX]
            ],
        }
        for i in range(0, len(fields), FIELDS_MAX)
    ]


def context(*elements: str) -> Block:
    return {
        "type": "context",
        "elements": [
            {"type": "mrkdwn", "text": trim(e, SECTION_MAX)} for e in elements[:CONTEXT_MAX]
        ],
    }


def link_button(label: str, url: str, action_id: str) -> Block | None:
    """An actions block with one link button (None when the URL is too long for Slack)."""
    if len(url) > URL_MAX:
        return None
    button = {"type": "plain_text", "text": plain(label, BUTTON_MAX)}
    return {
        "type": "actions",
        "elements": [{"type": "button", "text": button, "url": url, "action_id": action_id}],
    }


def chunks(pieces: Sequence[str], limit: int = SECTION_MAX, sep: str = "\n") -> list[str]:
    """Pieces of markup joined into texts of at most `limit` characters (a longer piece
    alone, trimmed)."""
    out: list[str] = []
    for piece in pieces:
        if out and len(out[-1]) + len(sep) + len(piece) <= limit:
            out[-1] += sep + piece
        else:
            out.append(trim(piece, limit))
    return out


def listing(
    head: Sequence[Block],
    items: Sequence[tuple[Block, int]],
    tail: Sequence[Block],
    *,
    more: Callable[[int], str] = words.more_issues_not_listed,
) -> list[Block]:
    """Item blocks (each listing a number of issues) between `head` and `tail` within 50
    blocks; the issues that do not fit are counted (`more`), never cut silently."""
    room = BLOCKS_MAX - len(head) - len(tail)
    shown = list(items) if len(items) <= room else list(items[: room - 1])
    left = sum(n for _, n in items[len(shown) :])
    counted = [section(escape(more(left)))] if left else []
    return [*head, *(b for b, _ in shown), *counted, *tail]


def message(text: str, blocks: Sequence[Block]) -> SlackMessage:
    return SlackMessage(text=plain(text, TEXT_MAX), blocks=list(blocks)[:BLOCKS_MAX])


# --- a message that cannot be rendered ----------------------------------------------------
def plain_fallback(what: str, exc: BaseException, args: Any, kwargs: Any) -> SlackMessage:
    """The renderer's inputs as inert text, and why (`core.fallback`)."""
    notice = fallback.failure_notice(what, exc)
    title = words.plain_fallback_title(what)
    blocks = [
        header(title),
        section("⚠️ " + plain(notice, 600)),
        section(quoted(fallback.plain_text(args, kwargs), 2800)),
    ]
    cycle_id = kwargs.get("cycle_id")
    if cycle_id:
        blocks.append(context(plain(f"cycle {cycle_id}", 200)))
    return SlackMessage(text=plain(title, TEXT_MAX), blocks=blocks, notice=notice)


def degrades(what: str) -> Callable[[Callable[P, SlackMessage]], Callable[P, SlackMessage]]:
    """Wrap a renderer so that an exception gives the plain fallback instead."""

    def wrap(render: Callable[P, SlackMessage]) -> Callable[P, SlackMessage]:
        @functools.wraps(render)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> SlackMessage:
            try:
                return render(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - a renderer bug degrades the message
                return plain_fallback(what, exc, args, kwargs)

        return guarded

    return wrap
