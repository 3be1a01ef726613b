"""The simulated operator: people reacting in the sandbox Discord, a few seconds late.

It reads the approvals channel through the sandbox Discord's control API, recognises
approval requests by their title ("🟢 Approve restart_unit on web-02? React ✅ or ❌"),
and reacts as the plan says (`demo_profile.OPERATOR_PLAN`) through the control API, as
the named sandbox user — exactly what a person clicking a reaction produces. The
listener then reads those reactions over the Discord REST API like any others.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from sandbox.demo_profile import Reaction

TITLE = re.compile(r"Approve (?P<key>\S+) on (?P<host>\S+)\? React")


@dataclass(frozen=True)
class Request:
    message_id: str
    key: str
    host: str
    seen_at: float


class SimulatedOperator:
    """Reacts to approval requests per plan; `run()` until cancelled."""

    def __init__(
        self,
        discord_url: str,
        channel_id: str,
        plan: dict[tuple[str, str], tuple[Reaction, ...]],
        *,
        scale: float = 1.0,
        say: Callable[[str], None] = print,
    ) -> None:
        # the control API lives beside /api/v10 on the same server
        self.base = discord_url.removesuffix("/api/v10")
        self.channel_id = channel_id
        self.plan = plan
        self.scale = scale
        self.say = say
        self.seen: dict[str, Request] = {}
        self.done: set[tuple[str, int]] = set()

    async def requests(self, http: httpx.AsyncClient) -> list[Request]:
        answer = await http.get(f"{self.base}/_control/channels/{self.channel_id}/messages")
        answer.raise_for_status()
        found = []
        for message in answer.json():
            title = ((message.get("embeds") or [{}])[0] or {}).get("title") or ""
            match = TITLE.search(title)
            if match and not message.get("deleted"):
                found.append((message["id"], match["key"], match["host"]))
        now = time.monotonic()
        for mid, key, host in found:
            if mid not in self.seen:
                self.seen[mid] = Request(mid, key, host, now)
                if (key, host) not in self.plan:
                    self.say(f"operator: no plan for {key} on {host}: left to its deadline")
        return list(self.seen.values())

    async def react(self, http: httpx.AsyncClient, request: Request, r: Reaction) -> None:
        path = (
            f"{self.base}/_control/channels/{self.channel_id}/messages/{request.message_id}"
            f"/reactions/{quote(r.emoji)}/{quote(r.user)}"
        )
        answer = await http.put(path)
        answer.raise_for_status()
        note = f" — {r.why}" if r.why else ""
        self.say(f"operator: {r.user} reacted {r.emoji} on {request.key} {request.host}{note}")

    async def step(self, http: httpx.AsyncClient) -> None:
        now = time.monotonic()
        for request in await self.requests(http):
            for i, reaction in enumerate(self.plan.get((request.key, request.host), ())):
                if (request.message_id, i) in self.done:
                    continue
                if now - request.seen_at >= reaction.after * self.scale:
                    await self.react(http, request, reaction)
                    self.done.add((request.message_id, i))

    async def run(self, interval: float = 0.3) -> None:
        async with httpx.AsyncClient(timeout=5.0) as http:
            while True:
                try:
                    await self.step(http)
                except httpx.HTTPError as exc:
                    self.say(f"operator: Discord sandbox unreachable ({exc}); retrying")
                await asyncio.sleep(interval)
