"""A Discord REST v10 stand-in: bot auth, one guild, channels, messages, reactions.

Routes live under `/api/v10`, so a client's `api_base` is `server.api_base`
(`f"{server.url}/api/v10"`). Every API route needs `Authorization: Bot <token>` for a
configured bot user; errors carry Discord's JSON `{"message", "code"}` shapes (401 code 0,
10003 Unknown Channel, 10004 Unknown Guild, 10007 Unknown Member, 10008 Unknown Message,
10013 Unknown User, 10014 Unknown Emoji, 50005, 50006, 50035 Invalid Form Body).

API: GET /users/@me · GET /guilds/{gid}/members/{uid} · POST /channels/{cid}/messages ·
GET|PATCH|DELETE /channels/{cid}/messages/{mid} · PUT|DELETE
/channels/{cid}/messages/{mid}/reactions/{emoji}/@me · GET
/channels/{cid}/messages/{mid}/reactions/{emoji}?limit=&after=

Control API (besides the base's requests/reset/faults):
    PUT|DELETE /_control/channels/{cid}/messages/{mid}/reactions/{emoji}/{user}
               react / unreact as a configured user (username or id)
    DELETE     /_control/channels/{cid}/messages/{mid}     delete as a moderator would
    GET        /_control/channels/{cid}/messages           messages with history, reactions
    POST       /_control/rate_limit   {"path","retry_after","times","method","bucket","global"}
"""

from __future__ import annotations

import copy
import math
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.discord_payload import pings, rich_embeds
from sandbox.discord_routes import register
from sandbox.http import Fault, Request, Response, SandboxServer

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000


@dataclass(frozen=True)
class SandboxUser:
    """A configured Discord account; bots with a `token` can call the API as themselves."""

    id: str
    username: str
    bot: bool = False
    roles: tuple[str, ...] = ()  # guild role ids
    member: bool = True  # in the guild (a non-member answers 10007)
    token: str | None = None

    def to_json(self) -> dict[str, Any]:
        user: dict[str, Any] = {
            "id": self.id,
            "username": self.username,
            "discriminator": "0",
            "global_name": None if self.bot else self.username.capitalize(),
            "avatar": None,
            "public_flags": 0,
        }
        if self.bot:  # Discord only sends the flag for bots
            user["bot"] = True
        return user


@dataclass
class MessageVersion:
    content: str
    embeds: list[dict[str, Any]]
    at: str


@dataclass
class Message:
    """A stored message; `history` holds earlier versions, oldest first."""

    id: str
    channel_id: str
    author_id: str
    content: str
    embeds: list[dict[str, Any]]
    allowed_mentions: dict[str, Any] | None
    timestamp: str
    edited_timestamp: str | None = None
    history: list[MessageVersion] = field(default_factory=list)
    reactions: dict[str, list[str]] = field(default_factory=dict)  # emoji -> user ids
    deleted: bool = False

    @property
    def pings(self) -> list[str]:
        """Who the current content notifies (`user:<id>`, `role:<id>`, `everyone`)."""
        return pings(self.content, self.allowed_mentions)


