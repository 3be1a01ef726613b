"""Discord's bot REST API (v10): messages, reactions, guild member roles.

Every post and edit sends `allowed_mentions: {"parse": []}`, so nothing quoted from a
log line can ping a person, a role or @everyone. Text over Discord's limits is cut to
fit (ending with "…") rather than failing the post. 429 answers are retried after
Discord's `retry_after`, with bounded retries and a bounded total wait; then
`DiscordRateLimited`. A deleted message or unknown channel is `DiscordNotFound`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from clients.errors import DiscordError, DiscordNotFound, DiscordRateLimited
from clients.http import HttpClient
from core.wire import DiscordMessage, DiscordUser, Embed

T = TypeVar("T")
DEFAULT_API_BASE = "https://discord.com/api/v10"
ELLIPSIS = "…"
CONTENT_MAX, EMBEDS_MAX, EMBED_TOTAL_MAX, FIELDS_MAX = 2000, 10, 6000, 25
TITLE_MAX, DESCRIPTION_MAX, FOOTER_MAX = 256, 4096, 2048
FIELD_NAME_MAX, FIELD_VALUE_MAX = 256, 1024
NOT_FOUND_CODES = {10003, 10008}  # Unknown Channel, Unknown Message
NOT_A_MEMBER_CODES = {10007, 10013}  # Unknown Member, Unknown User
NO_MENTIONS = {"parse": []}
PAGE = 100  # Discord's maximum reactions page


def cut(text: str, limit: int) -> str:
    """`text` if it fits in `limit` characters, else its head ending with "…"."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + ELLIPSIS


def embeds_json(embeds: Sequence[Embed]) -> list[dict[str, Any]]:
    """Discord's embed JSON, cut to every per-embed and per-message limit."""
    items = list(embeds)
    notes: list[dict[str, Any]] = []  # "N more not shown" markers: never cut themselves
    hidden = len(items) - (EMBEDS_MAX - 1) if len(items) > EMBEDS_MAX else 0
    out = [_embed_json(e, notes) for e in items[: EMBEDS_MAX - 1 if hidden else EMBEDS_MAX]]
    if hidden:
        notes.append({"description": f"{ELLIPSIS} {hidden} more not shown"})
        out.append(notes[-1])
    _fit_total(out, notes)
    return out


