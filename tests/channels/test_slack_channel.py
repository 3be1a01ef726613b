"""The Slack adapter of the chat-channel port, against the sandbox Slack: it asks, reads
reactions back as a ballot, edits requests, posts in threads and says who may approve —
and nothing it posts could ping anyone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from blocks.slack import SlackBot
from channels.port import ChatChannel, Reaction
from channels.slack import SlackChannel
from channels.slack_render import render
from core.approvers import Approvers
from core.messages import ApprovalCard, DecisionOutcome, Reminder, RequestClosed
from core.policy import Policy
from core.records import ApprovalRequest, Decision
from tests.channels.test_slack_render import hostile_action, messages
from tests.core.factories import NOW, action, issue, vet
from tests.fixtures import slack as fixtures

BOT_TOKEN, BOT_USER_ID, CHANNEL_ID = fixtures.BOT_TOKEN, fixtures.BOT_USER_ID, fixtures.CHANNEL_ID
ALICE, BOB, CAROL = fixtures.ALICE_ID, fixtures.BOB_ID, fixtures.CAROL_ID
MALLORY, DAVE, HELPER_BOT = fixtures.MALLORY_ID, fixtures.DAVE_ID, fixtures.OTHER_BOT_USER_ID
OPS = fixtures.OPS_GROUP_ID  # carol's group

[ACTION] = vet([action()], [issue()]).approved
LEVEL = Policy().risk.level(ACTION.risk)
DEADLINE = NOW + timedelta(minutes=5)


def bot_block(slack: Any, **approvers: Any) -> SlackBot:
    return SlackBot(
        bot_token=SecretStr(BOT_TOKEN),
        channel_id=CHANNEL_ID,
        api_base_url=slack.api_base,
        **(approvers or {"approver_user_ids": [ALICE], "approver_usergroup_ids": [OPS]}),
    )


@pytest.fixture
async def channel(slack: Any) -> AsyncIterator[SlackChannel]:
    chat = SlackChannel.from_block(bot_block(slack))
    yield chat
    await chat.aclose()


def card(action_: Any = ACTION) -> ApprovalCard:
    return ApprovalCard(
        action=action_,
        level=LEVEL,
        deadline=DEADLINE,
        approvers=Approvers(user_ids=[ALICE], role_ids=[OPS]),
        ui_url="http://ui/runs/flow-run/1",
    )


def request_of(ts: str) -> ApprovalRequest:
    return ApprovalRequest(
        action_id=ACTION.action_id,
        channel_id=CHANNEL_ID,
        message_id=ts,
        flow_run_id=None,
        risk=ACTION.risk,
        deadline=DEADLINE,
        policy_hash="p",
        requested_at=NOW,
    )


def stored(slack: Any, ts: str) -> dict[str, Any]:
    return slack.message(CHANNEL_ID, ts)


async def test_asking_posts_the_card_and_adds_both_reactions_as_the_bot(
    slack: Any, channel: SlackChannel
) -> None:
    port: ChatChannel = channel  # the adapter is a ChatChannel
    posted = await port.ask(card())
    assert posted.channel_id == CHANNEL_ID
    message = stored(slack, posted.message_id)
    assert message["blocks"] == render(card()).blocks
    assert message["text"] == render(card()).text
    assert message["reactions"] == {"white_check_mark": [BOT_USER_ID], "x": [BOT_USER_ID]}
    assert slack.pings() == []


async def test_reactions_come_back_as_a_ballot_with_the_app_and_every_bot_set_apart(
    slack: Any, channel: SlackChannel
) -> None:
    posted = await channel.ask(card())
    ts = posted.message_id
    slack.react(CHANNEL_ID, ts, "white_check_mark", ALICE)
    slack.react(CHANNEL_ID, ts, "x", MALLORY)
    slack.react(CHANNEL_ID, ts, "white_check_mark", HELPER_BOT)
    slack.react(CHANNEL_ID, ts, "tada", BOB)  # not a vote
    slack.react(CHANNEL_ID, ts, "heavy_check_mark", BOB)  # nor is another check mark
    ballot = await channel.read_ballot(request_of(ts))
    assert not ballot.gone
    assert ballot.bot_ids == {BOT_USER_ID, HELPER_BOT}
    assert sorted(ballot.reactions, key=lambda r: r.emoji) == [
        Reaction(user_id=ALICE, username="alice", emoji="✅"),
        Reaction(user_id=MALLORY, username="mallory", emoji="❌"),
    ]
    slack.unreact(CHANNEL_ID, ts, "x", MALLORY)  # a removed reaction is no vote
    ballot = await channel.read_ballot(request_of(ts))
    assert ballot.reactions == [Reaction(user_id=ALICE, username="alice", emoji="✅")]


def decided(who: str = "alice", decision: str = "approve") -> DecisionOutcome:
    return DecisionOutcome(
        decision=Decision(
            action_id=ACTION.action_id,
            decision=decision,  # type: ignore[arg-type]
            decider=who,
            via="chat",
            intended_at=NOW,
        )
    )


def replies(slack: Any, ts: str) -> list[dict[str, Any]]:
    return [m for m in slack.replies(CHANNEL_ID, ts) if m["ts"] != ts]


async def test_a_deleted_request_reads_as_gone_and_is_neither_edited_nor_replied_to(
    slack: Any, channel: SlackChannel
) -> None:
    posted = await channel.ask(card())
    slack.delete_message(CHANNEL_ID, posted.message_id)
    request = request_of(posted.message_id)
    assert (await channel.read_ballot(request)).gone
    await channel.update_request(request, decided("x", "reject"))  # no error
    assert stored(slack, posted.message_id)["edits"] == []
    assert slack.received(path=r"/api/chat\.update") == []
    assert len(slack.received(path=r"/api/chat\.postMessage")) == 1  # the card only


async def test_the_decided_request_keeps_its_card_with_the_outcome_under_its_header(
    slack: Any, channel: SlackChannel
) -> None:
    posted = await channel.ask(card())
    asked = render(card()).blocks
    assert asked[-1]["type"] == "actions"  # the link button to the run
    await channel.update_request(request_of(posted.message_id), decided())
    message = stored(slack, posted.message_id)
    assert message["text"] == "✅ Approved by alice"
    outcome = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "*✅ Approved by alice*"},
        "block_id": "remediation_outcome",
    }
    # what was asked stays (action, host, parameters, …); nothing is left to decide
    assert message["blocks"] == [asked[0], outcome, *asked[1:-1]]
    assert message["edits"] == [{"text": render(card()).text, "blocks": asked, "edited_ts": None}]
    assert message["reactions"]  # the votes stay
    assert slack.pings() == []


async def test_a_decision_is_also_replied_in_the_thread_a_closed_request_is_not(
    slack: Any, channel: SlackChannel
) -> None:
    decided_ts = (await channel.ask(card())).message_id
    closed_ts = (await channel.ask(card())).message_id
    await channel.update_request(request_of(decided_ts), decided("mallory", "reject"))
    await channel.update_request(request_of(closed_ts), RequestClosed(text="⌛ Expired"))
    [reply] = replies(slack, decided_ts)
    assert reply["text"] == "❌ Rejected by mallory"
    assert reply["blocks"] == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*❌ Rejected by mallory*"}}
    ]
    assert replies(slack, closed_ts) == []
    closed = stored(slack, closed_ts)
    assert closed["text"] == "⌛ Expired"
    assert closed["blocks"][1]["text"]["text"] == "*⌛ Expired*"
    assert "actions" not in [b["type"] for b in closed["blocks"]]


async def test_editing_again_replaces_the_outcome_never_doubles_it(
    slack: Any, channel: SlackChannel
) -> None:
    ts = (await channel.ask(card())).message_id
    await channel.update_request(request_of(ts), RequestClosed(text="⌛ Expired"))
    await channel.update_request(request_of(ts), decided())
    blocks = stored(slack, ts)["blocks"]
    outcomes = [b for b in blocks if b.get("block_id") == "remediation_outcome"]
    assert [b["text"]["text"] for b in outcomes] == ["*✅ Approved by alice*"]
    assert blocks[:2] == [render(card()).blocks[0], outcomes[0]]


async def test_a_request_that_cannot_be_read_back_shows_its_outcome_alone(
    slack: Any, channel: SlackChannel
) -> None:
    ts = (await channel.ask(card())).message_id
    slack.inject(
        path=r"/api/reactions\.get", status=200, body={"ok": False, "error": "fatal_error"}
    )
    await channel.update_request(request_of(ts), decided())
    message = stored(slack, ts)
    assert message["text"] == "✅ Approved by alice"
    assert [b["type"] for b in message["blocks"]] == ["section", "context"]
    assert message["blocks"][0]["text"]["text"] == "*✅ Approved by alice*"
    assert len(replies(slack, ts)) == 1


async def test_a_deciders_name_in_the_outcome_cannot_ping(
    slack: Any, channel: SlackChannel
) -> None:
    ts = (await channel.ask(card())).message_id
    await channel.update_request(request_of(ts), decided("<!channel> <@U0ALICE>"))
    assert "&lt;!channel&gt;" in stored(slack, ts)["blocks"][1]["text"]["text"]
    assert slack.pings() == []


async def test_a_reminder_is_posted_in_the_requests_thread(
    slack: Any, channel: SlackChannel
) -> None:
    posted = await channel.ask(card())
    request = request_of(posted.message_id)
    reminder = Reminder(action=ACTION, level=LEVEL, deadline=DEADLINE, request=request)
    sent = await channel.post_in_thread(request, reminder)
    assert stored(slack, sent.message_id)["thread_ts"] == posted.message_id


async def test_approvers_are_the_listed_users_and_the_groups_members_never_a_stranger(
    channel: SlackChannel,
) -> None:
    assert await channel.may_approve(ALICE, cache_seconds=60)  # listed
    assert await channel.may_approve(CAROL, cache_seconds=60)  # in the approver group
    assert not await channel.may_approve(BOB, cache_seconds=60)  # in another group only
    assert not await channel.may_approve(MALLORY, cache_seconds=60)
    assert not await channel.may_approve(HELPER_BOT, cache_seconds=60)


async def test_any_member_means_any_person_in_the_channel_not_a_bot_nor_deactivated(
    slack: Any,
) -> None:
    block = bot_block(slack, allow_any_channel_member=True).model_copy(
        update={"channel_id": fixtures.OTHER_CHANNEL_ID}
    )
    chat = SlackChannel.from_block(block)
    try:
        assert await chat.may_approve(ALICE, cache_seconds=60)  # a member
        assert await chat.may_approve(CAROL, cache_seconds=60)
        assert not await chat.may_approve(MALLORY, cache_seconds=60)  # not in the channel
        assert not await chat.may_approve(HELPER_BOT, cache_seconds=60)  # a member, a bot
        assert not await chat.may_approve(DAVE, cache_seconds=60)  # deactivated
        # the members were read once (cached for `cache_seconds`)
        [members] = slack.received(path=r"/api/conversations\.members")
        assert members.query["channel"] == [fixtures.OTHER_CHANNEL_ID]
    finally:
        await chat.aclose()


async def test_channel_members_are_read_again_once_the_cache_is_old(slack: Any) -> None:
    chat = SlackChannel.from_block(bot_block(slack, allow_any_channel_member=True))
    try:
        assert await chat.may_approve(MALLORY, cache_seconds=0)
        assert await chat.may_approve(BOB, cache_seconds=0)
        assert len(slack.received(path=r"/api/conversations\.members")) == 2
    finally:
        await chat.aclose()


@pytest.mark.parametrize("n", [1, 400], ids=["one", "many"])
async def test_no_message_of_any_kind_could_ping_even_with_hostile_data(
    slack: Any, channel: SlackChannel, n: int
) -> None:
    for message in messages(n).values():  # the sandbox refuses blocks over Slack's limits
        await channel.post(message)
    posted = await channel.ask(card(hostile_action()))
    await channel.post_in_thread(request_of(posted.message_id), messages()["action_result"])
    assert slack.pings() == []
