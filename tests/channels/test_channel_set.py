"""Several chat channels as one (`channels.channel_set.ChannelSet`), over the real Discord
and Slack adapters and their sandboxes: asked in each, one ballot from both, edits in
each, and a channel that fails degrading the set visibly instead of silently."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from blocks.discord import DiscordBot
from blocks.slack import SlackBot
from channels.channel_set import ChannelSet, decode_ids, encode_ids
from channels.discord import DiscordChannel
from channels.port import Posted
from channels.slack import SlackChannel
from clients.errors import UpstreamError
from core.approvers import Approvers
from core.messages import ApprovalCard, DecisionOutcome
from core.policy import Policy
from core.records import ApprovalRequest, Decision
from tests.core.factories import NOW, action, issue, vet
from tests.fixtures import loki_discord as d
from tests.fixtures import slack as s

[ACTION] = vet([action()], [issue()]).approved
LEVEL = Policy().risk.level(ACTION.risk)


@pytest.fixture
async def both(discord: Any, slack: Any) -> AsyncIterator[ChannelSet]:
    channels = ChannelSet(
        [
            DiscordChannel.from_block(
                DiscordBot(
                    bot_token=SecretStr(d.BOT_TOKEN),
                    approvals_channel_id=d.CHANNEL_ID,
                    guild_id=d.GUILD_ID,
                    approver_role_ids=[d.APPROVER_ROLE_ID],
                    api_base_url=discord.api_base,
                )
            ),
            SlackChannel.from_block(
                SlackBot(
                    bot_token=SecretStr(s.BOT_TOKEN),
                    channel_id=s.CHANNEL_ID,
                    approver_usergroup_ids=[s.APPROVERS_GROUP_ID],
                    api_base_url=slack.api_base,
                )
            ),
        ]
    )
    yield channels
    await channels.aclose()


def card(approvers: Approvers | None = None) -> ApprovalCard:
    return ApprovalCard(
        action=ACTION,
        level=LEVEL,
        deadline=NOW + timedelta(minutes=5),
        approvers=approvers or Approvers(),
    )


def request(posted: Posted) -> ApprovalRequest:
    return ApprovalRequest(
        action_id=ACTION.action_id,
        channel_id=posted.channel_id,
        message_id=posted.message_id,
        flow_run_id=None,
        risk=ACTION.risk,
        deadline=NOW + timedelta(minutes=5),
        policy_hash="p",
        requested_at=NOW,
    )


def test_the_ids_of_several_channels_round_trip_and_a_single_channels_belong_to_none() -> None:
    posted = {
        "discord": Posted(channel_id="1300", message_id="1400"),
        "slack": Posted(channel_id="C0APPROVALS", message_id="1733580000.000100"),
    }
    channel_id, message_id = encode_ids(posted)
    assert channel_id == "discord=1300;slack=C0APPROVALS"
    own = decode_ids(request(Posted(channel_id=channel_id, message_id=message_id)))
    assert {n: (r.channel_id, r.message_id) for n, r in own.items()} == {
        "discord": ("1300", "1400"),
        "slack": ("C0APPROVALS", "1733580000.000100"),
    }
    assert decode_ids(request(Posted(channel_id="1300", message_id="1400"))) == {}


async def test_asked_in_both_one_ballot_and_both_requests_edited(
    both: ChannelSet, discord: Any, slack: Any
) -> None:
    assert both.title == "Discord and Slack" and both.name == "chat"
    req = request(await both.ask(card(both.approvers)))  # as the action run asks
    own = decode_ids(req)
    # each card names its own channel's approvers, never the set's prefixed ids
    shown = json.dumps(discord.message(d.CHANNEL_ID, own["discord"].message_id).embeds)
    assert f"<@&{d.APPROVER_ROLE_ID}>" in shown and "discord:" not in shown
    blocks = json.dumps(slack.message(s.CHANNEL_ID, own["slack"].message_id)["blocks"])
    assert s.APPROVERS_GROUP_ID in blocks and "slack:" not in blocks
    discord.react(d.CHANNEL_ID, own["discord"].message_id, "✅", "alice")
    slack.react(s.CHANNEL_ID, own["slack"].message_id, "x", "bob")
    slack.react(s.CHANNEL_ID, own["slack"].message_id, "white_check_mark", "helper-bot")
    ballot = await both.read_ballot(req)
    assert sorted((r.user_id, r.username, r.emoji) for r in ballot.reactions) == [
        (f"discord:{d.ALICE_ID}", "alice (Discord)", "✅"),
        (f"slack:{s.BOB_ID}", "bob (Slack)", "❌"),
    ]
    assert {f"discord:{d.BOT_USER_ID}", f"slack:{s.BOT_USER_ID}"} <= ballot.bot_ids
    assert f"slack:{s.OTHER_BOT_USER_ID}" in ballot.bot_ids
    # each vote is checked against its own channel's approvers
    assert await both.may_approve(f"discord:{d.ALICE_ID}", cache_seconds=60)
    assert await both.may_approve(f"slack:{s.BOB_ID}", cache_seconds=60)
    assert not await both.may_approve(f"slack:{s.MALLORY_ID}", cache_seconds=60)
    assert not await both.may_approve(s.BOB_ID, cache_seconds=60)  # no channel: nobody
    decision = Decision(
        action_id=ACTION.action_id,
        decision="reject",
        decider="bob (Slack)",
        via="chat",
        intended_at=NOW,
    )
    await both.update_request(req, DecisionOutcome(decision=decision))
    assert discord.message(d.CHANNEL_ID, own["discord"].message_id).content == (
        "❌ Rejected by bob (Slack)"
    )
    assert slack.message(s.CHANNEL_ID, own["slack"].message_id)["text"] == (
        "❌ Rejected by bob (Slack)"
    )
    assert slack.pings() == []


async def test_a_channel_that_cannot_post_is_left_out_and_the_other_still_asks(
    both: ChannelSet, slack: Any
) -> None:
    slack.inject(
        method="POST",
        path=r"/api/chat\.postMessage",
        status=200,
        body={"ok": False, "error": "not_in_channel"},
    )
    posted = await both.ask(card())
    assert set(decode_ids(request(posted))) == {"discord"}  # asked where it could be


async def test_every_channel_failing_raises_and_an_unreadable_ballot_decides_nothing(
    both: ChannelSet, discord: Any, slack: Any
) -> None:
    req = request(await both.ask(card()))
    # one channel's votes cannot be read: deciding on the other alone could miss a ❌
    slack.inject(method="GET", path=r"/api/reactions\.get", status=200,
                 body={"ok": False, "error": "ratelimited"})  # fmt: skip
    with pytest.raises(UpstreamError):
        await both.read_ballot(req)
    # deleted in one channel: people can still object in the other
    own = decode_ids(req)
    discord.delete_message(d.CHANNEL_ID, own["discord"].message_id)
    assert not (await both.read_ballot(req)).gone
    slack.delete_message(s.CHANNEL_ID, own["slack"].message_id)
    assert (await both.read_ballot(req)).gone
    discord.inject(method="POST", path=r".*/messages$", status=500, times=1)
    slack.inject(method="POST", path=r"/api/chat\.postMessage", status=200,
                 body={"ok": False, "error": "channel_not_found"})  # fmt: skip
    with pytest.raises(UpstreamError):
        await both.ask(card())
