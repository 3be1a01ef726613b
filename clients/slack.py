"""Slack's Web API through slack_sdk's `AsyncWebClient`: post, edit, react, read a
message and its reactions, users, user groups and channel members.

Every post sends `unfurl_links=false, unfurl_media=false` and neither `link_names` nor
`parse` (so Slack's default, no parsing: only `<…>` mention syntax could notify, and
callers escape data). Slack answers errors as HTTP 200 `{"ok": false, "error": code}`;
each code becomes a typed `SlackError` (clients/errors.py). HTTP 429 is waited out for
`Retry-After` by slack_sdk's `AsyncRateLimitErrorRetryHandler` up to
`rate_limit_retries` times, then `SlackRateLimited`. Connection failures are retried
once, except that a `chat.postMessage` is retried only when the connection was never
made: a post that may have reached Slack is not sent twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from clients.errors import (
    SlackAuthError,
    SlackError,
    SlackInvalidBlocks,
    SlackMessageTooLong,
    SlackMissingScope,
    SlackNotFound,
    SlackNotInChannel,
    SlackRateLimited,
)
from core.wire import (
    SlackFetchedMessage,
    SlackIdentity,
    SlackPosted,
    SlackReaction,
    SlackUser,
)

T = TypeVar("T")
DEFAULT_API_BASE = "https://slack.com/api/"
SLACKBOT_ID = "USLACKBOT"  # Slack's own bot: `is_bot` is false for it
NEVER_RESENT = "chat.postMessage"  # not idempotent: resent only if never sent
MEMBERS_PAGE = 1000  # conversations.members' largest page
MEMBERS_PAGES_MAX = 100  # 100,000 members: a cursor that never ends stops here

ERRORS: dict[str, type[SlackError]] = {
    **dict.fromkeys(
        (
            "channel_not_found",
            "message_not_found",
            "thread_not_found",
            "user_not_found",
            "no_such_subteam",
        ),
        SlackNotFound,
    ),
    "not_in_channel": SlackNotInChannel,
    **dict.fromkeys(
        ("invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"),
        SlackAuthError,
    ),
    "missing_scope": SlackMissingScope,
    "msg_too_long": SlackMessageTooLong,
    "invalid_blocks": SlackInvalidBlocks,
    "invalid_blocks_format": SlackInvalidBlocks,
    "ratelimited": SlackRateLimited,
}


class _ResendSafeConnectionRetry(AsyncConnectionErrorRetryHandler):
    """slack_sdk's connection-error retry, but a post only when it never left: a
    dropped connection after sending (`ServerDisconnectedError`, a reset) may mean
    Slack already posted it."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if request.url.endswith(f"/{NEVER_RESENT}"):
            return isinstance(error, aiohttp.ClientConnectorError)
        return await super()._can_retry_async(
            state=state, request=request, response=response, error=error
        )


