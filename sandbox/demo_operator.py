"""The simulated operator: people reacting in the sandbox Discord or Slack, a few seconds late.

It reads the approvals channel through each sandbox's control API, recognises approval
requests by their title ("🟢 Approve restart_unit on web-02? React ✅ or ❌": a Discord
embed's title, a Slack message's header), and reacts as the plan says
(`demo_profile.OPERATOR_PLAN`) through the control API, as the named sandbox user —
exactly what a person clicking a reaction produces. The listener then reads those
reactions over the Discord REST API or Slack's Web API like any others. With both
channels, each action is reacted to in one of them (`reacts_in`).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from sandbox.demo_profile import Reaction

TITLE = re.compile(r"Approve (?P<key>\S+) on (?P<host>\S+)\? React")
# What Slack's app sends when a person clicks ✅ or ❌: the emoji's name, not the character.
SLACK_EMOJI_NAMES = {"✅": "white_check_mark", "❌": "x"}


@dataclass(frozen=True)
class Request:
    message_id: str
    key: str
    host: str
    seen_at: float
    board: str = "discord"


class Board(Protocol):
    """One sandbox chat's approvals channel, as a person sees and clicks it."""

    name: str
    title: str

    async def titles(self, http: httpx.AsyncClient) -> list[tuple[str, str]]:
        """(message id, title) of every top-level message still there."""
        ...

    async def react(
        self, http: httpx.AsyncClient, message_id: str, emoji: str, user: str
    ) -> None: ...


class DiscordBoard:
    name, title = "discord", "Discord"

    def __init__(self, discord_url: str, channel_id: str) -> None:
        # the control API lives beside /api/v10 on the same server
        self.base = discord_url.removesuffix("/api/v10")
        self.channel_id = channel_id

    async def titles(self, http: httpx.AsyncClient) -> list[tuple[str, str]]:
        answer = await http.get(f"{self.base}/_control/channels/{self.channel_id}/messages")
        answer.raise_for_status()
        return [
            (m["id"], ((m.get("embeds") or [{}])[0] or {}).get("title") or "")
            for m in answer.json()
            if not m.get("deleted")
        ]

    async def react(self, http: httpx.AsyncClient, message_id: str, emoji: str, user: str) -> None:
        path = (
            f"{self.base}/_control/channels/{self.channel_id}/messages/{message_id}"
            f"/reactions/{quote(emoji)}/{quote(user)}"
        )
        answer = await http.put(path)
        answer.raise_for_status()


def slack_title(message: dict[str, Any]) -> str:
    """A Slack message's header block text (its `text` fallback when it has none)."""
    for block in message.get("blocks") or []:
        if block.get("type") == "header":
            return str((block.get("text") or {}).get("text") or "")
    return str(message.get("text") or "")


class SlackBoard:
    name, title = "slack", "Slack"

    def __init__(self, slack_api_base: str, channel_id: str) -> None:
        # the control API lives beside /api/ on the same server
        self.base = slack_api_base.rstrip("/").removesuffix("/api")
        self.channel_id = channel_id

    async def titles(self, http: httpx.AsyncClient) -> list[tuple[str, str]]:
        answer = await http.get(
            f"{self.base}/_control/messages", params={"channel": self.channel_id}
        )
        answer.raise_for_status()
        return [
            (m["ts"], slack_title(m))
            for m in answer.json()
            if not m.get("deleted") and m.get("thread_ts") in (None, m["ts"])
        ]

    async def react(self, http: httpx.AsyncClient, message_id: str, emoji: str, user: str) -> None:
        answer = await http.put(
            f"{self.base}/_control/reactions",
            json={
                "channel": self.channel_id,
                "ts": message_id,
                "name": SLACK_EMOJI_NAMES.get(emoji, emoji),
                "user": user,
            },
        )
        answer.raise_for_status()


def boards(sandbox: dict[str, Any], channels: Sequence[str]) -> list[Board]:
    """The approvals channel of each sandbox chat named (`python -m sandbox`'s state)."""
    kinds: dict[str, type[DiscordBoard] | type[SlackBoard]] = {
        "discord": DiscordBoard,
        "slack": SlackBoard,
    }
    return [kinds[n](sandbox["urls"][n], sandbox[n]["channel_id"]) for n in channels]


class SimulatedOperator:
    """Reacts to approval requests per plan; `run()` until cancelled."""

    def __init__(
        self,
        boards: Sequence[Board],
        plan: dict[tuple[str, str], tuple[Reaction, ...]],
        *,
        reacts_in: Callable[[str, str], str] | None = None,
        scale: float = 1.0,
        say: Callable[[str], None] = print,
    ) -> None:
        self.boards = {b.name: b for b in boards}
        self.plan = plan
        first = boards[0].name
        self.reacts_in = reacts_in or (lambda key, host: first)
        self.scale = scale
        self.say = say
        self.seen: dict[tuple[str, str], Request] = {}  # (board, message id) -> request
        self.done: set[tuple[str, str, int]] = set()

    async def requests(self, http: httpx.AsyncClient) -> list[Request]:
        """The requests seen so far, each in the channel its action is reacted in."""
        now = time.monotonic()
        for board in self.boards.values():
            for mid, title in await board.titles(http):
                match = TITLE.search(title)
                if not match or (board.name, mid) in self.seen:
                    continue
                key, host = match["key"], match["host"]
                if self.reacts_in(key, host) != board.name:
                    continue  # asked here too, but reacted to in the other channel
                self.seen[board.name, mid] = Request(mid, key, host, now, board.name)
                if (key, host) not in self.plan:
                    self.say(f"operator: no plan for {key} on {host}: left to its deadline")
        return list(self.seen.values())

    async def react(self, http: httpx.AsyncClient, request: Request, r: Reaction) -> None:
        board = self.boards[request.board]
        await board.react(http, request.message_id, r.emoji, r.user)
        where = f" in {board.title}" if len(self.boards) > 1 else ""
        note = f" — {r.why}" if r.why else ""
        self.say(
            f"operator: {r.user} reacted {r.emoji}{where} on {request.key} {request.host}{note}"
        )

    async def step(self, http: httpx.AsyncClient) -> None:
        now = time.monotonic()
        for request in await self.requests(http):
            for i, reaction in enumerate(self.plan.get((request.key, request.host), ())):
                if (request.board, request.message_id, i) in self.done:
                    continue
                if now - request.seen_at >= reaction.after * self.scale:
                    await self.react(http, request, reaction)
                    self.done.add((request.board, request.message_id, i))

    async def run(self, interval: float = 0.3) -> None:
        titles = " and ".join(b.title for b in self.boards.values())
        async with httpx.AsyncClient(timeout=5.0) as http:
            while True:
                try:
                    await self.step(http)
                except httpx.HTTPError as exc:
                    self.say(f"operator: {titles} sandbox unreachable ({exc}); retrying")
                await asyncio.sleep(interval)