class DiscordServer(SandboxServer):
    """The sandbox Discord; `reset()` keeps only the users given to the constructor."""

    name = "discord"

    def __init__(
        self, users: Iterable[SandboxUser], *, guild_id: str, channel_ids: Iterable[str]
    ) -> None:
        self._configured = {u.id: u for u in users}
        self._users = dict(self._configured)
        self.guild_id = guild_id
        self.channel_ids = frozenset(channel_ids)
        self._state_lock = threading.RLock()
        self._messages: dict[str, dict[str, Message]] = {c: {} for c in self.channel_ids}
        self._last_id = 0
        super().__init__()

    @property
    def api_base(self) -> str:
        """What a client uses as its base URL."""
        return f"{self.url}{API_PREFIX}"

    def setup_routes(self) -> None:
        register(self)

    # --- users ---------------------------------------------------------------------
    def add_user(self, user: SandboxUser) -> None:
        """Add a user until the next `reset()` (e.g. 250 reactors for a pagination test)."""
        with self._state_lock:
            self._users[user.id] = user

    def user(self, ref: str) -> SandboxUser:
        """A user by id or username; KeyError if unknown."""
        with self._state_lock:
            if ref in self._users:
                return self._users[ref]
            for user in self._users.values():
                if user.username == ref:
                    return user
        raise KeyError(f"no sandbox Discord user {ref!r}")

    def user_for_token(self, token: str) -> SandboxUser | None:
        with self._state_lock:
            return next((u for u in self._users.values() if u.bot and u.token == token), None)

    # --- messages and reactions ----------------------------------------------------
    def messages(self, channel_id: str, *, include_deleted: bool = False) -> list[Message]:
        """Snapshots of the channel's messages, oldest first."""
        with self._state_lock:
            stored = list(self._messages.get(channel_id, {}).values())
            return [copy.deepcopy(m) for m in stored if include_deleted or not m.deleted]

    def message(self, channel_id: str, message_id: str) -> Message:
        """A snapshot of one message (deleted ones included); KeyError if unknown."""
        with self._state_lock:
            return copy.deepcopy(self._messages[channel_id][message_id])

    def reactions(self, channel_id: str, message_id: str) -> dict[str, list[str]]:
        """Emoji -> ids of the users who reacted, in the order they reacted."""
        return self.message(channel_id, message_id).reactions

    def react(self, channel_id: str, message_id: str, emoji: str, user: str) -> None:
        """React as a configured user (username or id), as a person would in the app."""
        uid = self.user(user).id
        with self._state_lock:
            users = self._live(channel_id, message_id).reactions.setdefault(emoji, [])
            if uid not in users:
                users.append(uid)

    def unreact(self, channel_id: str, message_id: str, emoji: str, user: str) -> None:
        uid = self.user(user).id
        with self._state_lock:
            reactions = self._live(channel_id, message_id).reactions
            if uid in reactions.get(emoji, []):
                reactions[emoji].remove(uid)
                if not reactions[emoji]:
                    del reactions[emoji]

    def delete_message(self, channel_id: str, message_id: str) -> None:
        """Delete a message; the API then answers 10008 Unknown Message for it."""
        with self._state_lock:
            self._live(channel_id, message_id).deleted = True

    def create(self, channel_id: str, author_id: str, body: dict[str, Any]) -> Message:
        """Store a validated create payload (used by the route)."""
        with self._state_lock:
            msg = Message(
                id=self.snowflake(),
                channel_id=channel_id,
                author_id=author_id,
                content=body.get("content") or "",
                embeds=rich_embeds(body.get("embeds") or []),
                allowed_mentions=body.get("allowed_mentions"),
                timestamp=_now_iso(),
            )
            self._messages[channel_id][msg.id] = msg
            return msg

    def edit(self, msg: Message, body: dict[str, Any]) -> None:
        """Apply a validated edit payload, keeping the previous version in `history`."""
        with self._state_lock:
            previous = MessageVersion(
                msg.content, msg.embeds, msg.edited_timestamp or msg.timestamp
            )
            msg.history.append(previous)
            if "content" in body:
                msg.content = body["content"] or ""
            if "embeds" in body:
                msg.embeds = rich_embeds(body["embeds"] or [])
            if "allowed_mentions" in body:
                msg.allowed_mentions = body["allowed_mentions"]
            msg.edited_timestamp = _now_iso()

    def find(self, channel_id: str, message_id: str) -> Message | None:
        """The live message, or None if unknown or deleted."""
        with self._state_lock:
            msg = self._messages.get(channel_id, {}).get(message_id)
            return None if msg is None or msg.deleted else msg

    def _live(self, channel_id: str, message_id: str) -> Message:
        msg = self.find(channel_id, message_id)
        if msg is None:
            raise KeyError(f"no live message {message_id} in channel {channel_id}")
        return msg

    def snowflake(self) -> str:
        """A new id with Discord's layout (ms since 2015 << 22), strictly increasing."""
        with self._state_lock:
            ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
            self._last_id = max(self._last_id + 1, (ms << 22) | (1 << 17))
            return str(self._last_id)

    # --- faults and reset ----------------------------------------------------------
    def rate_limit(
        self,
        path: str = ".*",
        *,
        retry_after: float = 0.05,
        times: int = 1,
        method: str = "*",
        bucket: str = "sandbox-bucket",
        global_: bool = False,
    ) -> Fault:
        """Answer the next `times` matching requests with Discord's 429.

        `path` is a regex over the path after `/api/v10`. The JSON `retry_after` is the
        exact float; the `Retry-After` header is rounded up to whole seconds as Discord does.
        """
        headers = {
            "Retry-After": str(math.ceil(retry_after)),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Bucket": bucket,
            "X-RateLimit-Scope": "global" if global_ else "user",
        }
        if global_:
            headers["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": retry_after}
        return self.inject(
            method=method,
            path=f"{re.escape(API_PREFIX)}{path}",
            status=429,
            body={**body, "global": global_},
            headers=headers,
            times=times,
        )

    def reset(self) -> None:
        super().reset()
        with self._state_lock:
            self._users = dict(self._configured)
            self._messages = {c: {} for c in self.channel_ids}

    def not_found(self, req: Request, status: int = 404) -> Response:
        if status == 405:
            return Response(405, {"message": "405: Method Not Allowed", "code": 0})
        return Response(404, {"message": "404: Not Found", "code": 0})


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()
