"""The Discord adapter of the chat-channel port, against the sandbox Discord: it asks,
reads reactions back as a ballot, edits requests and says who may approve."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from pydantic import SecretStr

from blocks.discord import DiscordBot
from channels.discord import DiscordChannel
from channels.discord_render import embeds
from channels.port import ChatChannel, Reaction
from channels.registry import spec
from clients.discord import embeds_json
from core.approval import Approvers
from core.messages import ApprovalCard, DecisionOutcome, Reminder
from core.policy import Policy
from core.records import ApprovalRequest, Decision
from sandbox.discord import DiscordServer
from tests.core.factories import NOW, action, issue, vet
from tests.fixtures.loki_discord import (
    ALICE_ID,
    APPROVER_ROLE_ID,
    BOT_TOKEN,
    BOT_USER_ID,
    CHANNEL_ID,
    DAVE_ID,
    GUILD_ID,
    MALLORY_ID,
    OTHER_BOT_ID,
)

[ACTION] = vet([action()], [issue()]).approved
LEVEL = Policy().risk.level(ACTION.risk)
DEADLINE = NOW + timedelta(minutes=5)


@pytest.fixture
async def channel(discord: DiscordServer) -> AsyncIterator[DiscordChannel]:
    bot = DiscordBot(
        bot_token=SecretStr(BOT_TOKEN),
        approvals_channel_id=CHANNEL_ID,
        guild_id=GUILD_ID,
        approver_role_ids=[APPROVER_ROLE_ID],
        api_base_url=discord.api_base,
    )
    chat = DiscordChannel.from_block(bot)
    yield chat
    await chat.aclose()


def card() -> ApprovalCard:
    return ApprovalCard(
        action=ACTION, level=LEVEL, deadline=DEADLINE, approvers=Approvers(role_ids=["1"])
    )


def request_of(message_id: str) -> ApprovalRequest:
    return ApprovalRequest(
        action_id=ACTION.action_id,
        channel_id=CHANNEL_ID,
        message_id=message_id,
        flow_run_id=None,
        risk=ACTION.risk,
        deadline=DEADLINE,
        policy_hash="p",
        requested_at=NOW,
    )


def test_the_registry_builds_the_discord_adapter_from_its_block() -> None:
    discord = spec("discord")
    assert (discord.name, discord.title, discord.block) == ("discord", "Discord", DiscordBot)
    assert discord.connect == DiscordChannel.from_block


async def test_asking_posts_the_card_as_embeds_without_mentions_and_adds_both_reactions(
    discord: DiscordServer, channel: DiscordChannel
) -> None:
    port: ChatChannel = channel  # the adapter is a ChatChannel
    posted = await port.ask(card())
    message = discord.message(CHANNEL_ID, posted.message_id)
    stored = [{k: v for k, v in e.items() if k != "type"} for e in message.embeds]
    assert stored == embeds_json(embeds(card()))  # the sandbox adds Discord's "type"
    assert message.allowed_mentions == {"parse": []} and message.pings == []
    assert {e: u for e, u in discord.reactions(CHANNEL_ID, posted.message_id).items() if u} == {
        "✅": [BOT_USER_ID],
        "❌": [BOT_USER_ID],
    }


async def test_reactions_come_back_as_a_ballot_with_every_bot_set_apart(
    discord: DiscordServer, channel: DiscordChannel
) -> None:
    posted = await channel.ask(card())
    discord.react(CHANNEL_ID, posted.message_id, "✅", "alice")
    discord.react(CHANNEL_ID, posted.message_id, "❌", "mallory")
    discord.react(CHANNEL_ID, posted.message_id, "✅", "helper-bot")
    ballot = await channel.read_ballot(request_of(posted.message_id))
    assert not ballot.gone
    assert ballot.bot_ids == {BOT_USER_ID, OTHER_BOT_ID}
    assert sorted(ballot.reactions, key=lambda r: r.emoji) == [
        Reaction(user_id=ALICE_ID, username="alice", emoji="✅"),
        Reaction(user_id=MALLORY_ID, username="mallory", emoji="❌"),
    ]


async def test_a_deleted_request_reads_as_gone_and_is_not_edited(
    discord: DiscordServer, channel: DiscordChannel
) -> None:
    posted = await channel.ask(card())
    discord.delete_message(CHANNEL_ID, posted.message_id)
    request = request_of(posted.message_id)
    assert (await channel.read_ballot(request)).gone
    decision = Decision(
        action_id=ACTION.action_id, decision="reject", decider="x", via="ui", intended_at=NOW
    )
    await channel.update_request(request, DecisionOutcome(decision=decision))  # no error


async def test_the_request_is_edited_to_show_who_decided(
    discord: DiscordServer, channel: DiscordChannel
) -> None:
    posted = await channel.ask(card())
    decision = Decision(
        action_id=ACTION.action_id,
        decision="approve",
        decider="alice",
        via="discord",
        intended_at=NOW,
    )
    await channel.update_request(request_of(posted.message_id), DecisionOutcome(decision=decision))
    assert discord.message(CHANNEL_ID, posted.message_id).content == "✅ Approved by alice"


async def test_a_reminder_is_posted_beside_its_request_and_links_to_it(
    discord: DiscordServer, channel: DiscordChannel
) -> None:
    posted = await channel.ask(card())
    request = request_of(posted.message_id)
    reminder = Reminder(action=ACTION, level=LEVEL, deadline=DEADLINE, request=request)
    sent = await channel.post_in_thread(request, reminder)
    assert sent.channel_id == CHANNEL_ID
    text = discord.message(CHANNEL_ID, sent.message_id).embeds[0]["description"]
    link = f"https://discord.com/channels/{GUILD_ID}/{CHANNEL_ID}/{posted.message_id}"
    assert f"[the request]({link})" in text


async def test_approvers_are_the_role_holders_and_never_a_stranger(
    channel: DiscordChannel,
) -> None:
    assert await channel.may_approve(ALICE_ID, cache_seconds=60)
    assert not await channel.may_approve(MALLORY_ID, cache_seconds=60)  # no role
    assert not await channel.may_approve(DAVE_ID, cache_seconds=60)  # not a member
