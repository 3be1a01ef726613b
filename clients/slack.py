"""PLACEHOLDER of the Slack client contract (replaced by the slack-wire branch).

Only the signatures the adapter codes against; every call raises NotImplementedError.
"""

from __future__ import annotations

from typing import Any

from core.wire import SlackIdentity, SlackPosted, SlackReaction, SlackUser

__all__ = ["SlackClient", "SlackIdentity", "SlackPosted", "SlackReaction", "SlackUser"]


class SlackClient:
    def __init__(
        self,
        token: str,
        *,
        api_base: str = "https://slack.com/api/",
        timeout: float = 10.0,
        rate_limit_retries: int = 3,
    ) -> None:
        self.api_base, self.timeout, self.rate_limit_retries = api_base, timeout, rate_limit_retries
        self._token = token

    async def auth_test(self) -> SlackIdentity:
        raise NotImplementedError

    async def post_message(
        self,
        channel: str,
        *,
        text: str,
        blocks: list[dict[str, Any]],
        thread_ts: str | None = None,
    ) -> SlackPosted:
        raise NotImplementedError

    async def update_message(
        self, channel: str, ts: str, *, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        raise NotImplementedError

    async def add_reaction(self, channel: str, ts: str, name: str) -> None:
        raise NotImplementedError

    async def get_reactions(self, channel: str, ts: str) -> list[SlackReaction]:
        raise NotImplementedError

    async def user_info(self, user_id: str) -> SlackUser:
        raise NotImplementedError

    async def usergroup_users(self, usergroup: str) -> list[str]:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None