def _embed_json(embed: Embed, notes: list[dict[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if embed.title:
        data["title"] = cut(embed.title, TITLE_MAX)
    if embed.description:
        data["description"] = cut(embed.description, DESCRIPTION_MAX)
    if embed.url:
        data["url"] = embed.url
    if embed.color is not None:
        data["color"] = embed.color
    fields = [
        # Discord rejects empty names and values, so an empty one becomes "…".
        {
            "name": cut(f.name, FIELD_NAME_MAX) or ELLIPSIS,
            "value": cut(f.value, FIELD_VALUE_MAX) or ELLIPSIS,
            "inline": f.inline,
        }
        for f in embed.fields
    ]
    if len(fields) > FIELDS_MAX:
        hidden = len(fields) - (FIELDS_MAX - 1)
        notes.append(
            {"name": ELLIPSIS, "value": f"{hidden} more fields not shown", "inline": False}
        )
        fields = [*fields[: FIELDS_MAX - 1], notes[-1]]
    if fields:
        data["fields"] = fields
    if embed.footer:
        data["footer"] = {"text": cut(embed.footer, FOOTER_MAX)}
    if embed.timestamp is not None:
        data["timestamp"] = embed.timestamp.isoformat()
    return data


def _fit_total(embeds: list[dict[str, Any]], notes: list[dict[str, Any]]) -> None:
    """Cap every text at the largest length that keeps all embeds within 6000 characters.

    The longest texts (usually log excerpts) give way first and short ones (titles,
    field names) survive whole; every cut text ends with "…".
    """
    slots: list[tuple[dict[str, Any], str]] = []
    for e in embeds:
        slots += [(e, k) for k in ("title", "description") if k in e]
        slots += [(f, k) for f in e.get("fields", []) for k in ("name", "value")]
        if "footer" in e:
            slots.append((e["footer"], "text"))
    kept = {id(n) for n in notes}
    budget = EMBED_TOTAL_MAX - sum(len(d[k]) for d, k in slots if id(d) in kept)
    slots = [(d, k) for d, k in slots if id(d) not in kept]
    lengths = [len(d[k]) for d, k in slots]
    if sum(lengths) <= budget:
        return
    low, high = 1, max(lengths)  # ≤ 10 × 53 texts of one character always fit
    while low < high:
        cap = (low + high + 1) // 2
        if sum(min(n, cap) for n in lengths) <= budget:
            low = cap
        else:
            high = cap - 1
    for d, k in slots:
        d[k] = cut(d[k], low)


class DiscordClient(HttpClient):
    """A bot's view of Discord; `api_base` points at the real API or the sandbox."""

    error = DiscordError

    def __init__(
        self,
        token: str,
        *,
        api_base: str = DEFAULT_API_BASE,
        timeout: float = 10.0,
        max_retries: int = 3,
        max_retry_wait: float = 10.0,
    ) -> None:
        super().__init__(
            api_base,
            headers={"Authorization": f"Bot {token}"},
            timeout=timeout,
            secrets=(token,),
        )
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait

    # --- messages ------------------------------------------------------------------
    async def create_message(
        self, channel_id: str, *, content: str = "", embeds: Sequence[Embed] = ()
    ) -> DiscordMessage:
        body = {
            "content": cut(content, CONTENT_MAX),
            "embeds": embeds_json(embeds),
            "allowed_mentions": NO_MENTIONS,
        }
        path = f"/channels/{_seg(channel_id)}/messages"
        resp = await self._call("POST", path, "create_message", json=body)
        return self._read(resp, "create_message", _message)

    async def edit_message(
        self,
        channel_id: str,
        message_id: str,
        *,
        content: str | None = None,
        embeds: Sequence[Embed] | None = None,
    ) -> DiscordMessage:
        """Replace the content and/or embeds given; what is None stays as it was."""
        body: dict[str, Any] = {"allowed_mentions": NO_MENTIONS}
        if content is not None:
            body["content"] = cut(content, CONTENT_MAX)
        if embeds is not None:
            body["embeds"] = embeds_json(embeds)
        path = _msg_path(channel_id, message_id)
        resp = await self._call("PATCH", path, "edit_message", json=body)
        return self._read(resp, "edit_message", _message)

    async def get_message(self, channel_id: str, message_id: str) -> DiscordMessage:
        resp = await self._call("GET", _msg_path(channel_id, message_id), "get_message")
        return self._read(resp, "get_message", _message)

    # --- reactions -----------------------------------------------------------------
    async def add_reaction(self, channel_id: str, message_id: str, emoji: str) -> None:
        """React as the bot; `emoji` is a unicode emoji or a custom `name:id`."""
        path = f"{_msg_path(channel_id, message_id)}/reactions/{_emoji(emoji)}/@me"
        await self._call("PUT", path, "add_reaction", ok=(204,))

    async def list_reactions(
        self, channel_id: str, message_id: str, emoji: str
    ) -> list[DiscordUser]:
        """Everyone who reacted with `emoji` (bots included), across all pages."""
        path = f"{_msg_path(channel_id, message_id)}/reactions/{_emoji(emoji)}"
        users: list[DiscordUser] = []
        after: str | None = None
        while True:
            params = {"limit": str(PAGE), **({"after": after} if after else {})}
            resp = await self._call("GET", path, "list_reactions", params=params)
            page = self._read(resp, "list_reactions", _users)
            users += page
            if len(page) < PAGE:
                return users
            if after is not None and int(page[-1].id) <= int(after):
                # A page that does not move forward would loop forever; an incomplete
                # list could hide a veto, so fail instead of returning it.
                raise self._fail("list_reactions", f"reaction paging did not advance past {after}")
            after = page[-1].id

    # --- users ---------------------------------------------------------------------
    async def get_member_roles(self, guild_id: str, user_id: str) -> list[str]:
        """Role ids of a guild member; a user who is not a member has none."""
        return await self.member_roles(guild_id, user_id) or []

    async def member_roles(self, guild_id: str, user_id: str) -> list[str] | None:
        """Role ids of a guild member, or None for a user who is not a member."""
        path = f"/guilds/{_seg(guild_id)}/members/{_seg(user_id)}"
        resp = await self._call("GET", path, "get_member_roles", ok=(200, 404))
        if resp.status_code == 404:
            if _code(resp) in NOT_A_MEMBER_CODES:
                return None
            raise self._error("get_member_roles", resp)
        return self._read(resp, "get_member_roles", lambda d: [str(r) for r in d["roles"]])

    async def current_user(self) -> DiscordUser:
        resp = await self._call("GET", "/users/@me", "current_user")
        return self._read(resp, "current_user", lambda d: _users([d])[0])

    # --- transport -----------------------------------------------------------------
    async def _call(
        self, method: str, path: str, operation: str, *, ok: Iterable[int] = (200,), **kw: Any
    ) -> httpx.Response:
        """Send, waiting out 429s within `max_retries` and `max_retry_wait`."""
        expected, waited, retries = set(ok), 0.0, 0
        while True:
            # Every status is accepted here so that 429s and Discord's error JSON reach us.
            resp = await self._send(method, path, operation, ok=range(100, 600), **kw)
            if resp.status_code in expected:
                return resp
            if resp.status_code != 429:
                raise self._error(operation, resp)
            wait = _retry_after(resp)
            if retries >= self.max_retries or waited + wait > self.max_retry_wait:
                raise DiscordRateLimited(
                    operation,
                    f"still rate limited after {retries} retries and {waited:.2f} s of waiting "
                    f"(retry_after {wait:g} s, bucket {resp.headers.get('X-RateLimit-Bucket')})",
                    status_code=429,
                    secrets=self._secrets,
                )
            await asyncio.sleep(wait)
            waited += wait
            retries += 1

    def _read(self, resp: httpx.Response, operation: str, parse: Callable[[Any], T]) -> T:
        """`parse(resp.json())`, a malformed answer becoming a `DiscordError`."""
        try:
            return parse(resp.json())
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            detail = f"unreadable answer ({type(exc).__name__}: {exc}): {resp.text[:300]}"
            raise self._fail(operation, detail, status_code=resp.status_code) from exc

    def _error(self, operation: str, resp: httpx.Response) -> DiscordError:
        gone = resp.status_code == 404 and _code(resp) in NOT_FOUND_CODES
        kind = DiscordNotFound if gone else DiscordError
        detail = self.error_detail(resp)
        return kind(operation, detail, status_code=resp.status_code, secrets=self._secrets)

    def error_detail(self, resp: httpx.Response) -> str:
        """Discord's `message (code N)` plus each field error of a 50035 answer."""
        try:
            body = resp.json()
            text = f"{body['message']} (code {body.get('code')})"
            problems = [f"{path}: {msg}" for path, msg in _flatten(body.get("errors") or {})]
        except (ValueError, KeyError, TypeError, AttributeError):
            return resp.text[:1000] or resp.reason_phrase  # not Discord's JSON (e.g. a proxy)
        return "; ".join([text, *problems])


def _flatten(tree: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Discord's nested `errors` as (`embeds.0.title`, message) pairs."""
    out: list[tuple[str, str]] = []
    for key, node in tree.items():
        if key == "_errors":
            out += [(prefix.rstrip("."), e.get("message", "")) for e in node]
        elif isinstance(node, dict):
            out += _flatten(node, f"{prefix}{key}.")
    return out


def _code(resp: httpx.Response) -> int | None:
    try:
        return int(resp.json().get("code"))
    except (ValueError, TypeError, AttributeError):
        return None


def _retry_after(resp: httpx.Response) -> float:
    """Seconds to wait: the JSON's exact float first, then the (rounded) headers."""
    try:
        return max(float(resp.json()["retry_after"]), 0.0)
    except (ValueError, KeyError, TypeError):
        pass
    for header in ("Retry-After", "X-RateLimit-Reset-After"):
        try:
            return max(float(resp.headers[header]), 0.0)
        except (KeyError, ValueError):
            continue
    return 1.0


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def _emoji(emoji: str) -> str:
    return quote(emoji, safe=":")  # ✅ -> %E2%9C%85; a custom `name:id` keeps its colon


def _msg_path(channel_id: str, message_id: str) -> str:
    return f"/channels/{_seg(channel_id)}/messages/{_seg(message_id)}"


def _message(data: Any) -> DiscordMessage:
    return DiscordMessage(
        id=str(data["id"]),
        channel_id=str(data["channel_id"]),
        content=data.get("content") or "",
        embeds=list(data.get("embeds") or []),
    )


def _users(items: Any) -> list[DiscordUser]:
    return [
        DiscordUser(id=str(u["id"]), username=str(u["username"]), bot=bool(u.get("bot")))
        for u in items
    ]
