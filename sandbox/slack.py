"""A Slack Web API stand-in: bot tokens, scopes, channels, messages, threads, reactions.

Methods live under `/api/`, so a client's base URL is `server.api_base`
(`f"{server.url}/api/"`, as slack_sdk's `base_url`). As Slack does, every API error is
HTTP 200 with `{"ok": false, "error": "…"}` (plus `needed`/`provided` for
`missing_scope`), a rate limit is HTTP 429 with `Retry-After`, and an unknown method is
HTTP 404 `unknown_method`. Auth: `Authorization: Bearer xoxb-…`, or a `token` form field.
Arguments are read from the query string and a form body, and from a JSON body only for
the methods Slack documents as taking JSON (slack_sdk sends `chat.postMessage` and
`chat.update` as JSON, `reactions.add` as POST query parameters, the reads as GET).

API: auth.test · chat.postMessage · chat.update · reactions.add · reactions.get ·
users.info · usergroups.users.list · conversations.members

Control API (besides the base's requests/reset/faults):
    PUT|DELETE /_control/reactions   {"channel","ts","name","user"}  react / unreact as a
                                     configured user (id or name)
    DELETE     /_control/messages    {"channel","ts"}   delete; then `message_not_found`
    GET        /_control/messages?channel=   messages with edits, thread and reactions
    GET        /_control/pings       every mention any posted or edited text carried
    POST       /_control/rate_limit  {"method": "chat.postMessage", "retry_after": 1, "times": 1}
"""

from __future__ import annotations

import copy
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.http import Fault, Request, Response, SandboxServer
from sandbox.slack_payload import find_pings
from sandbox.slack_routes import register

API_PREFIX = "/api/"
TEAM_ID = "T0SANDBOX"
TEAM_NAME = "Sandbox"
TEAM_URL = "https://sandbox.slack.com/"
# What a bot installed with the README's scopes holds.
DEFAULT_SCOPES = (
    "chat:write",
    "reactions:read",
    "reactions:write",
    "users:read",
    "usergroups:read",
    "channels:read",
)


