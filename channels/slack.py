"""The Slack adapter of the chat-channel port: Block Kit through `clients.slack`.

Messages become Block Kit (`channels.slack_render`, every string from data escaped: Slack
has no `allowed_mentions`); a request gets the bot's own ✅ (`white_check_mark`) and ❌
(`x`); its follow-ups go in its thread; its outcome is added to its card (read back with
`reactions.get`) by `chat.update`, and a decision is also replied in its thread.
Reactions are read with `reactions.get` (`full=true`) over the Web API, so no public
endpoint and no Socket Mode are needed; the app's own user and every bot (`users.info`)
are set apart. Who may approve is `core.approval.may_approve`, the rule Discord uses, with
user-group membership (`usergroups.users.list`, cached) in the part of Discord's roles and
the workspace in the part of its guild; "any channel member" is checked with
`conversations.members` (cached).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from prefect.exceptions import MissingContextError
from prefect.logging import get_logger, get_run_logger

from blocks.slack import SlackBot
from channels.port import Ballot, Posted, Reaction
from channels.slack_blocks import SlackMessage
from channels.slack_render import CHANNEL, decided_card, outcome_only, outcome_reply, render
from clients.errors import SlackNotFound, UpstreamError
from core.approval import APPROVE, REJECT, may_approve, request_channel, roles_needed
from core.approvers import Approvers
from core.messages import ApprovalCard, ChatMessage, DecisionOutcome, RequestUpdate
from core.records import ApprovalRequest
from core.wire import SlackIdentity, SlackUser

if TYPE_CHECKING:  # slack_sdk and aiohttp load only when a Slack client is built
    from clients.slack import SlackClient

# The port's emoji and Slack's names for them on the wire; other reactions are ignored.
EMOJI_NAMES = {APPROVE: "white_check_mark", REJECT: "x"}
EMOJI_OF = {name: emoji for emoji, name in EMOJI_NAMES.items()}
# Slack's user groups belong to the token's workspace: `core.approval` looks group
# membership up within it as it looks roles up within a Discord guild.
WORKSPACE = "slack-workspace"


def _log() -> Any:
    """The flow run's logger inside a run (its logs then show in the UI), else this
    module's (the plain listener process)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return get_logger("remediation.slack")


