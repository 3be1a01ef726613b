"""The sandbox Slack: auth, scopes, every method's answers and errors, Block Kit limits,
threads, edits, reactions by people and bots, deletion, 429s, the ping record and the
control API — through real HTTP, with httpx and with slack_sdk's AsyncWebClient."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack import SlackSandboxUser, SlackServer
from sandbox.slack_payload import find_pings
from tests.fixtures.slack import (
    ALICE_ID,
    APPROVERS_GROUP_ID,
    BOB_ID,
    BOT_ID,
    BOT_NAME,
    BOT_TOKEN,
    BOT_USER_ID,
    CAROL_ID,
    CHANNEL_ID,
    DAVE_ID,
    GONE_BOT_TOKEN,
    MALLORY_ID,
    OTHER_BOT_ID,
    OTHER_BOT_TOKEN,
    OTHER_BOT_USER_ID,
    OTHER_CHANNEL_ID,
    OUTSIDE_CHANNEL_ID,
)

HEADER = {"type": "header", "text": {"type": "plain_text", "text": "Restart nginx?"}}


@pytest.fixture
def api(slack: SlackServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=slack.api_base, headers={"Authorization": f"Bearer {BOT_TOKEN}"}
    ) as client:
        yield client


@pytest.fixture
async def sdk(slack: SlackServer) -> AsyncIterator[AsyncWebClient]:
    yield AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_base)


def call(api: httpx.Client, method: str, **args: Any) -> dict[str, Any]:
    """A JSON-bodied call; Slack answers HTTP 200 whether it worked or not."""
    resp = api.post(method, json=args, headers={"Content-Type": "application/json; charset=utf-8"})
    assert resp.status_code == 200, resp.text
    return resp.json()


def post(api: httpx.Client, text: str = "hello", **args: Any) -> dict[str, Any]:
    body = call(api, "chat.postMessage", channel=CHANNEL_ID, text=text, **args)
    assert body["ok"], body
    return body


def section(text: str, kind: str = "mrkdwn") -> dict[str, Any]:
    return {"type": "section", "text": {"type": kind, "text": text}}


# --- auth and scopes -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, "not_authed"),
        ({"Authorization": "Bearer xoxb-not-a-real-token"}, "invalid_auth"),
        ({"Authorization": f"Bot {BOT_TOKEN}"}, "not_authed"),
        ({"Authorization": f"Bearer {GONE_BOT_TOKEN}"}, "account_inactive"),
    ],
)
def test_missing_wrong_or_inactive_tokens_are_ok_false_with_http_200(
    slack: SlackServer, headers: dict[str, str], error: str
) -> None:
    resp = httpx.post(f"{slack.api_base}auth.test", headers=headers)
    assert resp.status_code == 200
    assert resp.json() == {"ok": False, "error": error}


def test_revoked_token_answers_token_revoked_until_reset(slack: SlackServer) -> None:
    slack.revoke_token(BOT_TOKEN)
    headers = {"Authorization": f"Bearer {BOT_TOKEN}"}
    assert httpx.post(f"{slack.api_base}auth.test", headers=headers).json()["error"] == (
        "token_revoked"
    )
    slack.reset()
    assert httpx.post(f"{slack.api_base}auth.test", headers=headers).json()["ok"] is True


def test_token_as_a_form_field_authenticates_but_not_inside_json(slack: SlackServer) -> None:
    form = httpx.post(f"{slack.api_base}auth.test", data={"token": BOT_TOKEN})
    assert form.json()["user_id"] == BOT_USER_ID
    in_json = httpx.post(
        f"{slack.api_base}chat.postMessage",
        json={"token": BOT_TOKEN, "channel": CHANNEL_ID, "text": "hi"},
    )
    assert in_json.json() == {"ok": False, "error": "not_authed"}


def test_auth_test_names_each_bot(api: httpx.Client, slack: SlackServer) -> None:
    me = call(api, "auth.test")
    assert me == {
        "ok": True,
        "url": "https://sandbox.slack.com/",
        "team": "Sandbox",
        "user": BOT_NAME,
        "team_id": "T0SANDBOX",
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "is_enterprise_install": False,
    }
    other = httpx.post(
        f"{slack.api_base}auth.test", headers={"Authorization": f"Bearer {OTHER_BOT_TOKEN}"}
    )
    assert (other.json()["user_id"], other.json()["bot_id"]) == (OTHER_BOT_USER_ID, OTHER_BOT_ID)


@pytest.mark.parametrize(
    ("method", "args", "needed"),
    [
        ("chat.postMessage", {"channel": CHANNEL_ID, "text": "x"}, "chat:write"),
        ("chat.update", {"channel": CHANNEL_ID, "ts": "1.000001", "text": "x"}, "chat:write"),
        (
            "reactions.add",
            {"channel": CHANNEL_ID, "timestamp": "1.1", "name": "x"},
            "reactions:write",
        ),
        ("reactions.get", {"channel": CHANNEL_ID, "timestamp": "1.1"}, "reactions:read"),
        ("users.info", {"user": ALICE_ID}, "users:read"),
        ("usergroups.users.list", {"usergroup": APPROVERS_GROUP_ID}, "usergroups:read"),
        ("conversations.members", {"channel": CHANNEL_ID}, "channels:read"),
    ],
)
def test_each_method_needs_its_scope(
    slack: SlackServer, api: httpx.Client, method: str, args: dict[str, str], needed: str
) -> None:
    slack.grant_scopes([])
    body = api.post(method, data=args).json()
    assert body == {"ok": False, "error": "missing_scope", "needed": needed, "provided": ""}
    slack.grant_scopes(["identify", "links:read"])
    assert api.post(method, data=args).json()["provided"] == "identify,links:read"


def test_unknown_method_is_http_404_unknown_method(api: httpx.Client) -> None:
    resp = api.post("chat.postMesage", data={"channel": CHANNEL_ID})
    assert resp.status_code == 404
    assert resp.json() == {"ok": False, "error": "unknown_method", "req_method": "chat.postMesage"}


# --- chat.postMessage ------------------------------------------------------------------
def test_post_answers_channel_ts_and_the_message(api: httpx.Client, slack: SlackServer) -> None:
    body = post(api, "approve?", blocks=[HEADER])
    assert body["channel"] == CHANNEL_ID
    assert body["message"]["text"] == "approve?"
    assert body["message"]["blocks"] == [HEADER]
    assert (body["message"]["user"], body["message"]["bot_id"]) == (BOT_USER_ID, BOT_ID)
    seconds, micros = body["ts"].split(".")
    assert len(seconds) == 10 and len(micros) == 6
    assert abs(int(seconds) - time.time()) < 5
    [stored] = slack.messages(CHANNEL_ID)
    assert (stored["ts"], stored["text"], stored["blocks"]) == (body["ts"], "approve?", [HEADER])


def test_ts_values_are_unique_and_increasing(api: httpx.Client) -> None:
    stamps = [post(api, f"n{i}")["ts"] for i in range(20)]
    assert stamps == sorted(stamps, key=lambda ts: tuple(map(int, ts.split("."))))
    assert len(set(stamps)) == 20


def test_form_encoded_post_with_blocks_as_a_json_string(api: httpx.Client) -> None:
    body = api.post(
        "chat.postMessage",
        data={"channel": CHANNEL_ID, "text": "t", "blocks": json.dumps([HEADER])},
    ).json()
    assert body["ok"] and body["message"]["blocks"] == [HEADER]


def test_json_body_without_charset_works_with_slacks_warning(api: httpx.Client) -> None:
    resp = api.post(
        "chat.postMessage",
        content=json.dumps({"channel": CHANNEL_ID, "text": "t"}),
        headers={"Content-Type": "application/json"},
    )
    body = resp.json()
    assert body["ok"] and body["warning"] == "missing_charset"
    assert body["response_metadata"]["warnings"] == ["missing_charset"]


def test_json_body_is_not_read_by_methods_that_take_only_form_arguments(
    api: httpx.Client,
) -> None:
    body = call(api, "users.info", user=ALICE_ID)
    assert body["error"] == "invalid_arguments"
    assert body["response_metadata"]["messages"] == ["[ERROR] missing required field: user"]


def test_malformed_json_body_is_invalid_json(api: httpx.Client) -> None:
    resp = api.post(
        "chat.postMessage", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert resp.json() == {"ok": False, "error": "invalid_json"}


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"text": "x"}, "channel_not_found"),
        ({"channel": "C0NOPE", "text": "x"}, "channel_not_found"),
        ({"channel": OUTSIDE_CHANNEL_ID, "text": "x"}, "not_in_channel"),
        ({"channel": CHANNEL_ID}, "no_text"),
        ({"channel": CHANNEL_ID, "text": ""}, "no_text"),
        ({"channel": CHANNEL_ID, "text": "x" * 40_001}, "msg_too_long"),
        ({"channel": CHANNEL_ID, "text": "x", "blocks": "[not json"}, "invalid_blocks_format"),
        (
            {"channel": CHANNEL_ID, "text": "x", "blocks": {"type": "divider"}},
            "invalid_blocks_format",
        ),
        ({"channel": CHANNEL_ID, "text": "x", "thread_ts": "1.000001"}, "thread_not_found"),
    ],
)
def test_post_errors(api: httpx.Client, args: dict[str, Any], error: str) -> None:
    assert call(api, "chat.postMessage", **args) == {"ok": False, "error": error}


def test_text_of_exactly_40000_characters_is_accepted(api: httpx.Client) -> None:
    assert post(api, "x" * 40_000)["ok"]


def test_blocks_alone_need_no_text(api: httpx.Client) -> None:
    body = call(api, "chat.postMessage", channel=CHANNEL_ID, blocks=[HEADER])
    assert body["ok"] and body["message"]["text"] == ""


def test_unfurl_and_parse_options_are_recorded(api: httpx.Client, slack: SlackServer) -> None:
    post(api, unfurl_links=False, unfurl_media=False)
    options = slack.messages()[0]["options"]
    assert options == {
        "unfurl_links": False,
        "unfurl_media": False,
        "link_names": None,
        "parse": None,
        "mrkdwn": None,
    }


# --- Block Kit limits ------------------------------------------------------------------
def invalid(body: dict[str, Any]) -> list[str]:
    assert body["ok"] is False and body["error"] == "invalid_blocks", body
    assert body["response_metadata"]["messages"] == [f"[ERROR] {e}" for e in body["errors"]]
    return body["errors"]


def test_fifty_blocks_pass_fifty_one_do_not(api: httpx.Client) -> None:
    assert post(api, blocks=[{"type": "divider"}] * 50)["ok"]
    body = call(
        api, "chat.postMessage", channel=CHANNEL_ID, text="t", blocks=[{"type": "divider"}] * 51
    )
    assert invalid(body) == ["must be less than 51 items [json-pointer:/blocks]"]


def test_section_text_limit_is_3000(api: httpx.Client) -> None:
    assert post(api, blocks=[section("x" * 3000)])["ok"]
    body = call(api, "chat.postMessage", channel=CHANNEL_ID, text="t", blocks=[section("x" * 3001)])
    assert invalid(body) == ["must be less than 3001 characters [json-pointer:/blocks/0/text/text]"]


def test_header_text_limit_is_150_and_plain_text_only(api: httpx.Client) -> None:
    ok = {"type": "header", "text": {"type": "plain_text", "text": "h" * 150}}
    assert post(api, blocks=[ok])["ok"]
    long = {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}
    mrkdwn = {"type": "header", "text": {"type": "mrkdwn", "text": "*h*"}}
    body = call(api, "chat.postMessage", channel=CHANNEL_ID, text="t", blocks=[long, mrkdwn])
    assert invalid(body) == [
        "must be less than 151 characters [json-pointer:/blocks/0/text/text]",
        "must be a text object of type plain_text [json-pointer:/blocks/1/text]",
    ]


def test_fields_buttons_and_context_are_checked(api: httpx.Client) -> None:
    card = [
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*f{i}*"} for i in range(10)]},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Open run"},
                    "url": "http://127.0.0.1:4200/runs/flow-run/1",
                    "action_id": "open-run",
                }
            ],
        },
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": "<!date^1733580000^{time}|10:00>"}],
        },
    ]
    assert post(api, blocks=card)["ok"]
    bad = [
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11},
        {"type": "section"},
        {"type": "context", "elements": []},
        {
            "type": "actions",
            "elements": [{"type": "button", "text": {"type": "plain_text", "text": "b" * 76}}],
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": ""}},
        {"type": "section", "text": {"type": "markdown", "text": "x"}},
        {"type": "divider", "colour": "red"},
        {"type": "carousel"},
    ]
    body = call(api, "chat.postMessage", channel=CHANNEL_ID, text="t", blocks=bad)
    assert invalid(body) == [
        "must be less than 11 items [json-pointer:/blocks/0/fields]",
        "must provide either text or fields [json-pointer:/blocks/1]",
        "must be a non-empty array [json-pointer:/blocks/2/elements]",
        "must be less than 76 characters [json-pointer:/blocks/3/elements/0/text/text]",
        "must be more than 0 characters [json-pointer:/blocks/4/text/text]",
        "must be a text object of type plain_text or mrkdwn [json-pointer:/blocks/5/text]",
        "unknown field [json-pointer:/blocks/6/colour]",
        "unsupported type [json-pointer:/blocks/7/type]",
    ]


def test_duplicate_block_ids_are_invalid(api: httpx.Client) -> None:
    blocks = [{**HEADER, "block_id": "a"}, {"type": "divider", "block_id": "a"}]
    body = call(api, "chat.postMessage", channel=CHANNEL_ID, text="t", blocks=blocks)
    assert invalid(body) == ["duplicate block_id [json-pointer:/blocks/1/block_id]"]


# --- threads and chat.update -----------------------------------------------------------
def test_replies_go_into_the_parents_thread(api: httpx.Client, slack: SlackServer) -> None:
    parent = post(api, "request")["ts"]
    reply = post(api, "decided", thread_ts=parent)
    assert reply["message"]["thread_ts"] == parent
    assert reply["message"]["parent_user_id"] == BOT_USER_ID
    # replying to a reply's ts lands in the same thread
    second = post(api, "result", thread_ts=reply["ts"])
    assert second["message"]["thread_ts"] == parent
    assert [m["text"] for m in slack.replies(CHANNEL_ID, parent)] == [
        "request",
        "decided",
        "result",
    ]


def test_update_keeps_the_previous_versions(api: httpx.Client, slack: SlackServer) -> None:
    ts = post(api, "v1", blocks=[HEADER])["ts"]
    body = call(api, "chat.update", channel=CHANNEL_ID, ts=ts, text="v2")
    assert body["ok"] and (body["channel"], body["ts"], body["text"]) == (CHANNEL_ID, ts, "v2")
    assert body["message"]["blocks"] == [HEADER]  # blocks left out are kept
    assert body["message"]["edited"]["user"] == BOT_USER_ID
    call(api, "chat.update", channel=CHANNEL_ID, ts=ts, text="v3", blocks=[section("new")])
    stored = slack.message(CHANNEL_ID, ts)
    assert (stored["text"], stored["blocks"]) == ("v3", [section("new")])
    assert [(e["text"], e["blocks"]) for e in stored["edits"]] == [
        ("v1", [HEADER]),
        ("v2", [HEADER]),
    ]


def test_update_errors(api: httpx.Client, slack: SlackServer) -> None:
    ts = post(api, "mine")["ts"]
    other = httpx.post(
        f"{slack.api_base}chat.postMessage",
        headers={"Authorization": f"Bearer {OTHER_BOT_TOKEN}"},
        data={"channel": CHANNEL_ID, "text": "theirs"},
    ).json()["ts"]
    cases = [
        ({"channel": "C0NOPE", "ts": ts, "text": "x"}, "channel_not_found"),
        ({"channel": CHANNEL_ID, "text": "x"}, "message_not_found"),
        ({"channel": CHANNEL_ID, "ts": "1.000001", "text": "x"}, "message_not_found"),
        ({"channel": CHANNEL_ID, "ts": other, "text": "x"}, "cant_update_message"),
        ({"channel": CHANNEL_ID, "ts": ts}, "no_text"),
        ({"channel": CHANNEL_ID, "ts": ts, "text": "x" * 40_001}, "msg_too_long"),
    ]
    for args, error in cases:
        assert call(api, "chat.update", **args) == {"ok": False, "error": error}, args
    body = call(
        api, "chat.update", channel=CHANNEL_ID, ts=ts, text="x", blocks=[section("y" * 3001)]
    )
    assert body["error"] == "invalid_blocks"
    assert slack.message(CHANNEL_ID, ts)["edits"] == []


def test_deleted_message_is_message_not_found_everywhere(
    api: httpx.Client, slack: SlackServer
) -> None:
    ts = post(api, "request")["ts"]
    resp = httpx.request(
        "DELETE", f"{slack.url}/_control/messages", json={"channel": CHANNEL_ID, "ts": ts}
    )
    assert resp.status_code == 204
    not_found = {"ok": False, "error": "message_not_found"}
    assert call(api, "chat.update", channel=CHANNEL_ID, ts=ts, text="x") == not_found
    assert (
        api.post(
            "reactions.add", params={"channel": CHANNEL_ID, "timestamp": ts, "name": "x"}
        ).json()
        == not_found
    )
    assert (
        api.get("reactions.get", params={"channel": CHANNEL_ID, "timestamp": ts}).json()
        == not_found
    )
    assert call(api, "chat.postMessage", channel=CHANNEL_ID, text="r", thread_ts=ts) == {
        "ok": False,
        "error": "thread_not_found",
    }
    assert slack.messages(CHANNEL_ID) == []
    assert slack.messages(CHANNEL_ID, include_deleted=True)[0]["deleted"] is True


# --- reactions -------------------------------------------------------------------------
async def test_reactions_by_the_bot_people_and_another_bot(
    sdk: AsyncWebClient, slack: SlackServer
) -> None:
    ts = (await sdk.chat_postMessage(channel=CHANNEL_ID, text="approve?"))["ts"]
    await sdk.reactions_add(channel=CHANNEL_ID, timestamp=ts, name="white_check_mark")
    await sdk.reactions_add(channel=CHANNEL_ID, timestamp=ts, name="x")
    slack.react(CHANNEL_ID, ts, "white_check_mark", "alice")
    slack.react(CHANNEL_ID, ts, "x", BOB_ID)
    other = AsyncWebClient(token=OTHER_BOT_TOKEN, base_url=slack.api_base)
    await other.reactions_add(channel=CHANNEL_ID, timestamp=ts, name="white_check_mark")
    got = await sdk.reactions_get(channel=CHANNEL_ID, timestamp=ts, full=True)
    assert got["type"] == "message" and got["channel"] == CHANNEL_ID
    assert got["message"]["ts"] == ts
    assert got["message"]["reactions"] == [
        {
            "name": "white_check_mark",
            "users": [BOT_USER_ID, ALICE_ID, OTHER_BOT_USER_ID],
            "count": 3,
        },
        {"name": "x", "users": [BOT_USER_ID, BOB_ID], "count": 2},
    ]
    # a reaction taken back disappears; the last one takes the name with it
    slack.unreact(CHANNEL_ID, ts, "x", "bob")
    slack.unreact(CHANNEL_ID, ts, "x", BOT_USER_ID)
    got = await sdk.reactions_get(channel=CHANNEL_ID, timestamp=ts, full=True)
    assert [r["name"] for r in got["message"]["reactions"]] == ["white_check_mark"]


async def test_reactions_add_errors(sdk: AsyncWebClient, slack: SlackServer) -> None:
    ts = (await sdk.chat_postMessage(channel=CHANNEL_ID, text="approve?"))["ts"]
    await sdk.reactions_add(channel=CHANNEL_ID, timestamp=ts, name="x")
    cases = [
        ({"channel": CHANNEL_ID, "timestamp": ts, "name": "x"}, "already_reacted"),
        ({"channel": CHANNEL_ID, "timestamp": ts, "name": "✅"}, "invalid_name"),
        ({"channel": CHANNEL_ID, "timestamp": ts, "name": ":x:"}, "invalid_name"),
        ({"channel": "C0NOPE", "timestamp": ts, "name": "x"}, "channel_not_found"),
        ({"channel": CHANNEL_ID, "timestamp": "1.000001", "name": "x"}, "message_not_found"),
    ]
    for args, error in cases:
        with pytest.raises(SlackApiError) as caught:
            await sdk.reactions_add(**args)
        assert caught.value.response.status_code == 200
        assert caught.value.response.data == {"ok": False, "error": error}, args


def test_reactions_get_without_full_may_leave_reactors_out(
    api: httpx.Client, slack: SlackServer
) -> None:
    ts = post(api)["ts"]
    for i in range(60):
        slack.add_user(SlackSandboxUser(f"U0MANY{i:02d}", f"many{i}"))
        slack.react(CHANNEL_ID, ts, "white_check_mark", f"U0MANY{i:02d}")
    args = {"channel": CHANNEL_ID, "timestamp": ts}
    [partial] = api.get("reactions.get", params=args).json()["message"]["reactions"]
    assert (len(partial["users"]), partial["count"]) == (50, 60)
    [full] = api.get("reactions.get", params={**args, "full": "true"}).json()["message"][
        "reactions"
    ]
    assert (len(full["users"]), full["count"]) == (60, 60)


def test_reactions_get_errors_and_a_message_without_reactions(api: httpx.Client) -> None:
    ts = post(api)["ts"]
    body = api.get("reactions.get", params={"channel": CHANNEL_ID, "timestamp": ts, "full": "1"})
    assert "reactions" not in body.json()["message"]
    assert (
        api.get("reactions.get", params={"channel": CHANNEL_ID}).json()["error"]
        == "no_item_specified"
    )
    assert (
        api.get("reactions.get", params={"channel": "C0NOPE", "timestamp": ts}).json()["error"]
        == "channel_not_found"
    )


def test_control_reactions_by_name_and_unknown_users(slack: SlackServer, api: httpx.Client) -> None:
    ts = post(api)["ts"]
    spec = {"channel": CHANNEL_ID, "ts": ts, "name": "x", "user": "mallory"}
    assert httpx.put(f"{slack.url}/_control/reactions", json=spec).status_code == 204
    assert slack.message(CHANNEL_ID, ts)["reactions"] == {"x": [MALLORY_ID]}
    resp = httpx.request("DELETE", f"{slack.url}/_control/reactions", json=spec)
    assert resp.status_code == 204
    assert slack.message(CHANNEL_ID, ts)["reactions"] == {}
    unknown = httpx.put(f"{slack.url}/_control/reactions", json={**spec, "user": "eve"})
    assert unknown.status_code == 404


# --- users, user groups, channel members -------------------------------------------------
async def test_users_info_people_bots_and_deactivated(sdk: AsyncWebClient) -> None:
    alice = (await sdk.users_info(user=ALICE_ID))["user"]
    assert (alice["id"], alice["name"], alice["is_bot"], alice["deleted"]) == (
        ALICE_ID,
        "alice",
        False,
        False,
    )
    bot = (await sdk.users_info(user=OTHER_BOT_USER_ID))["user"]
    assert bot["is_bot"] is True and bot["profile"]["bot_id"] == OTHER_BOT_ID
    dave = (await sdk.users_info(user=DAVE_ID))["user"]
    assert dave["deleted"] is True
    with pytest.raises(SlackApiError) as caught:
        await sdk.users_info(user="U0NOBODY")
    assert caught.value.response["error"] == "user_not_found"
    with pytest.raises(SlackApiError) as caught:
        await sdk.users_info(user="alice")  # a name is not an id
    assert caught.value.response["error"] == "user_not_found"


async def test_usergroup_members_and_unknown_groups(sdk: AsyncWebClient) -> None:
    got = await sdk.usergroups_users_list(usergroup=APPROVERS_GROUP_ID)
    assert got.data == {"ok": True, "users": [ALICE_ID, BOB_ID]}
    with pytest.raises(SlackApiError) as caught:
        await sdk.usergroups_users_list(usergroup="S0NOPE")
    assert caught.value.response["error"] == "no_such_subteam"


async def test_conversations_members_pages(sdk: AsyncWebClient) -> None:
    first = await sdk.conversations_members(channel=CHANNEL_ID, limit=3)
    cursor = first["response_metadata"]["next_cursor"]
    assert len(first["members"]) == 3 and cursor
    rest = await sdk.conversations_members(channel=CHANNEL_ID, cursor=cursor, limit=100)
    everyone = first["members"] + rest["members"]
    assert rest["response_metadata"]["next_cursor"] == ""
    assert {ALICE_ID, BOB_ID, CAROL_ID, MALLORY_ID, BOT_USER_ID} <= set(everyone)
    assert DAVE_ID not in everyone


# --- rate limits -----------------------------------------------------------------------
def test_rate_limit_is_429_with_retry_after_then_normal(
    slack: SlackServer, api: httpx.Client
) -> None:
    spec = {"method": "chat.postMessage", "retry_after": 2, "times": 1}
    assert httpx.post(f"{slack.url}/_control/rate_limit", json=spec).status_code == 204
    limited = api.post("chat.postMessage", data={"channel": CHANNEL_ID, "text": "x"})
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    assert limited.json() == {"ok": False, "error": "ratelimited"}
    assert call(api, "auth.test")["ok"]  # other methods are not limited
    assert post(api)["ok"]
    assert slack.messages() and len(slack.messages()) == 1


async def test_slack_sdk_waits_out_retry_after(slack: SlackServer) -> None:
    slack.rate_limit("reactions.get", retry_after=1, times=1)
    sdk = AsyncWebClient(
        token=BOT_TOKEN,
        base_url=slack.api_base,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    ts = (await sdk.chat_postMessage(channel=CHANNEL_ID, text="x"))["ts"]
    got = await sdk.reactions_get(channel=CHANNEL_ID, timestamp=ts, full=True)
    assert got["ok"]
    first, second = slack.received(path="/api/reactions.get")
    assert second.at - first.at >= 1.0


# --- what slack_sdk sends --------------------------------------------------------------
async def test_slack_sdk_wire_is_what_the_sandbox_reads(
    sdk: AsyncWebClient, slack: SlackServer
) -> None:
    ts = (await sdk.chat_postMessage(channel=CHANNEL_ID, text="t", blocks=[HEADER]))["ts"]
    await sdk.chat_update(channel=CHANNEL_ID, ts=ts, text="u")
    await sdk.reactions_add(channel=CHANNEL_ID, timestamp=ts, name="x")
    await sdk.reactions_get(channel=CHANNEL_ID, timestamp=ts, full=True)
    await sdk.users_info(user=ALICE_ID)
    await sdk.usergroups_users_list(usergroup=APPROVERS_GROUP_ID)
    seen = [
        (r.method, r.path, r.headers["content-type"].split(";")[0], bool(r.body))
        for r in slack.received()
    ]
    assert seen == [
        ("POST", "/api/chat.postMessage", "application/json", True),
        ("POST", "/api/chat.update", "application/json", True),
        ("POST", "/api/reactions.add", "application/x-www-form-urlencoded", False),
        ("GET", "/api/reactions.get", "application/x-www-form-urlencoded", False),
        ("GET", "/api/users.info", "application/x-www-form-urlencoded", False),
        ("GET", "/api/usergroups.users.list", "application/x-www-form-urlencoded", False),
    ]
    assert all(r.headers["authorization"] == f"Bearer {BOT_TOKEN}" for r in slack.received())


# --- pings -----------------------------------------------------------------------------
PING_FORMS = [
    ("<!channel>", "channel"),
    ("<!here>", "here"),
    ("<!everyone>", "everyone"),
    ("<!here|@here>", "here"),
    ("<@U0ALICE>", f"user:{ALICE_ID}"),
    ("<@W0CAROL|carol>", f"user:{CAROL_ID}"),
    ("<!subteam^S0APPROVERS>", f"subteam:{APPROVERS_GROUP_ID}"),
    ("<!subteam^S0OPS|@ops>", "subteam:S0OPS"),
]


@pytest.mark.parametrize(("form", "kind"), PING_FORMS)
def test_every_ping_form_is_found_in_every_place(
    api: httpx.Client, slack: SlackServer, form: str, kind: str
) -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": f"h {form}"}},
        section(f"s {form}"),
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": "a"}, {"type": "mrkdwn", "text": f"f {form}"}],
        },
        {"type": "context", "elements": [{"type": "plain_text", "text": f"c {form}"}]},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": f"b {form}"},
                    "url": "http://x/",
                }
            ],
        },
    ]
    ts = post(api, f"t {form}", blocks=blocks)["ts"]
    pings = slack.pings()
    assert [(p["where"], p["kind"], p["match"]) for p in pings] == [
        ("text", kind, form),
        ("/blocks/0/text/text", kind, form),
        ("/blocks/1/text/text", kind, form),
        ("/blocks/2/fields/1/text", kind, form),
        ("/blocks/3/elements/0/text", kind, form),
        ("/blocks/4/elements/0/text/text", kind, form),
    ]
    assert {(p["channel"], p["ts"]) for p in pings} == {(CHANNEL_ID, ts)}
    assert httpx.get(f"{slack.url}/_control/pings").json() == pings


def test_edits_are_checked_for_pings_too(api: httpx.Client, slack: SlackServer) -> None:
    ts = post(api, "quiet")["ts"]
    call(api, "chat.update", channel=CHANNEL_ID, ts=ts, text="decided by <@U0BOB>")
    assert [p["kind"] for p in slack.pings()] == [f"user:{BOB_ID}"]
    assert slack.pings(OTHER_CHANNEL_ID) == []


@pytest.mark.parametrize(
    "text",
    [
        "<!date^1733580000^{date_short_pretty} at {time}|2024-12-07 14:00 UTC>",
        "<http://127.0.0.1:4200/runs/flow-run/1|open the run>",
        "&lt;!channel&gt; &lt;@U0ALICE&gt; &lt;!subteam^S0OPS&gt;",
        "@channel @here @everyone (no link_names)",
        "<#C0APPROVALS>",
        "mail <mailto:a@b.c|a@b.c>",
    ],
)
def test_dates_links_escapes_and_bare_names_do_not_ping(
    api: httpx.Client, slack: SlackServer, text: str
) -> None:
    post(api, text, blocks=[section(text)])
    assert slack.pings() == []


def test_bare_names_ping_with_link_names_or_parse_full(
    api: httpx.Client, slack: SlackServer
) -> None:
    post(api, "hey @channel", link_names=True)
    post(api, "hey @here", parse="full")
    assert [p["kind"] for p in slack.pings()] == ["channel", "here"]


def test_rich_text_mention_elements_count_as_pings() -> None:
    # The sandbox does not accept rich_text blocks yet; its ping finder already knows
    # their mention elements, which notify without any `<…>` syntax.

    rich = [
        {
            "type": "rich_text",
            "elements": [
                {
                    "type": "rich_text_section",
                    "elements": [
                        {"type": "broadcast", "range": "here"},
                        {"type": "user", "user_id": ALICE_ID},
                        {"type": "usergroup", "usergroup_id": "S0OPS"},
                    ],
                }
            ],
        }
    ]
    assert [p["kind"] for p in find_pings("", rich)] == [
        "here",
        f"user:{ALICE_ID}",
        "subteam:S0OPS",
    ]


# --- control API -----------------------------------------------------------------------
def test_control_messages_lists_threads_edits_and_reactions(
    api: httpx.Client, slack: SlackServer
) -> None:
    ts = post(api, "request")["ts"]
    post(api, "reply", thread_ts=ts)
    call(api, "chat.update", channel=CHANNEL_ID, ts=ts, text="request (decided)")
    slack.react(CHANNEL_ID, ts, "white_check_mark", "alice")
    post_other = call(api, "chat.postMessage", channel=OTHER_CHANNEL_ID, text="elsewhere")
    listed = httpx.get(f"{slack.url}/_control/messages", params={"channel": CHANNEL_ID}).json()
    assert [(m["text"], m["thread_ts"]) for m in listed] == [
        ("request (decided)", ts),
        ("reply", ts),
    ]
    assert listed[0]["edits"][0]["text"] == "request"
    assert listed[0]["reactions"] == {"white_check_mark": [ALICE_ID]}
    everything = httpx.get(f"{slack.url}/_control/messages").json()
    assert post_other["ts"] in [m["ts"] for m in everything]


def test_reset_forgets_messages_pings_scopes_and_faults(
    api: httpx.Client, slack: SlackServer
) -> None:
    post(api, "<!here>")
    slack.grant_scopes([])
    slack.rate_limit(times=5)
    slack.reset()
    assert slack.messages() == [] and slack.pings() == [] and slack.received() == []
    assert post(api)["ok"]