@dataclass(frozen=True)
class SlackSandboxUser:
    """A workspace member; a bot (with `bot_id`) holding a `token` can call the API."""

    id: str
    name: str
    is_bot: bool = False
    bot_id: str | None = None
    deleted: bool = False
    token: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The user object of `users.info`."""
        profile: dict[str, Any] = {
            "real_name": self.name.capitalize(),
            "display_name": "" if self.is_bot else self.name,
            "real_name_normalized": self.name.capitalize(),
            "display_name_normalized": "" if self.is_bot else self.name,
            "team": TEAM_ID,
        }
        if self.bot_id:
            profile.update({"bot_id": self.bot_id, "api_app_id": app_id(self.bot_id)})
        user: dict[str, Any] = {
            "id": self.id,
            "team_id": TEAM_ID,
            "name": self.name,
            "deleted": self.deleted,
            "real_name": self.name.capitalize(),
            "profile": profile,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "updated": 1_733_500_000,
        }
        if not self.deleted:
            user.update(
                {
                    "color": "9f69e7",
                    "tz": "Europe/Berlin",
                    "tz_label": "Central European Time",
                    "tz_offset": 3600,
                    "is_admin": False,
                    "is_owner": False,
                    "is_primary_owner": False,
                    "is_restricted": False,
                    "is_ultra_restricted": False,
                }
            )
        return user


@dataclass(frozen=True)
class SlackSandboxChannel:
    """A channel; `members` None means every user; a bot outside gets `not_in_channel`."""

    id: str
    name: str = "approvals"
    bot_is_member: bool = True
    members: tuple[str, ...] | None = None


@dataclass
class SlackMessage:
    """A stored message; `edits` holds earlier versions, oldest first."""

    channel: str
    ts: str
    user: str
    bot_id: str | None
    text: str
    blocks: list[Any]
    thread_ts: str | None = None
    edited_ts: str | None = None
    edits: list[dict[str, Any]] = field(default_factory=list)
    reactions: dict[str, list[str]] = field(default_factory=dict)  # name -> user ids
    deleted: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # unfurl_links, parse, …

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(
            {
                "channel": self.channel,
                "ts": self.ts,
                "user": self.user,
                "bot_id": self.bot_id,
                "text": self.text,
                "blocks": self.blocks,
                "thread_ts": self.thread_ts,
                "edited_ts": self.edited_ts,
                "edits": self.edits,
                "reactions": self.reactions,
                "deleted": self.deleted,
                "options": self.options,
            }
        )


def app_id(bot_id: str) -> str:
    return "A" + bot_id[1:]


class SlackServer(SandboxServer):
    """The sandbox Slack; `reset()` restores the configured users, scopes and tokens."""

    name = "slack"

    def __init__(
        self,
        users: Iterable[SlackSandboxUser],
        *,
        channels: Iterable[SlackSandboxChannel | str],
        usergroups: Mapping[str, Iterable[str]] | None = None,
        scopes: Iterable[str] = DEFAULT_SCOPES,
    ) -> None:
        self._configured = {u.id: u for u in users}
        self._users = dict(self._configured)
        self.channels = {
            c.id: c for c in (SlackSandboxChannel(c) if isinstance(c, str) else c for c in channels)
        }
        self.usergroups = {g: list(ids) for g, ids in (usergroups or {}).items()}
        self._scopes_configured = tuple(scopes)
        self.scopes = list(self._scopes_configured)
        self._revoked: set[str] = set()
        self._state_lock = threading.RLock()
        self._messages: dict[str, dict[str, SlackMessage]] = {c: {} for c in self.channels}
        self._pings: list[dict[str, str]] = []
        self._last_us = 0
        super().__init__()

    @property
    def api_base(self) -> str:
        """What a client uses as its base URL (slack_sdk's `base_url`)."""
        return f"{self.url}{API_PREFIX}"

    def setup_routes(self) -> None:
        register(self)

    # --- users, tokens, scopes -----------------------------------------------------
    def add_user(self, user: SlackSandboxUser) -> None:
        """Add a user until the next `reset()`."""
        with self._state_lock:
            self._users[user.id] = user

    def user(self, ref: str) -> SlackSandboxUser:
        """A user by id or name; KeyError if unknown."""
        with self._state_lock:
            if ref in self._users:
                return self._users[ref]
            for user in self._users.values():
                if user.name == ref:
                    return user
        raise KeyError(f"no sandbox Slack user {ref!r}")

    def token_status(self, token: str) -> SlackSandboxUser | str:
        """The bot a token belongs to, or Slack's auth error for it."""
        with self._state_lock:
            if token in self._revoked:
                return "token_revoked"
            user = next((u for u in self._users.values() if u.token and u.token == token), None)
        if user is None:
            return "invalid_auth"
        return "account_inactive" if user.deleted else user

    def revoke_token(self, token: str) -> None:
        """Calls with `token` answer `token_revoked` until the next `reset()`."""
        with self._state_lock:
            self._revoked.add(token)

    def grant_scopes(self, scopes: Iterable[str]) -> None:
        """Replace the granted scopes until the next `reset()`."""
        with self._state_lock:
            self.scopes = list(scopes)

    def channel_members(self, channel: str) -> list[str]:
        conf = self.channels[channel]
        with self._state_lock:
            if conf.members is not None:
                ids = list(conf.members)
            else:
                ids = [u.id for u in self._users.values() if not u.deleted and not u.token]
            bots = [u.id for u in self._users.values() if u.token and not u.deleted]
        return ids + [b for b in bots if conf.bot_is_member and b not in ids]

    # --- messages ------------------------------------------------------------------
    def new_ts(self) -> str:
        """A message ts like "1733580000.000100", strictly increasing (so unique)."""
        with self._state_lock:
            self._last_us = max(self._last_us + 1, int(time.time() * 1_000_000))
            return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"

    def store(self, msg: SlackMessage, *, bare_names: bool) -> SlackMessage:
        with self._state_lock:
            self._messages[msg.channel][msg.ts] = msg
            self._record_pings(msg, bare_names=bare_names)
        return msg

    def update(
        self, msg: SlackMessage, text: str, blocks: list[Any] | None, *, bare_names: bool
    ) -> None:
        """Apply an edit, keeping the previous version in `edits`."""
        with self._state_lock:
            msg.edits.append({"text": msg.text, "blocks": msg.blocks, "edited_ts": msg.edited_ts})
            msg.text = text
            if blocks is not None:
                msg.blocks = blocks
            msg.edited_ts = self.new_ts()
            self._record_pings(msg, bare_names=bare_names)

    def _record_pings(self, msg: SlackMessage, *, bare_names: bool) -> None:
        for ping in find_pings(msg.text, msg.blocks, bare_names=bare_names):
            self._pings.append({"channel": msg.channel, "ts": msg.ts, **ping})

    def find(self, channel: str, ts: str) -> SlackMessage | None:
        """The live message, or None if unknown or deleted."""
        with self._state_lock:
            msg = self._messages.get(channel, {}).get(ts)
            return None if msg is None or msg.deleted else msg

    def _live(self, channel: str, ts: str) -> SlackMessage:
        msg = self.find(channel, ts)
        if msg is None:
            raise KeyError(f"no live message {ts} in channel {channel}")
        return msg

    def messages(
        self, channel: str | None = None, *, include_deleted: bool = False
    ) -> list[dict[str, Any]]:
        """Snapshots of the messages (of one channel, or all), oldest first: `text`,
        `blocks`, `thread_ts`, `edits` (prior versions), `reactions` (name -> user ids)."""
        with self._state_lock:
            stored = [
                m
                for cid, msgs in self._messages.items()
                if channel is None or cid == channel
                for m in msgs.values()
            ]
            stored.sort(key=lambda m: m.ts)
            return [m.snapshot() for m in stored if include_deleted or not m.deleted]

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        """A snapshot of one message (deleted ones included); KeyError if unknown."""
        with self._state_lock:
            return self._messages[channel][ts].snapshot()

    def replies(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        return [m for m in self.messages(channel) if m["thread_ts"] == thread_ts]

    def pings(self, channel: str | None = None) -> list[dict[str, str]]:
        """Every mention any posted or edited message carried: `channel`, `ts`, `where`
        (`text` or a block JSON pointer), `kind` (`channel`, `here`, `everyone`,
        `user:U…`, `subteam:S…`) and the `match`. Tests assert it is empty."""
        with self._state_lock:
            return [dict(p) for p in self._pings if channel is None or p["channel"] == channel]

    # --- reactions and deletion (as people do in the app) ---------------------------
    def react(self, channel: str, ts: str, name: str, user: str) -> None:
        """React as a configured user (name or id); adding it twice changes nothing."""
        uid = self.user(user).id
        with self._state_lock:
            users = self._live(channel, ts).reactions.setdefault(name, [])
            if uid not in users:
                users.append(uid)

    def unreact(self, channel: str, ts: str, name: str, user: str) -> None:
        uid = self.user(user).id
        with self._state_lock:
            reactions = self._live(channel, ts).reactions
            if uid in reactions.get(name, []):
                reactions[name].remove(uid)
                if not reactions[name]:
                    del reactions[name]

    def delete_message(self, channel: str, ts: str) -> None:
        """Delete a message; the API then answers `message_not_found` for it."""
        with self._state_lock:
            self._live(channel, ts).deleted = True

    # --- faults and reset ----------------------------------------------------------
    def rate_limit(self, method: str = ".*", *, retry_after: int = 1, times: int = 1) -> Fault:
        """Answer the next `times` calls of `method` (a regex over method names) with
        Slack's 429: `Retry-After` in whole seconds and `{"ok": false, "error":
        "ratelimited"}`."""
        return self.inject(
            method="*",
            path=f"{re.escape(API_PREFIX)}{method}",
            status=429,
            body={"ok": False, "error": "ratelimited"},
            headers={"Retry-After": str(int(retry_after))},
            times=times,
        )

    def reset(self) -> None:
        super().reset()
        with self._state_lock:
            self._users = dict(self._configured)
            self.scopes = list(self._scopes_configured)
            self._revoked.clear()
            self._messages = {c: {} for c in self.channels}
            self._pings.clear()

    def not_found(self, req: Request, status: int = 404) -> Response:
        if req.path.startswith(API_PREFIX):
            method = req.path[len(API_PREFIX) :]
            return Response(404, {"ok": False, "error": "unknown_method", "req_method": method})
        return Response(404, {"detail": "Not Found"})