class SlackChannel:
    """The approvals channel of one Slack app's bot (`blocks.slack.SlackBot`)."""

    name = "slack"
    title = CHANNEL  # how the words name this channel ("react ✅ in Slack")

    def __init__(self, bot: SlackBot, client: SlackClient) -> None:
        self.bot, self.client = bot, client
        self.channel_id = bot.channel_id
        self.approvers = Approvers(
            user_ids=bot.approver_user_ids,
            role_ids=bot.approver_usergroup_ids,
            any_member=bot.allow_any_channel_member,
        )
        # caches, not state: who the token is, each user seen (None: not found), and
        # each approver group's members with when they were read
        self._identity: SlackIdentity | None = None
        self._users: dict[str, SlackUser | None] = {}
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._members: tuple[float, frozenset[str]] | None = None

    @classmethod
    def from_block(cls, bot: SlackBot) -> SlackChannel:
        return cls(bot, bot.get_client())

    def _channel(self, request: ApprovalRequest) -> str:
        return request_channel(request, self.channel_id)

    def render(self, message: ChatMessage) -> SlackMessage:
        """The Block Kit of `message`; a plain-text fallback is logged."""
        out = render(message)
        if out.notice is not None:
            _log().error("%s", out.notice)
        return out

    # --- posting ----------------------------------------------------------------------
    async def _post(
        self, channel: str, message: ChatMessage, thread_ts: str | None = None
    ) -> Posted:
        rendered = self.render(message)
        sent = await self.client.post_message(
            channel, text=rendered.text, blocks=rendered.blocks, thread_ts=thread_ts
        )
        notices = [rendered.notice] if rendered.notice is not None else []
        return Posted(channel_id=sent.channel, message_id=sent.ts, notices=notices)

    async def post(self, message: ChatMessage) -> Posted:
        return await self._post(self.channel_id, message)

    async def ask(self, card: ApprovalCard) -> Posted:
        posted = await self._post(self.channel_id, card)
        for emoji, name in EMOJI_NAMES.items():
            try:
                await self.client.add_reaction(posted.channel_id, posted.message_id, name)
            except UpstreamError as exc:  # people can still add the reaction themselves
                _log().warning("could not add %s to the approval request: %s", emoji, exc)
        return posted

    async def post_in_thread(self, request: ApprovalRequest, message: ChatMessage) -> Posted:
        return await self._post(self._channel(request), message, thread_ts=request.message_id)

    async def update_request(self, request: ApprovalRequest, update: RequestUpdate) -> None:
        """Show the outcome on the request, its card kept (as Discord keeps its embeds),
        and for a decision also reply with it in the thread: an edit notifies no one.

        The card is read back (`reactions.get` returns the message) and sent again with
        the outcome after its header and without its link button (`chat.update` without
        blocks would keep the card but show nothing new). A deleted request is left
        alone."""
        assert request.message_id is not None
        channel, ts = self._channel(request), request.message_id
        text = update.text() if isinstance(update, DecisionOutcome) else update.text
        try:
            card = (await self.client.get_message(channel, ts)).blocks
        except SlackNotFound:
            return  # deleted: nothing left to edit
        except UpstreamError as exc:
            _log().warning(
                "could not read the approval request back, its card is replaced: %s", exc
            )
            card = None
        edited = (
            decided_card(card, text)
            if card
            else outcome_only(text, request.action_id, request.risk.value)
        )
        try:
            await self.client.update_message(channel, ts, text=edited.text, blocks=edited.blocks)
        except SlackNotFound:
            return  # deleted meanwhile
        if isinstance(update, DecisionOutcome):
            reply = outcome_reply(text)
            try:
                await self.client.post_message(
                    channel, text=reply.text, blocks=reply.blocks, thread_ts=ts
                )
            except UpstreamError as exc:  # the edit shows it; a retry would edit again
                _log().warning("could not reply with the decision in the thread: %s", exc)

    # --- deciding ---------------------------------------------------------------------
    async def identity(self) -> SlackIdentity:
        """Who the token is (`auth.test`), asked once."""
        if self._identity is None:
            self._identity = await self.client.auth_test()
        return self._identity

    async def user(self, user_id: str) -> SlackUser | None:
        """`users.info` of a user, asked once per user (None: no such user)."""
        if user_id not in self._users:
            try:
                self._users[user_id] = await self.client.user_info(user_id)
            except SlackNotFound:
                self._users[user_id] = None
        return self._users[user_id]

    async def read_ballot(self, request: ApprovalRequest) -> Ballot:
        assert request.message_id is not None
        bots = {(await self.identity()).user_id}
        try:
            found = await self.client.get_reactions(self._channel(request), request.message_id)
        except SlackNotFound:
            return Ballot(bot_ids=bots, gone=True)
        by_emoji = {EMOJI_OF[r.name]: r.users for r in found if r.name in EMOJI_OF}
        reactions: list[Reaction] = []
        for emoji in (REJECT, APPROVE):
            for user_id in by_emoji.get(emoji, []):
                user = await self.user(user_id)
                if user_id in bots or (user is not None and user.is_bot):
                    bots.add(user_id)
                    continue
                name = user.name if user is not None else user_id
                reactions.append(Reaction(user_id=user_id, username=name, emoji=emoji))
        return Ballot(reactions=reactions, bot_ids=bots)

    async def group_members(self, group_id: str, cache_seconds: float) -> frozenset[str]:
        """The members of one approver user group, reused for `cache_seconds`."""
        cached = self._groups.get(group_id)
        if cached is not None and time.monotonic() - cached[0] < cache_seconds:
            return cached[1]
        try:
            members = frozenset(await self.client.usergroup_users(group_id))
        except SlackNotFound as exc:  # a deleted group approves nobody
            _log().warning("approver user group %s: %s", group_id, exc)
            members = frozenset()
        self._groups[group_id] = (time.monotonic(), members)
        return members

    async def channel_members(self, cache_seconds: float) -> frozenset[str]:
        """The approvals channel's members (`conversations.members`), reused for
        `cache_seconds`."""
        cached = self._members
        if cached is not None and time.monotonic() - cached[0] < cache_seconds:
            return cached[1]
        try:
            members = frozenset(await self.client.channel_members(self.channel_id))
        except SlackNotFound as exc:  # no such channel: nobody is a member
            _log().warning("approvals channel %s: %s", self.channel_id, exc)
            members = frozenset()
        self._members = (time.monotonic(), members)
        return members

    async def member_groups(self, user_id: str, cache_seconds: float) -> list[str] | None:
        """The approver groups a person is in (None: no such user, deactivated, a bot,
        or, when any channel member may approve, not in the channel).

        Slack's Web API has no per-user group list, so each approver group's members are
        read (and cached) instead."""
        user = await self.user(user_id)
        if user is None or user.deleted or user.is_bot:
            return None
        if not self.approvers.role_ids:  # any channel member (`roles_needed`)
            return [] if user_id in await self.channel_members(cache_seconds) else None
        return [
            g
            for g in self.approvers.role_ids
            if user_id in await self.group_members(g, cache_seconds)
        ]

    async def may_approve(self, user_id: str, *, cache_seconds: float) -> bool:
        """`core.approval.may_approve`, with the person's approver groups looked up when
        needed (with `allow_any_channel_member`: any person in the channel, not a bot, not
        deactivated)."""
        workspace = (await self.identity()).team_id or WORKSPACE
        needed = roles_needed(user_id, self.approvers, workspace)
        groups = await self.member_groups(user_id, cache_seconds) if needed else None
        return may_approve(user_id, self.approvers, guild_id=workspace, roles=groups)

    async def aclose(self) -> None:
        await self.client.aclose()
