"""The HTTP routes of the sandbox Discord (`sandbox.discord.DiscordServer`).

Kept apart from the server's state so each module stays small; the route list and the
control API are documented in `sandbox/discord.py`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from sandbox.discord_payload import FormErrors, check_message
from sandbox.http import Request, Response

if TYPE_CHECKING:
    from sandbox.discord import DiscordServer, Message, SandboxUser

P = "/api/v10"
C = "/_control"
MSG = "/channels/{channel_id}/messages/{message_id}"
_CUSTOM_EMOJI = re.compile(r"[A-Za-z0-9_]{2,32}:\d+")
_NOT_UNICODE_EMOJI = re.compile(r"[A-Za-z%\s]")

Authed = Callable[[Request, "SandboxUser"], Response]


def register(server: DiscordServer) -> None:
    """Add the API and control routes to `server`."""
    api = _Api(server)
    route = server.route
    route("GET", f"{P}/users/@me", api.authed(api.me))
    route("GET", f"{P}/guilds/{{guild_id}}/members/{{user_id}}", api.authed(api.member))
    route("POST", f"{P}/channels/{{channel_id}}/messages", api.authed(api.create))
    route("GET", f"{P}{MSG}", api.authed(api.get))
    route("PATCH", f"{P}{MSG}", api.authed(api.edit))
    route("DELETE", f"{P}{MSG}", api.authed(api.delete))
    route("PUT", f"{P}{MSG}/reactions/{{emoji}}/@me", api.authed(api.react))
    route("DELETE", f"{P}{MSG}/reactions/{{emoji}}/@me", api.authed(api.unreact))
    route("GET", f"{P}{MSG}/reactions/{{emoji}}", api.authed(api.reactors))
    route("PUT", f"{C}{MSG}/reactions/{{emoji}}/{{user}}", api.control_react)
    route("DELETE", f"{C}{MSG}/reactions/{{emoji}}/{{user}}", api.control_react)
    route("DELETE", f"{C}{MSG}", api.control_delete)
    route("GET", f"{C}/channels/{{channel_id}}/messages", api.control_messages)
    route("POST", f"{C}/rate_limit", api.control_rate_limit)


def _error(status: int, message: str, code: int) -> Response:
    return Response(status, {"message": message, "code": code})


def message_json(server: DiscordServer, msg: Message, viewer_id: str) -> dict[str, Any]:
    """The Message object as Discord returns it to `viewer_id`."""
    msg = server.message(msg.channel_id, msg.id)  # a consistent snapshot
    data: dict[str, Any] = {
        "id": msg.id,
        "type": 0,
        "channel_id": msg.channel_id,
        "author": server.user(msg.author_id).to_json(),
        "content": msg.content,
        "timestamp": msg.timestamp,
        "edited_timestamp": msg.edited_timestamp,
        "tts": False,
        "mention_everyone": "everyone" in msg.pings,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": msg.embeds,
        "components": [],
        "pinned": False,
        "flags": 0,
    }
    if msg.reactions:  # Discord omits the key when there are none
        data["reactions"] = [
            _reaction_summary(emoji, users, viewer_id) for emoji, users in msg.reactions.items()
        ]
    return data


def _reaction_summary(emoji: str, users: list[str], viewer_id: str) -> dict[str, Any]:
    name, _, emoji_id = emoji.partition(":")
    return {
        "emoji": {"id": emoji_id or None, "name": name},
        "count": len(users),
        "count_details": {"burst": 0, "normal": len(users)},
        "burst_colors": [],
        "me": viewer_id in users,
        "me_burst": False,
    }


def _valid_emoji(emoji: str) -> bool:
    """A decoded unicode emoji or a custom `name:id`.

    Letters or `%` mean the client sent it double-encoded or as a name: Discord says 10014.
    """
    if _CUSTOM_EMOJI.fullmatch(emoji):
        return True
    return not emoji.isascii() and not _NOT_UNICODE_EMOJI.search(emoji)


class _Api:
    def __init__(self, server: DiscordServer) -> None:
        self.s = server

    # --- plumbing ------------------------------------------------------------------
    def authed(self, handler: Authed) -> Callable[[Request], Response]:
        """Check the bot token and the snowflake path parameters, then run `handler`."""

        def run(req: Request) -> Response:
            scheme, _, token = req.headers.get("authorization", "").partition(" ")
            me = self.s.user_for_token(token) if scheme == "Bot" and token else None
            if me is None:
                return _error(401, "401: Unauthorized", 0)
            errors = FormErrors()
            for name, value in req.params.items():
                if name.endswith("_id") and not value.isdigit():
                    errors.add((name,), "NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.')
            if errors.tree:
                return Response(400, errors.body())
            return handler(req, me)

        return run

    def _message(self, req: Request) -> Message | Response:
        """The addressed live message, or Discord's 10003/10008 answer."""
        cid, mid = req.params["channel_id"], req.params["message_id"]
        if cid not in self.s.channel_ids:
            return _error(404, "Unknown Channel", 10003)
        msg = self.s.find(cid, mid)
        return msg if msg is not None else _error(404, "Unknown Message", 10008)

    @staticmethod
    def _body(req: Request) -> Any:
        try:
            return req.json()
        except ValueError:
            return None

    # --- API -----------------------------------------------------------------------
    def me(self, req: Request, me: SandboxUser) -> Response:
        return Response(200, me.to_json())

    def member(self, req: Request, me: SandboxUser) -> Response:
        if req.params["guild_id"] != self.s.guild_id:
            return _error(404, "Unknown Guild", 10004)
        try:
            user = self.s.user(req.params["user_id"])
        except KeyError:
            return _error(404, "Unknown User", 10013)
        if not user.member:
            return _error(404, "Unknown Member", 10007)
        return Response(
            200,
            {
                "user": user.to_json(),
                "nick": None,
                "avatar": None,
                "banner": None,
                "roles": list(user.roles),
                "joined_at": "2025-01-01T00:00:00.000000+00:00",
                "premium_since": None,
                "deaf": False,
                "mute": False,
                "flags": 0,
                "pending": False,
                "communication_disabled_until": None,
            },
        )

    def create(self, req: Request, me: SandboxUser) -> Response:
        cid = req.params["channel_id"]
        if cid not in self.s.channel_ids:
            return _error(404, "Unknown Channel", 10003)
        body = self._body(req)
        problem = check_message(body, partial=False)
        if problem is not None:
            return Response(400, problem)
        return Response(200, message_json(self.s, self.s.create(cid, me.id, body), me.id))

    def get(self, req: Request, me: SandboxUser) -> Response:
        msg = self._message(req)
        if isinstance(msg, Response):
            return msg
        return Response(200, message_json(self.s, msg, me.id))

    def edit(self, req: Request, me: SandboxUser) -> Response:
        msg = self._message(req)
        if isinstance(msg, Response):
            return msg
        if msg.author_id != me.id:
            return _error(403, "Cannot edit a message authored by another user", 50005)
        body = self._body(req)
        problem = check_message(body, partial=True)
        if problem is not None:
            return Response(400, problem)
        merged = {"content": msg.content, "embeds": msg.embeds, **body}
        if not merged["content"] and not merged["embeds"]:
            return _error(400, "Cannot send an empty message", 50006)
        self.s.edit(msg, body)
        return Response(200, message_json(self.s, msg, me.id))

    def delete(self, req: Request, me: SandboxUser) -> Response:
        msg = self._message(req)
        if isinstance(msg, Response):
            return msg
        self.s.delete_message(msg.channel_id, msg.id)
        return Response(204)

    def react(self, req: Request, me: SandboxUser) -> Response:
        return self._reaction(req, me, add=True)

    def unreact(self, req: Request, me: SandboxUser) -> Response:
        return self._reaction(req, me, add=False)

    def _reaction(self, req: Request, me: SandboxUser, *, add: bool) -> Response:
        msg = self._message(req)
        if isinstance(msg, Response):
            return msg
        emoji = unquote(req.params["emoji"])
        if not _valid_emoji(emoji):
            return _error(400, "Unknown Emoji", 10014)
        (self.s.react if add else self.s.unreact)(msg.channel_id, msg.id, emoji, me.id)
        return Response(204)

    def reactors(self, req: Request, me: SandboxUser) -> Response:
        errors = FormErrors()
        limit_text, after = req.arg("limit", "25") or "25", req.arg("after", "0") or "0"
        if not limit_text.isdigit():
            errors.add(("limit",), "NUMBER_TYPE_COERCE", f'Value "{limit_text}" is not int.')
        elif int(limit_text) < 1:
            errors.add(("limit",), "NUMBER_TYPE_MIN", "int value should be greater than 0.")
        elif int(limit_text) > 100:
            errors.add(("limit",), "NUMBER_TYPE_MAX", "int value should be less than 101.")
        if not after.isdigit():
            errors.add(("after",), "NUMBER_TYPE_COERCE", f'Value "{after}" is not snowflake.')
        if errors.tree:
            return Response(400, errors.body())
        msg = self._message(req)
        if isinstance(msg, Response):
            return msg
        emoji = unquote(req.params["emoji"])
        if not _valid_emoji(emoji):
            return _error(400, "Unknown Emoji", 10014)
        # Discord pages reactors by ascending user id, `after` being exclusive.
        ids = sorted((u for u in msg.reactions.get(emoji, []) if int(u) > int(after)), key=int)
        users = [self.s.user(uid).to_json() for uid in ids[: int(limit_text)]]
        return Response(200, users)

    # --- control -------------------------------------------------------------------
    def control_react(self, req: Request) -> Response:
        cid, mid = req.params["channel_id"], req.params["message_id"]
        try:
            action = self.s.react if req.method == "PUT" else self.s.unreact
            action(cid, mid, unquote(req.params["emoji"]), unquote(req.params["user"]))
        except KeyError as exc:
            return Response(404, {"detail": str(exc)})
        return Response(204)

    def control_delete(self, req: Request) -> Response:
        try:
            self.s.delete_message(req.params["channel_id"], req.params["message_id"])
        except KeyError as exc:
            return Response(404, {"detail": str(exc)})
        return Response(204)

    def control_messages(self, req: Request) -> Response:
        msgs = self.s.messages(req.params["channel_id"], include_deleted=True)
        return Response(200, [{**asdict(m), "pings": m.pings} for m in msgs])

    def control_rate_limit(self, req: Request) -> Response:
        spec = self._body(req) or {}
        self.s.rate_limit(
            spec.get("path", ".*"),
            retry_after=float(spec.get("retry_after", 0.05)),
            times=int(spec.get("times", 1)),
            method=spec.get("method", "*"),
            bucket=spec.get("bucket", "sandbox-bucket"),
            global_=bool(spec.get("global", False)),
        )
        return Response(204)