class SlackClient:
    """A bot's view of Slack; `api_base` points at the real API or the sandbox.

    slack_sdk opens one aiohttp session per call (none is shared), so one client can
    serve calls from different event loops, and `aclose()` has nothing to leak.
    """

    def __init__(
        self,
        token: str,
        *,
        api_base: str = DEFAULT_API_BASE,
        timeout: float = 10.0,
        rate_limit_retries: int = 3,
    ) -> None:
        self.api_base = api_base if api_base.endswith("/") else f"{api_base}/"
        self.timeout = timeout
        self._secrets = (token,) if token else ()
        self._web = AsyncWebClient(
            token=token,
            base_url=self.api_base,
            timeout=timeout,  # type: ignore[arg-type]  # aiohttp takes float seconds
            retry_handlers=[
                _ResendSafeConnectionRetry(max_retry_count=1),
                AsyncRateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),
            ],
        )

    def __repr__(self) -> str:
        return f"SlackClient(api_base={self.api_base!r})"

    # --- identity ------------------------------------------------------------------
    async def auth_test(self) -> SlackIdentity:
        data = await self._call("auth.test", self._web.auth_test)
        return self._read(
            "auth.test",
            data,
            lambda d: SlackIdentity(
                user_id=str(d["user_id"]),
                bot_id=d.get("bot_id") or None,
                team_id=d.get("team_id") or None,
            ),
        )

    # --- messages ------------------------------------------------------------------
    async def post_message(
        self,
        channel: str,
        *,
        text: str,
        blocks: list[dict[str, Any]],
        thread_ts: str | None = None,
    ) -> SlackPosted:
        """Post `text` (the notification fallback) with `blocks`, in a thread if given."""
        data = await self._call(
            "chat.postMessage",
            lambda: self._web.chat_postMessage(
                channel=channel,
                text=text,
                blocks=blocks,
                thread_ts=thread_ts,
                unfurl_links=False,
                unfurl_media=False,
            ),
        )
        return self._read(
            "chat.postMessage",
            data,
            lambda d: SlackPosted(channel=str(d["channel"]), ts=str(d["ts"])),
        )

    async def update_message(
        self,
        channel: str,
        ts: str,
        *,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        """Replace the text, and the blocks when given (None keeps the current ones)."""
        await self._call(
            "chat.update",
            lambda: self._web.chat_update(channel=channel, ts=ts, text=text, blocks=blocks),
        )

    # --- reactions -----------------------------------------------------------------
    async def add_reaction(self, channel: str, ts: str, name: str) -> None:
        """React as the bot with emoji `name` (`white_check_mark`); already there is fine."""
        await self._call(
            "reactions.add",
            lambda: self._web.reactions_add(channel=channel, timestamp=ts, name=name),
            ok_errors=("already_reacted",),
        )

    async def get_message(self, channel: str, ts: str) -> SlackFetchedMessage:
        """The message with its blocks and every reaction with everyone who added it
        (`reactions.get`, `full=true`: it returns the whole message)."""
        data = await self._call(
            "reactions.get",
            lambda: self._web.reactions_get(channel=channel, timestamp=ts, full=True),
        )
        return self._read("reactions.get", data, lambda d: _message(d["message"]))

    async def get_reactions(self, channel: str, ts: str) -> list[SlackReaction]:
        """Every reaction on the message with everyone who added it (`full=true`)."""
        return (await self.get_message(channel, ts)).reactions

    # --- users ---------------------------------------------------------------------
    async def user_info(self, user_id: str) -> SlackUser:
        data = await self._call("users.info", lambda: self._web.users_info(user=user_id))
        return self._read("users.info", data, lambda d: _user(d["user"]))

    async def usergroup_users(self, usergroup: str) -> list[str]:
        """The user ids in a user group (`S…`)."""
        data = await self._call(
            "usergroups.users.list",
            lambda: self._web.usergroups_users_list(usergroup=usergroup),
        )
        return self._read("usergroups.users.list", data, lambda d: [str(u) for u in d["users"]])

    async def channel_members(self, channel: str) -> set[str]:
        """The user ids of everyone in the channel, bots included (`conversations.members`,
        every page)."""
        members: set[str] = set()
        cursor: str | None = None
        for _ in range(MEMBERS_PAGES_MAX):
            data = await self._call(
                "conversations.members",
                lambda c=cursor: self._web.conversations_members(
                    channel=channel, cursor=c, limit=MEMBERS_PAGE
                ),
            )
            page, cursor = self._read("conversations.members", data, _members_page)
            members |= page
            if not cursor:
                break
        return members

    async def aclose(self) -> None:
        """Nothing to release (see the class note); here for the clients' common shape."""
        session = self._web.session
        if session is not None and not session.closed:
            await session.close()

    # --- transport -----------------------------------------------------------------
    async def _call(
        self,
        operation: str,
        send: Callable[[], Awaitable[AsyncSlackResponse]],
        *,
        ok_errors: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """The answer's JSON; every failure becomes a typed `SlackError`."""
        try:
            resp = await send()
        except SlackApiError as exc:
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            if exc.response.status_code == 200 and data.get("error") in ok_errors:
                return data
            # `from None`: slack_sdk's own message quotes the raw answer, which a proxy
            # or a misbehaving server may have filled with the token
            raise self._api_error(operation, exc.response) from None
        except aiohttp.ClientConnectorError as exc:
            detail = f"cannot connect to {self.api_base}: {exc}"
            raise self._fail(operation, detail, request_sent=False) from exc
        except TimeoutError as exc:  # aiohttp's total timeout (asyncio.TimeoutError)
            raise self._fail(operation, f"no answer within {self.timeout:g} s") from exc
        except aiohttp.ClientError as exc:
            raise self._fail(operation, f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(resp.data, dict):
            raise self._fail(operation, "unreadable answer: not a JSON object")
        return resp.data

    def _fail(self, operation: str, detail: str, *, request_sent: bool = True) -> SlackError:
        return SlackError(operation, detail, secrets=self._secrets, request_sent=request_sent)

    def _api_error(self, operation: str, resp: AsyncSlackResponse) -> SlackError:
        data = resp.data if isinstance(resp.data, dict) else {}
        status = resp.status_code
        code = str(data.get("error") or "")
        secrets = self._secrets
        if status == 429:
            retry_after = _retry_after(resp.headers)
            detail = f"still rate limited (HTTP 429, Retry-After {retry_after}) after the retries"
            return SlackRateLimited(
                operation,
                detail,
                error=code or "ratelimited",
                retry_after=retry_after,
                status_code=status,
                secrets=secrets,
            )
        if not code:
            body = data or str(resp.data)[:300]
            return SlackError(
                operation, f"unexpected answer: {body}", status_code=status, secrets=secrets
            )
        detail = _detail(code, data)
        kind = ERRORS.get(code, SlackError)
        status_code = None if status == 200 else status  # Slack's errors are HTTP 200
        if kind is SlackMissingScope:
            return SlackMissingScope(
                operation,
                detail,
                error=code,
                needed=str(data.get("needed") or ""),
                provided=str(data.get("provided") or ""),
                status_code=status_code,
                secrets=secrets,
            )
        if kind is SlackRateLimited:
            return SlackRateLimited(
                operation, detail, error=code, status_code=status_code, secrets=secrets
            )
        return kind(operation, detail, error=code, status_code=status_code, secrets=secrets)

    def _read(self, operation: str, data: dict[str, Any], parse: Callable[[Any], T]) -> T:
        """`parse(data)`, a malformed answer becoming a `SlackError`."""
        try:
            return parse(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            detail = f"unreadable answer ({type(exc).__name__}: {exc}): {str(data)[:300]}"
            raise self._fail(operation, detail) from exc


def _detail(code: str, data: dict[str, Any]) -> str:
    """Slack's code plus what it says about it (`needed`, block errors)."""
    parts = [code]
    if data.get("needed"):
        parts.append(f"needed {data['needed']}; provided {data.get('provided') or 'none'}")
    messages = (data.get("response_metadata") or {}).get("messages") or data.get("errors") or []
    if isinstance(messages, list):
        parts += [str(m) for m in messages[:10]]
    return "; ".join(parts)


def _retry_after(headers: Any) -> float | None:
    try:
        value = next(v for k, v in dict(headers or {}).items() if k.lower() == "retry-after")
        return float(value[0] if isinstance(value, list) else value)
    except (StopIteration, TypeError, ValueError, IndexError):
        return None


def _message(data: dict[str, Any]) -> SlackFetchedMessage:
    return SlackFetchedMessage(
        text=str(data.get("text") or ""),
        blocks=[dict(b) for b in data.get("blocks") or []],
        reactions=[
            SlackReaction(
                name=str(r["name"]),
                users=[str(u) for u in r.get("users") or []],
                count=int(r.get("count", 0)),
            )
            for r in data.get("reactions") or []
        ],
    )


def _members_page(data: dict[str, Any]) -> tuple[set[str], str | None]:
    """One page's member ids and the cursor of the next ("" or none: the last page)."""
    cursor = (data.get("response_metadata") or {}).get("next_cursor") or None
    return {str(u) for u in data["members"]}, cursor


def _user(data: dict[str, Any]) -> SlackUser:
    profile = data.get("profile") or {}
    is_bot = bool(data.get("is_bot")) or bool(profile.get("bot_id")) or data["id"] == SLACKBOT_ID
    return SlackUser(
        id=str(data["id"]),
        name=str(data.get("name") or ""),
        is_bot=is_bot,
        deleted=bool(data.get("deleted")),
    )
