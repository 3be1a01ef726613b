"""The Discord adapter of the chat-channel port: embeds through `clients.discord`.

Messages become embeds (`channels.discord_render`) posted with mentions disabled; a
request gets the bot's own ✅ and ❌; its outcome replaces its content; reactions are read
over every page and the bot's own (and every bot's) set apart; who may approve is the
block's user and role ids (member roles looked up, cached), or any guild member when
the block allows it. Discord has no threads for this, so a request's follow-ups go to
its channel.
"""

from __future__ import annotations

import time
from typing import Any

from prefect.exceptions import MissingContextError
from prefect.logging import get_logger, get_run_logger

from blocks.discord import DiscordBot
from channels.discord_fallback import fallback_notices
from channels.discord_render import CHANNEL, embeds, message_url
from channels.port import Ballot, Posted, Reaction
from clients.discord import DiscordClient
from clients.errors import DiscordNotFound, UpstreamError
from core.approval import (
    APPROVE,
    REJECT,
    may_approve,
    request_channel,
    roles_needed,
)
from core.approvers import Approvers
from core.messages import ApprovalCard, ChatMessage, DecisionOutcome, Reminder, RequestUpdate
from core.records import ApprovalRequest
from core.wire import Embed


def _log() -> Any:
    """The flow run's logger inside a run (its logs then show in the UI), else this
    module's (the plain listener process)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return get_logger("remediation.discord")


class DiscordChannel:
    """The approvals channel of one Discord bot (`blocks.discord.DiscordBot`)."""

    name = "discord"
    title = CHANNEL  # how the words name this channel ("react ✅ in Discord")

    def __init__(self, bot: DiscordBot, client: DiscordClient) -> None:
        self.bot, self.client = bot, client
        self.channel_id = bot.approvals_channel_id
        self.approvers = Approvers(
            user_ids=bot.approver_user_ids,
            role_ids=bot.approver_role_ids,
            any_member=bot.allow_any_channel_member,
        )
        self._bot_id: str | None = None
        self._roles: dict[str, tuple[float, list[str] | None]] = {}  # a cache, not state

    @classmethod
    def from_block(cls, bot: DiscordBot) -> DiscordChannel:
        return cls(bot, bot.get_client())

    def _channel(self, request: ApprovalRequest) -> str:
        return request_channel(request, self.bot.approvals_channel_id)

    def render(self, message: ChatMessage, request: ApprovalRequest | None = None) -> list[Embed]:
        """The embeds of `message`; a plain-text fallback among them is logged."""
        url = None
        if isinstance(message, Reminder) and request is not None and request.message_id:
            url = message_url(self.bot.guild_id, self._channel(request), request.message_id)
        out = embeds(message, request_url=url)
        for notice in fallback_notices(out):
            _log().error("%s", notice)
        return out

    # --- posting ----------------------------------------------------------------------
    async def post(self, message: ChatMessage) -> Posted:
        rendered = self.render(message)
        sent = await self.client.create_message(self.bot.approvals_channel_id, embeds=rendered)
        return Posted(
            channel_id=sent.channel_id, message_id=sent.id, notices=fallback_notices(rendered)
        )

    async def ask(self, card: ApprovalCard) -> Posted:
        channel = self.bot.approvals_channel_id
        sent = await self.client.create_message(channel, embeds=self.render(card))
        for emoji in (APPROVE, REJECT):
            try:
                await self.client.add_reaction(channel, sent.id, emoji)
            except UpstreamError as exc:  # people can still add the reaction themselves
                _log().warning("could not add %s to the approval request: %s", emoji, exc)
        return Posted(channel_id=sent.channel_id, message_id=sent.id)

    async def post_in_thread(self, request: ApprovalRequest, message: ChatMessage) -> Posted:
        sent = await self.client.create_message(
            self._channel(request), embeds=self.render(message, request)
        )
        return Posted(channel_id=sent.channel_id, message_id=sent.id)

    async def update_request(self, request: ApprovalRequest, update: RequestUpdate) -> None:
        assert request.message_id is not None
        text = update.text() if isinstance(update, DecisionOutcome) else update.text
        try:
            await self.client.edit_message(self._channel(request), request.message_id, content=text)
        except DiscordNotFound:
            pass  # deleted: nothing left to edit

    # --- deciding ---------------------------------------------------------------------
    async def bot_id(self) -> str:
        if self._bot_id is None:
            self._bot_id = (await self.client.current_user()).id
        return self._bot_id

    async def read_ballot(self, request: ApprovalRequest) -> Ballot:
        assert request.message_id is not None
        channel = self._channel(request)
        bots = {await self.bot_id()}
        reactions: list[Reaction] = []
        try:
            for emoji in (REJECT, APPROVE):
                for user in await self.client.list_reactions(channel, request.message_id, emoji):
                    if user.bot or user.id in bots:
                        bots.add(user.id)
                    else:
                        reactions.append(
                            Reaction(user_id=user.id, username=user.username, emoji=emoji)
                        )
        except DiscordNotFound:
            return Ballot(bot_ids=bots, gone=True)
        return Ballot(reactions=reactions, bot_ids=bots)

    async def member_roles(self, user_id: str, cache_seconds: float) -> list[str] | None:
        """A guild member's role ids (None: not a member), reused for `cache_seconds`."""
        cached = self._roles.get(user_id)
        if cached is not None and time.monotonic() - cached[0] < cache_seconds:
            return cached[1]
        roles = await self.client.member_roles(self.bot.guild_id or "", user_id)
        self._roles[user_id] = (time.monotonic(), roles)
        return roles

    async def may_approve(self, user_id: str, *, cache_seconds: float) -> bool:
        """`core.approval.may_approve`, with the member's roles looked up when needed."""
        guild = self.bot.guild_id
        needed = roles_needed(user_id, self.approvers, guild)
        roles = await self.member_roles(user_id, cache_seconds) if needed else None
        return may_approve(user_id, self.approvers, guild_id=guild, roles=roles)

    async def aclose(self) -> None:
        await self.client.aclose()
