"""What the pipeline posted in the sandbox chat(s), read back for the demo's summary.

Read from each sandbox's control API after the run, as a person scrolling the channel
would see it: every approval request with the text it was edited to (who decided, how),
the reactions on it, and — in Slack — the replies in its thread; the other top-level
posts (cycle summary, manual issues); and the sandbox's record of anything that would
have notified someone (it must be empty). Shown only when the demo asks in Slack (the
Discord-only demo's summary is unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from sandbox.demo_operator import TITLE, slack_title


@dataclass
class Posted:
    """One top-level message and what became of it."""

    title: str
    text: str = ""
    edits: int = 0
    reactions: dict[str, list[str]] = field(default_factory=dict)  # emoji -> names
    thread: list[str] = field(default_factory=list)  # titles of the replies

    @property
    def is_request(self) -> bool:
        return TITLE.search(self.title) is not None


@dataclass
class ChannelRecord:
    title: str
    posts: list[Posted]
    pings: int | None = None  # None: this sandbox keeps no such record

    def lines(self) -> list[str]:
        out = [f"{self.title}, as posted:"]
        for post in (p for p in self.posts if p.is_request):
            out.append(f"  {post.title}")
            if post.edits:
                out.append(f"    edited to: {post.text}")
            votes = "; ".join(f"{e} {', '.join(who)}" for e, who in post.reactions.items())
            out.append(f"    reactions: {votes or '-'}")
            for reply in post.thread:
                out.append(f"    thread: {reply}")
        others = [p.title for p in self.posts if not p.is_request]
        if others:
            out.append("  other posts: " + " | ".join(others))
        if self.pings is not None:
            out.append(f"  mentions that would notify someone: {self.pings}")
        return out


def _names(people: list[dict[str, Any]], ids: list[str]) -> list[str]:
    by_id = {p["id"]: p["name"] for p in people}
    return [by_id.get(i, i) for i in ids]


def slack_record(sandbox: dict[str, Any], http: httpx.Client) -> ChannelRecord:
    base = sandbox["urls"]["slack"].rstrip("/").removesuffix("/api")
    info = sandbox["slack"]
    people = [*info["people"], *info.get("bots", [])]
    answer = http.get(f"{base}/_control/messages", params={"channel": info["channel_id"]})
    answer.raise_for_status()
    messages = [m for m in answer.json() if not m.get("deleted")]
    replies: dict[str, list[str]] = {}
    posts: dict[str, Posted] = {}
    for m in messages:
        if m.get("thread_ts") not in (None, m["ts"]):
            replies.setdefault(m["thread_ts"], []).append(slack_title(m))
            continue
        first = m["edits"][0] if m.get("edits") else m
        posts[m["ts"]] = Posted(
            title=slack_title(first),
            text=m["text"],
            edits=len(m.get("edits") or []),
            reactions={
                f":{name}:": _names(people, who) for name, who in (m.get("reactions") or {}).items()
            },
        )
    for ts, titles in replies.items():
        if ts in posts:
            posts[ts].thread = titles
    pings = http.get(f"{base}/_control/pings")
    pings.raise_for_status()
    return ChannelRecord(f"Slack #{info['channel_id']}", list(posts.values()), len(pings.json()))


def discord_record(sandbox: dict[str, Any], http: httpx.Client) -> ChannelRecord:
    base = sandbox["urls"]["discord"].removesuffix("/api/v10")
    info = sandbox["discord"]
    people = [*info["people"], *info.get("bots", [])]
    answer = http.get(f"{base}/_control/channels/{info['channel_id']}/messages")
    answer.raise_for_status()
    posts = []
    for m in answer.json():
        if m.get("deleted"):
            continue
        first = m["history"][0] if m.get("history") else m
        title = ((first.get("embeds") or [{}])[0] or {}).get("title") or first.get("content")
        reactions = {e: _names(people, who) for e, who in (m.get("reactions") or {}).items()}
        posts.append(
            Posted(
                title=str(title or ""),
                text=m.get("content") or "",
                edits=len(m.get("history") or []),
                reactions=reactions,
            )
        )
    pings = sum(len(m.get("pings") or []) for m in answer.json())
    return ChannelRecord(f"Discord #{info['channel_id']}", posts, pings)


RECORDS = {"discord": discord_record, "slack": slack_record}


def chat_lines(sandbox: dict[str, Any], channels: tuple[str, ...]) -> list[str]:
    """The summary's account of every channel the demo asked in."""
    out: list[str] = []
    with httpx.Client(timeout=10.0) as http:
        for name in channels:
            out += RECORDS[name](sandbox, http).lines()
    return out
