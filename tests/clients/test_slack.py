"""SlackClient against the sandbox Slack: every method, what went over the wire, each
Slack error code as its typed error, 429s waited out, connection failures, and the
token kept out of every error and repr."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from clients.errors import (
    SlackAuthError,
    SlackError,
    SlackInvalidBlocks,
    SlackMessageTooLong,
    SlackMissingScope,
    SlackNotFound,
    SlackNotInChannel,
    SlackRateLimited,
    UpstreamError,
)
from clients.slack import SlackClient
from core.wire import SlackFetchedMessage, SlackIdentity, SlackPosted, SlackReaction, SlackUser
from sandbox.slack import SlackSandboxUser, SlackServer
from tests.fixtures.slack import (
    ALICE_ID,
    APPROVERS_GROUP_ID,
    BOB_ID,
    BOT_ID,
    BOT_TOKEN,
    BOT_USER_ID,
    CAROL_ID,
    CHANNEL_ID,
    DAVE_ID,
    GONE_BOT_TOKEN,
    MALLORY_ID,
    OTHER_BOT_TOKEN,
    OTHER_BOT_USER_ID,
    OUTSIDE_CHANNEL_ID,
)

HEADER = {"type": "header", "text": {"type": "plain_text", "text": "Restart nginx on web-02?"}}
SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "*unit* `nginx.service`"}}


def client_for(slack: SlackServer, token: str = BOT_TOKEN, **kw: Any) -> SlackClient:
    return SlackClient(token, api_base=slack.api_base, timeout=5, **kw)


@pytest.fixture
def client(slack: SlackServer) -> SlackClient:
    return client_for(slack)


def sent_json(slack: SlackServer, method: str) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in slack.received(path=f"/api/{method}")]


async def post(client: SlackClient, text: str = "approve?") -> SlackPosted:
    return await client.post_message(CHANNEL_ID, text=text, blocks=[HEADER])


# --- the methods -----------------------------------------------------------------------
async def test_auth_test_is_the_bots_identity(client: SlackClient) -> None:
    assert await client.auth_test() == SlackIdentity(
        user_id=BOT_USER_ID, bot_id=BOT_ID, team_id="T0SANDBOX"
    )


async def test_post_sends_json_without_unfurls_link_names_or_parse(
    client: SlackClient, slack: SlackServer
) -> None:
    posted = await client.post_message(CHANNEL_ID, text="approve?", blocks=[HEADER, SECTION])
    assert posted.channel == CHANNEL_ID and posted.ts
    [body] = sent_json(slack, "chat.postMessage")
    assert body == {
        "channel": CHANNEL_ID,
        "text": "approve?",
        "blocks": [HEADER, SECTION],
        "unfurl_links": False,
        "unfurl_media": False,
    }
    [request] = slack.received(path="/api/chat.postMessage")
    assert request.headers["content-type"] == "application/json;charset=utf-8"
    stored = slack.message(CHANNEL_ID, posted.ts)
    assert (stored["text"], stored["blocks"], stored["thread_ts"]) == (
        "approve?",
        [HEADER, SECTION],
        None,
    )


async def test_post_in_a_thread(client: SlackClient, slack: SlackServer) -> None:
    parent = await post(client)
    reply = await client.post_message(
        CHANNEL_ID, text="approved by alice", blocks=[], thread_ts=parent.ts
    )
    assert slack.message(CHANNEL_ID, reply.ts)["thread_ts"] == parent.ts
    assert sent_json(slack, "chat.postMessage")[1]["thread_ts"] == parent.ts


async def test_update_replaces_text_and_blocks_or_keeps_the_blocks(
    client: SlackClient, slack: SlackServer
) -> None:
    posted = await post(client)
    await client.update_message(CHANNEL_ID, posted.ts, text="approved", blocks=[SECTION])
    await client.update_message(CHANNEL_ID, posted.ts, text="approved by alice")
    stored = slack.message(CHANNEL_ID, posted.ts)
    assert (stored["text"], stored["blocks"]) == ("approved by alice", [SECTION])
    assert [e["text"] for e in stored["edits"]] == ["approve?", "approved"]
    first, second = sent_json(slack, "chat.update")
    assert first == {
        "channel": CHANNEL_ID,
        "ts": posted.ts,
        "text": "approved",
        "blocks": [SECTION],
    }
    assert second == {"channel": CHANNEL_ID, "ts": posted.ts, "text": "approved by alice"}


async def test_add_reaction_and_adding_it_again_is_fine(
    client: SlackClient, slack: SlackServer
) -> None:
    posted = await post(client)
    await client.add_reaction(CHANNEL_ID, posted.ts, "white_check_mark")
    await client.add_reaction(CHANNEL_ID, posted.ts, "x")
    await client.add_reaction(CHANNEL_ID, posted.ts, "white_check_mark")  # already_reacted
    assert slack.message(CHANNEL_ID, posted.ts)["reactions"] == {
        "white_check_mark": [BOT_USER_ID],
        "x": [BOT_USER_ID],
    }
    assert len(slack.received(path="/api/reactions.add")) == 3


async def test_get_reactions_reads_every_reactor_with_full(
    client: SlackClient, slack: SlackServer
) -> None:
    posted = await post(client)
    await client.add_reaction(CHANNEL_ID, posted.ts, "white_check_mark")
    for i in range(70):
        slack.add_user(SlackSandboxUser(f"U0VOTER{i:02d}", f"voter{i}"))
        slack.react(CHANNEL_ID, posted.ts, "white_check_mark", f"U0VOTER{i:02d}")
    slack.react(CHANNEL_ID, posted.ts, "x", "bob")
    other = client_for(slack, OTHER_BOT_TOKEN)
    await other.add_reaction(CHANNEL_ID, posted.ts, "x")
    check, cross = await client.get_reactions(CHANNEL_ID, posted.ts)
    assert check.name == "white_check_mark" and check.count == 71 and len(check.users) == 71
    assert cross == SlackReaction(name="x", users=[BOB_ID, OTHER_BOT_USER_ID], count=2)
    [request] = slack.received(path="/api/reactions.get")
    assert request.method == "GET" and request.query["full"] == ["1"]


async def test_no_reactions_is_an_empty_list(client: SlackClient) -> None:
    posted = await post(client)
    assert await client.get_reactions(CHANNEL_ID, posted.ts) == []


async def test_get_message_reads_text_blocks_and_reactions(
    client: SlackClient, slack: SlackServer
) -> None:
    posted = await client.post_message(CHANNEL_ID, text="approve?", blocks=[HEADER, SECTION])
    slack.react(CHANNEL_ID, posted.ts, "x", "bob")
    assert await client.get_message(CHANNEL_ID, posted.ts) == SlackFetchedMessage(
        text="approve?",
        blocks=[HEADER, SECTION],
        reactions=[SlackReaction(name="x", users=[BOB_ID], count=1)],
    )
    [request] = slack.received(path="/api/reactions.get")
    assert request.query["full"] == ["1"]
    slack.delete_message(CHANNEL_ID, posted.ts)
    with pytest.raises(SlackNotFound):
        await client.get_message(CHANNEL_ID, posted.ts)


async def test_channel_members_reads_every_page(client: SlackClient, slack: SlackServer) -> None:
    voters = {f"U0MEMBER{i:04d}" for i in range(1500)}
    for uid in voters:
        slack.add_user(SlackSandboxUser(uid, uid.lower()))
    members = await client.channel_members(CHANNEL_ID)
    assert voters | {ALICE_ID, BOB_ID, CAROL_ID, MALLORY_ID, BOT_USER_ID} <= members
    assert DAVE_ID not in members  # deactivated
    first, second = slack.received(path="/api/conversations.members")
    assert first.query["limit"] == ["1000"] and "cursor" not in first.query
    assert second.query["cursor"] == ["1000"]


async def test_channel_members_of_an_unknown_channel_is_not_found(client: SlackClient) -> None:
    with pytest.raises(SlackNotFound):
        await client.channel_members("C0NOPE")


async def test_user_info_people_bots_slackbot_and_deactivated(
    client: SlackClient, slack: SlackServer
) -> None:
    assert await client.user_info(ALICE_ID) == SlackUser(id=ALICE_ID, name="alice", is_bot=False)
    bot = await client.user_info(OTHER_BOT_USER_ID)
    assert bot.is_bot and not bot.deleted
    assert (await client.user_info(DAVE_ID)).deleted is True
    # Slackbot answers is_bot: false, yet it is a bot
    slack.add_user(SlackSandboxUser("USLACKBOT", "slackbot"))
    assert (await client.user_info("USLACKBOT")).is_bot is True
    # a bot user whose is_bot is false but whose profile names a bot_id is a bot too
    slack.inject(
        path="/api/users.info",
        status=200,
        body={
            "ok": True,
            "user": {"id": "U0APP", "name": "app", "is_bot": False, "profile": {"bot_id": "B0X"}},
        },
    )
    assert (await client.user_info("U0APP")).is_bot is True


async def test_usergroup_users(client: SlackClient) -> None:
    assert await client.usergroup_users(APPROVERS_GROUP_ID) == [ALICE_ID, BOB_ID]


async def test_api_base_without_trailing_slash(slack: SlackServer) -> None:
    client = SlackClient(BOT_TOKEN, api_base=slack.api_base.rstrip("/"))
    assert (await client.auth_test()).user_id == BOT_USER_ID
    await client.aclose()


# --- Slack's error codes as typed errors -----------------------------------------------
async def test_not_found_codes(client: SlackClient, slack: SlackServer) -> None:
    posted = await post(client)
    cases = [
        (client.post_message("C0NOPE", text="x", blocks=[]), "channel_not_found"),
        (client.update_message(CHANNEL_ID, "1.000001", text="x"), "message_not_found"),
        (client.get_reactions(CHANNEL_ID, "1.000001"), "message_not_found"),
        (
            client.post_message(CHANNEL_ID, text="x", blocks=[], thread_ts="1.000001"),
            "thread_not_found",
        ),
        (client.user_info("U0NOBODY"), "user_not_found"),
        (client.usergroup_users("S0NOPE"), "no_such_subteam"),
    ]
    for call, code in cases:
        with pytest.raises(SlackNotFound) as caught:
            await call
        assert caught.value.error == code
        assert code in str(caught.value) and caught.value.status_code is None
    slack.delete_message(CHANNEL_ID, posted.ts)
    with pytest.raises(SlackNotFound, match="message_not_found"):
        await client.add_reaction(CHANNEL_ID, posted.ts, "x")


async def test_not_in_channel(client: SlackClient) -> None:
    with pytest.raises(SlackNotInChannel) as caught:
        await client.post_message(OUTSIDE_CHANNEL_ID, text="x", blocks=[])
    assert caught.value.error == "not_in_channel"
    assert str(caught.value).startswith("Slack chat.postMessage failed: not_in_channel")


@pytest.mark.parametrize("token", ["xoxb-wrong-token-value", "", GONE_BOT_TOKEN, BOT_TOKEN])
async def test_auth_codes(slack: SlackServer, token: str) -> None:
    expected = {
        "xoxb-wrong-token-value": "invalid_auth",
        "": "not_authed",
        GONE_BOT_TOKEN: "account_inactive",
        BOT_TOKEN: "token_revoked",
    }[token]
    slack.revoke_token(BOT_TOKEN)
    with pytest.raises(SlackAuthError) as caught:
        await client_for(slack, token).auth_test()
    assert caught.value.error == expected


async def test_token_expired_is_an_auth_error(client: SlackClient, slack: SlackServer) -> None:
    slack.inject(path="/api/auth.test", status=200, body={"ok": False, "error": "token_expired"})
    with pytest.raises(SlackAuthError, match="token_expired"):
        await client.auth_test()


async def test_missing_scope_names_what_is_needed(client: SlackClient, slack: SlackServer) -> None:
    slack.grant_scopes(["chat:write", "users:read"])
    with pytest.raises(SlackMissingScope) as caught:
        await client.usergroup_users(APPROVERS_GROUP_ID)
    error = caught.value
    assert (error.error, error.needed, error.provided) == (
        "missing_scope",
        "usergroups:read",
        "chat:write,users:read",
    )
    assert "needed usergroups:read; provided chat:write,users:read" in str(error)


async def test_message_too_long(client: SlackClient) -> None:
    with pytest.raises(SlackMessageTooLong) as caught:
        await client.post_message(CHANNEL_ID, text="x" * 40_001, blocks=[])
    assert caught.value.error == "msg_too_long"


async def test_invalid_blocks_carry_slacks_pointers(client: SlackClient) -> None:
    long_header = {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}
    with pytest.raises(SlackInvalidBlocks) as caught:
        await client.post_message(CHANNEL_ID, text="x", blocks=[long_header])
    assert caught.value.error == "invalid_blocks"
    assert "[json-pointer:/blocks/0/text/text]" in str(caught.value)
    with pytest.raises(SlackInvalidBlocks):
        await client.post_message(CHANNEL_ID, text="x", blocks=[{"type": "divider"}] * 51)


async def test_invalid_blocks_format(client: SlackClient, slack: SlackServer) -> None:
    body = {"ok": False, "error": "invalid_blocks_format"}
    slack.inject(path="/api/chat.update", status=200, body=body)
    with pytest.raises(SlackInvalidBlocks) as caught:
        await client.update_message(CHANNEL_ID, "1.000001", text="x", blocks=[])
    assert caught.value.error == "invalid_blocks_format"


async def test_other_codes_are_plain_slack_errors(client: SlackClient, slack: SlackServer) -> None:
    theirs = await client_for(slack, OTHER_BOT_TOKEN).post_message(
        CHANNEL_ID, text="not yours", blocks=[]
    )
    with pytest.raises(SlackError) as caught:
        await client.update_message(CHANNEL_ID, theirs.ts, text="mine now")
    assert type(caught.value) is SlackError
    assert caught.value.error == "cant_update_message"
    assert isinstance(caught.value, UpstreamError) and caught.value.service == "Slack"


async def test_a_non_slack_answer_keeps_its_status(client: SlackClient, slack: SlackServer) -> None:
    slack.inject(path="/api/auth.test", status=502, body="<html>Bad Gateway</html>")
    with pytest.raises(SlackError) as caught:
        await client.auth_test()
    assert caught.value.status_code == 502 and caught.value.error == ""


# --- rate limits -----------------------------------------------------------------------
async def test_429_waits_retry_after_then_succeeds(client: SlackClient, slack: SlackServer) -> None:
    slack.rate_limit("chat.postMessage", retry_after=1, times=1)
    posted = await post(client)
    first, second = slack.received(path="/api/chat.postMessage")
    assert second.at - first.at >= 1.0
    assert [m["ts"] for m in slack.messages(CHANNEL_ID)] == [posted.ts]  # posted once


async def test_429_after_the_retries_is_slack_rate_limited(slack: SlackServer) -> None:
    slack.rate_limit("reactions.get", retry_after=1, times=5)
    client = client_for(slack, rate_limit_retries=1)
    with pytest.raises(SlackRateLimited) as caught:
        await client.get_reactions(CHANNEL_ID, "1.000001")
    error = caught.value
    assert (error.retry_after, error.status_code, error.error) == (1.0, 429, "ratelimited")
    first, second = slack.received(path="/api/reactions.get")
    assert second.at - first.at >= 1.0


async def test_ratelimited_code_without_429_is_slack_rate_limited(
    client: SlackClient, slack: SlackServer
) -> None:
    slack.inject(
        path="/api/chat.postMessage", status=200, body={"ok": False, "error": "ratelimited"}
    )
    with pytest.raises(SlackRateLimited):
        await post(client)


# --- connection failures and resending -------------------------------------------------
async def test_post_is_not_resent_when_it_may_have_been_sent(
    client: SlackClient, slack: SlackServer
) -> None:
    slack.inject(path="/api/chat.postMessage", mode="drop_after", times=1)
    with pytest.raises(SlackError) as caught:
        await post(client)
    assert caught.value.request_sent is True
    assert len(slack.received(path="/api/chat.postMessage")) == 1
    assert len(slack.messages(CHANNEL_ID)) == 1  # Slack did post it: nobody may post again


async def test_idempotent_calls_are_retried_after_a_dropped_connection(
    client: SlackClient, slack: SlackServer
) -> None:
    slack.inject(path="/api/users.info", mode="drop", times=1)
    assert (await client.user_info(ALICE_ID)).id == ALICE_ID
    assert len(slack.received(path="/api/users.info")) == 2


async def test_connection_refused_is_provably_unsent() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    client = SlackClient(BOT_TOKEN, api_base=f"http://127.0.0.1:{port}/api/", timeout=2)
    with pytest.raises(SlackError) as caught:
        await client.post_message(CHANNEL_ID, text="x", blocks=[])
    assert caught.value.request_sent is False
    assert "cannot connect" in str(caught.value)


async def test_no_answer_within_the_timeout(slack: SlackServer) -> None:
    slack.inject(path="/api/auth.test", mode="delay", delay=1.5, times=1)
    client = SlackClient(BOT_TOKEN, api_base=slack.api_base, timeout=0.5)
    with pytest.raises(SlackError, match=r"no answer within 0\.5 s") as caught:
        await client.auth_test()
    assert caught.value.request_sent is True


# --- the token stays secret ------------------------------------------------------------
async def test_token_never_in_errors_or_repr(slack: SlackServer) -> None:
    client = client_for(slack)
    assert BOT_TOKEN not in repr(client) and BOT_TOKEN not in str(client)
    # an answer that echoes the token (a misbehaving proxy) and the usual Slack errors
    slack.inject(path="/api/auth.test", status=500, body=f"bad token {BOT_TOKEN}")
    slack.grant_scopes([])
    errors: list[BaseException] = []
    for call in (
        client.auth_test(),
        client.usergroup_users(APPROVERS_GROUP_ID),
        client.post_message("C0NOPE", text=BOT_TOKEN, blocks=[]),
    ):
        with pytest.raises(SlackError) as caught:
            await call
        errors.append(caught.value)
    for error in errors:
        chain: BaseException | None = error
        while chain is not None:
            assert BOT_TOKEN not in str(chain) and BOT_TOKEN not in repr(chain)
            # what a traceback prints: the cause, or the context unless suppressed
            chain = chain.__cause__ or (None if chain.__suppress_context__ else chain.__context__)
    assert "bad token" in str(errors[0]) and errors[0].status_code == 500
