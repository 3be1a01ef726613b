"""The Web API methods and control routes of the sandbox Slack (`sandbox.slack.SlackServer`).

Kept apart from the server's state so each module stays small; the method list, the
wire rules and the control API are documented in `sandbox/slack.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sandbox.http import Request, Response
from sandbox.slack_payload import TEXT_MAX, Args, check_blocks, parse_blocks, read_args

if TYPE_CHECKING:
    from sandbox.slack import SlackMessage, SlackSandboxUser, SlackServer

C = "/_control"
PAGE_MAX = 1000  # conversations.members' largest page

Method = Callable[[Args, "SlackSandboxUser"], dict[str, Any]]


def register(server: SlackServer) -> None:
    """Add the API methods and control routes to `server`."""
    api = _Api(server)
    methods: dict[str, tuple[str | None, bool, Method]] = {
        # name: (scope needed, accepts a JSON body, handler)
        "auth.test": (None, True, api.auth_test),
        "chat.postMessage": ("chat:write", True, api.post_message),
        "chat.update": ("chat:write", True, api.update),
        "reactions.add": ("reactions:write", True, api.react),
        "reactions.get": ("reactions:read", False, api.reactions),
        "users.info": ("users:read", False, api.user_info),
        "usergroups.users.list": ("usergroups:read", False, api.usergroup_users),
        "conversations.members": ("channels:read", False, api.members),
    }
    for name, (scope, accepts_json, handler) in methods.items():
        run = api.method(scope, accepts_json, handler)
        for verb in ("GET", "POST"):
            server.route(verb, f"/api/{name}", run)
    server.route("PUT", f"{C}/reactions", api.control_react)
    server.route("DELETE", f"{C}/reactions", api.control_react)
    server.route("DELETE", f"{C}/messages", api.control_delete)
    server.route("GET", f"{C}/messages", api.control_messages)
    server.route("GET", f"{C}/pings", api.control_pings)
    server.route("POST", f"{C}/rate_limit", api.control_rate_limit)


def _fail(error: str, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "error": error, **extra}


def _invalid_arguments(*missing: str) -> dict[str, Any]:
    return _fail(
        "invalid_arguments",
        response_metadata={"messages": [f"[ERROR] missing required field: {m}" for m in missing]},
    )


class _Api:
    def __init__(self, server: SlackServer) -> None:
        self.s = server

    # --- plumbing ------------------------------------------------------------------
    def method(
        self, scope: str | None, accepts_json: bool, handler: Method
    ) -> Callable[[Request], Response]:
        """Read the arguments, authenticate, check the scope, then run `handler`."""

        def run(req: Request) -> Response:
            args = read_args(
                req.query,
                req.headers.get("content-type", ""),
                req.body,
                accepts_json=accepts_json,
            )
            if args.error:
                return Response(200, _fail(args.error))
            scheme, _, bearer = req.headers.get("authorization", "").partition(" ")
            token = bearer.strip() if scheme.lower() == "bearer" else None
            token = token or args.body_token
            if not token:
                return Response(200, _fail("not_authed"))
            me = self.s.token_status(token)
            if isinstance(me, str):
                return Response(200, _fail(me))
            if scope is not None and scope not in self.s.scopes:
                body = _fail("missing_scope", needed=scope, provided=",".join(self.s.scopes))
                return Response(200, body)
            body = handler(args, me)
            if args.warnings and body.get("ok"):
                body["warning"] = ",".join(args.warnings)
                body.setdefault("response_metadata", {})["warnings"] = list(args.warnings)
            return Response(200, body)

        return run

    def _channel(self, args: Args, me: SlackSandboxUser, *, post: bool = False) -> str | dict:
        """The addressed channel id, or Slack's error."""
        channel = args.get("channel")
        if not isinstance(channel, str) or channel not in self.s.channels:
            return _fail("channel_not_found")
        if post and not self.s.channels[channel].bot_is_member:
            return _fail("not_in_channel")
        return channel

    def _content(
        self, args: Args, *, required: bool
    ) -> tuple[str | None, list[Any] | None, dict[str, Any] | None]:
        """(text, blocks, error) of a post or an edit, with Slack's limits applied."""
        text, raw_blocks = args.get("text"), args.get("blocks")
        blocks = None
        if raw_blocks is not None:
            blocks, problem = parse_blocks(raw_blocks)
            if problem is not None:
                return None, None, problem
            assert blocks is not None
            problem = check_blocks(blocks)
            if problem is not None:
                return None, None, problem
        if text is not None and not isinstance(text, str):
            text = str(text)
        if required and not text and not blocks and not args.get("attachments"):
            return None, None, _fail("no_text")
        if text is not None and len(text) > TEXT_MAX:
            return None, None, _fail("msg_too_long")
        return text, blocks, None

    def message_json(self, msg: SlackMessage, *, reactions: bool = False) -> dict[str, Any]:
        """The message object Slack echoes (and `reactions.get` nests)."""
        author = self.s.user(msg.user)
        data: dict[str, Any] = {
            "user": msg.user,
            "type": "message",
            "ts": msg.ts,
            "text": msg.text,
            "team": "T0SANDBOX",
        }
        if msg.bot_id:
            data.update(
                {
                    "bot_id": msg.bot_id,
                    "app_id": "A" + msg.bot_id[1:],
                    "bot_profile": {"id": msg.bot_id, "name": author.name, "deleted": False},
                }
            )
        if msg.blocks:
            data["blocks"] = msg.blocks
        if msg.thread_ts:
            data["thread_ts"] = msg.thread_ts
            if msg.thread_ts != msg.ts:
                parent = self.s.find(msg.channel, msg.thread_ts)
                data["parent_user_id"] = parent.user if parent else msg.user
        if msg.edited_ts:
            data["edited"] = {"user": msg.user, "ts": msg.edited_ts}
        if reactions and msg.reactions:  # Slack omits the key when there are none
            data["reactions"] = [
                {"name": name, "users": list(users), "count": len(users)}
                for name, users in msg.reactions.items()
            ]
        return data

    # --- methods -------------------------------------------------------------------
    def auth_test(self, args: Args, me: SlackSandboxUser) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://sandbox.slack.com/",
            "team": "Sandbox",
            "user": me.name,
            "team_id": "T0SANDBOX",
            "user_id": me.id,
            "bot_id": me.bot_id,
            "is_enterprise_install": False,
        }

    def post_message(self, args: Args, me: SlackSandboxUser) -> dict[str, Any]:
        from sandbox.slack import SlackMessage

        channel = self._channel(args, me, post=True)
        if isinstance(channel, dict):
            return channel
        text, blocks, problem = self._content(args, required=True)
        if problem is not None:
            return problem
        thread_ts = args.get("thread_ts")
        if thread_ts is not None:
            parent = self.s.find(channel, str(thread_ts))
            if parent is None:
                return _fail("thread_not_found")
            thread_ts = parent.thread_ts or parent.ts  # a reply's ts means its thread
            root = self.s.find(channel, thread_ts)
            if root is not None and root.thread_ts is None:
                root.thread_ts = root.ts  # a parent carries its own ts as thread_ts
        options = {
            k: args.values.get(k)
            for k in ("unfurl_links", "unfurl_media", "link_names", "parse", "mrkdwn")
        }
        msg = SlackMessage(
            channel=channel,
            ts=self.s.new_ts(),
            user=me.id,
            bot_id=me.bot_id,
            text=text or "",
            blocks=blocks or [],
            thread_ts=thread_ts,
            options=options,
        )
        self.s.store(msg, bare_names=_bare_names(args))
        return {"ok": True, "channel": channel, "ts": msg.ts, "message": self.message_json(msg)}

    def update(self, args: Args, me: SlackSandboxUser) -> dict[str, Any]:
        channel = self._channel(args, me)
        if isinstance(channel, dict):
            return channel
        ts = args.get("ts")
        msg = self.s.find(channel, str(ts)) if ts else None
        if msg is None:
            return _fail("message_not_found")
        if msg.user != me.id:
            return _fail("cant_update_message")
        text, blocks, problem = self._content(args, required=True)
        if problem is not None:
            return problem
        self.s.update(msg, text or "", blocks, bare_names=_bare_names(args))
        return {
            "ok": True,
            "channel": channel,
            "ts": msg.ts,
            "text": msg.text,
            "message": self.message_json(msg),
        }

    def react(self, args: Args, me: SlackSandboxUser) -> dict[str, Any]:
        channel, ts, name = args.get("channel"), args.get("timestamp"), args.get("name")
        if not channel or not ts:
            return _fail("no_item_specified")
        found = self._channel(args, me)
        if isinstance(found, dict):
            return found
        msg = self.s.find(found, str(ts))
        if msg is None:
            return _fail("message_not_found")
        if not isinstance(name, str) or not _emoji_name(name):
            return _fail("invalid_name")
        if me.id in msg.reactions.get(name, []):
            return _fail("already_reacted")
        self.s.react(found, msg.ts, name, me.id)
        return {"ok": True}

    def reactions(self, args: Args, me: SlackSandboxUser) -> dict[str, Any]:
        channel, ts = args.get("channel"), args.get("timestamp")
        if not channel or not ts:
            return _fail("no_item_specified")
        found = self._channel(args, me)
        if isinstance(found, dict):
            return found
        msg = self.s.find(found, str(ts))
        if msg is None:
            return _fail("message_not_found")
        data = self.message_json(msg, reactions=True)
        if not args.flag("full"):
            # Without full=true Slack may leave reactors out of `users` (count stays true).
            for reaction in data.get("reactions", []):
                reaction["users"] = reaction["users"][:REACTORS_WITHOUT_FULL]
        data["permalink"] = f"https://sandbox.slack.com/archives/{found}/p{msg.ts.replace('.', '')}"
        return {"ok": True, "type": "message", "channel": found, "message": data}

    def user_info(self, args: Args, me: SlackSandboxUser) -> dict[str, Any]:
        ref = args.get("user")
        if not ref:
            return _invalid_arguments("user")
        try:
            user = self.s.user(str(ref))
        except KeyError:
            return _fail("user_not_found")
        if user.id != ref:  # users.info takes ids only
            return _fail("user_not_found")
        return {"ok": True, "user": user.to_json()}

    def usergroup_users(self, args: Args, me: SlackSandboxUser) -> dict[str, Any]:
        group = args.get("usergroup")
        if not group:
            return _invalid_arguments("usergroup")
        if group not in self.s.usergroups:
            return _fail("no_such_subteam")
        return {"ok": True, "users": list(self.s.usergroups[group])}

    def members(self, args: Args, me: SlackSandboxUser) -> dict[str, Any]:
        found = self._channel(args, me)
        if isinstance(found, dict):
            return found
        try:
            limit = int(args.get("limit") or 100)
            start = int(args.get("cursor") or 0)
        except ValueError:
            return _fail("invalid_cursor")
        limit = max(1, min(limit, PAGE_MAX))
        ids = self.s.channel_members(found)
        page = ids[start : start + limit]
        more = start + limit < len(ids)
        return {
            "ok": True,
            "members": page,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    # --- control -------------------------------------------------------------------
    def _control_body(self, req: Request, *keys: str) -> dict[str, Any] | Response:
        try:
            body = req.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or any(not isinstance(body.get(k), str) for k in keys):
            return Response(400, {"detail": f"expected JSON with string {', '.join(keys)}"})
        return body

    def control_react(self, req: Request) -> Response:
        body = self._control_body(req, "channel", "ts", "name", "user")
        if isinstance(body, Response):
            return body
        action = self.s.react if req.method == "PUT" else self.s.unreact
        try:
            action(body["channel"], body["ts"], body["name"], body["user"])
        except KeyError as exc:
            return Response(404, {"detail": str(exc)})
        return Response(204)

    def control_delete(self, req: Request) -> Response:
        body = self._control_body(req, "channel", "ts")
        if isinstance(body, Response):
            return body
        try:
            self.s.delete_message(body["channel"], body["ts"])
        except KeyError as exc:
            return Response(404, {"detail": str(exc)})
        return Response(204)

    def control_messages(self, req: Request) -> Response:
        return Response(200, self.s.messages(req.arg("channel"), include_deleted=True))

    def control_pings(self, req: Request) -> Response:
        return Response(200, self.s.pings(req.arg("channel")))

    def control_rate_limit(self, req: Request) -> Response:
        try:
            spec = req.json()
        except ValueError:
            spec = None
        if not isinstance(spec, dict):
            return Response(400, {"detail": "expected a JSON object"})
        self.s.rate_limit(
            spec.get("method", ".*"),
            retry_after=int(spec.get("retry_after", 1)),
            times=int(spec.get("times", 1)),
        )
        return Response(204)


REACTORS_WITHOUT_FULL = 50


def _emoji_name(name: str) -> bool:
    """A Slack emoji name (`white_check_mark`, `x`, `+1`), not a character or `:name:`."""
    return bool(name) and name.isascii() and all(c.isalnum() or c in "_+-'" for c in name)


def _bare_names(args: Args) -> bool:
    """Whether Slack would also link bare `@channel`-style names in this post."""
    return bool(args.flag("link_names")) or args.get("parse") == "full"
