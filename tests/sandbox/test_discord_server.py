"""The sandbox Discord: auth, members, messages, limits, reactions, 429s, control API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.discord import DiscordServer, SandboxUser
from tests.fixtures.loki_discord import (
    ALICE_ID,
    APPROVER_ROLE_ID,
    BOB_ID,
    BOT_TOKEN,
    BOT_USER_ID,
    BOT_USERNAME,
    CHANNEL_ID,
    DAVE_ID,
    GUILD_ID,
    MALLORY_ID,
    OTHER_BOT_ID,
    OTHER_BOT_TOKEN,
)

CHECK = "%E2%9C%85"  # ✅ percent-encoded, as clients must send it


@pytest.fixture
def api(discord: DiscordServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=discord.api_base, headers={"Authorization": f"Bot {BOT_TOKEN}"}
    ) as c:
        yield c


def post(api: httpx.Client, **body: Any) -> dict[str, Any]:
    resp = api.post(f"/channels/{CHANNEL_ID}/messages", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def form_errors(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert (body["code"], body["message"]) == (50035, "Invalid Form Body")
    return body["errors"]


def max_length(limit: int) -> dict[str, Any]:
    return {
        "_errors": [
            {"code": "BASE_TYPE_MAX_LENGTH", "message": f"Must be {limit} or fewer in length."}
        ]
    }


@pytest.mark.parametrize("auth", [None, "Bot wrong-token", f"Bearer {BOT_TOKEN}", BOT_TOKEN])
def test_wrong_or_missing_token_is_401(discord: DiscordServer, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    resp = httpx.get(f"{discord.api_base}/users/@me", headers=headers)
    assert resp.status_code == 401
    assert resp.json() == {"message": "401: Unauthorized", "code": 0}


def test_each_token_is_its_bot_user(discord: DiscordServer, api: httpx.Client) -> None:
    me = api.get("/users/@me").json()
    assert (me["id"], me["username"], me["bot"]) == (BOT_USER_ID, BOT_USERNAME, True)
    other = httpx.get(
        f"{discord.api_base}/users/@me", headers={"Authorization": f"Bot {OTHER_BOT_TOKEN}"}
    )
    assert other.json()["id"] == OTHER_BOT_ID
    [req, _] = discord.received("GET", "/api/v10/users/@me")
    assert req.headers["authorization"] == f"Bot {BOT_TOKEN}"


def test_guild_member_objects_and_their_errors(api: httpx.Client) -> None:
    alice = api.get(f"/guilds/{GUILD_ID}/members/{ALICE_ID}").json()
    assert alice["roles"] == [APPROVER_ROLE_ID]
    assert alice["user"]["id"] == ALICE_ID and "bot" not in alice["user"]  # humans carry no flag
    assert {"nick", "joined_at", "deaf", "mute"} <= alice.keys()
    assert api.get(f"/guilds/{GUILD_ID}/members/{MALLORY_ID}").json()["roles"] == []
    cases = {
        f"/guilds/{GUILD_ID}/members/{DAVE_ID}": (
            404,
            {"message": "Unknown Member", "code": 10007},
        ),
        f"/guilds/{GUILD_ID}/members/42": (404, {"message": "Unknown User", "code": 10013}),
        f"/guilds/42/members/{ALICE_ID}": (404, {"message": "Unknown Guild", "code": 10004}),
    }
    for path, expected in cases.items():
        resp = api.get(path)
        assert (resp.status_code, resp.json()) == expected
    errors = form_errors(api.get(f"/guilds/{GUILD_ID}/members/alice"))
    assert errors["user_id"]["_errors"][0]["code"] == "NUMBER_TYPE_COERCE"


def test_create_message_returns_a_message_object(discord: DiscordServer, api: httpx.Client) -> None:
    embed = {
        "title": "t",
        "color": 0xE74C3C,
        "footer": {"text": "f"},
        "timestamp": "2026-11-26T12:00:00Z",
    }
    embed["fields"] = [{"name": "host", "value": "web-01"}]
    first = post(api, content="hello", embeds=[embed], allowed_mentions={"parse": []})
    second = post(api, content="again")
    assert isinstance(first["id"], str) and int(second["id"]) > int(first["id"])
    assert first["channel_id"] == CHANNEL_ID
    assert first["author"]["id"] == BOT_USER_ID and first["author"]["bot"] is True
    assert first["edited_timestamp"] is None and "reactions" not in first
    assert first["embeds"] == [
        {
            "type": "rich",
            "title": "t",
            "color": 0xE74C3C,
            "footer": {"text": "f"},
            "timestamp": "2026-11-26T12:00:00+00:00",
            "fields": [{"name": "host", "value": "web-01", "inline": False}],
        }
    ]
    stored = discord.messages(CHANNEL_ID)
    assert [m.content for m in stored] == ["hello", "again"]
    assert stored[0].allowed_mentions == {"parse": []}
    assert [r.json()["content"] for r in discord.received("POST")] == ["hello", "again"]


def test_create_errors(api: httpx.Client) -> None:
    unknown = api.post("/channels/42/messages", json={"content": "x"})
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"message": "Unknown Channel", "code": 10003},
    )
    empty = api.post(f"/channels/{CHANNEL_ID}/messages", json={"content": "", "embeds": []})
    assert (empty.status_code, empty.json()) == (
        400,
        {"message": "Cannot send an empty message", "code": 50006},
    )
    garbage = api.post(f"/channels/{CHANNEL_ID}/messages", content=b"{not json")
    assert garbage.json()["code"] == 50109


def _embed(**kw: Any) -> dict[str, Any]:
    return {"title": "t", **kw}


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"content": "x" * 2001}, {"content": max_length(2000)}),
        ({"embeds": [_embed()] * 11}, {"embeds": max_length(10)}),
        ({"embeds": [_embed(title="x" * 257)]}, {"embeds": {"0": {"title": max_length(256)}}}),
        (
            {"embeds": [_embed(description="x" * 4097)]},
            {"embeds": {"0": {"description": max_length(4096)}}},
        ),
        (
            {"embeds": [_embed(fields=[{"name": "n", "value": "v"}] * 26)]},
            {"embeds": {"0": {"fields": max_length(25)}}},
        ),
        (
            {
                "embeds": [
                    _embed(),
                    _embed(fields=[{"name": "n", "value": "v"}, {"name": "x" * 257, "value": "v"}]),
                ]
            },
            {"embeds": {"1": {"fields": {"1": {"name": max_length(256)}}}}},
        ),
        (
            {"embeds": [_embed(fields=[{"name": "n", "value": "x" * 1025}])]},
            {"embeds": {"0": {"fields": {"0": {"value": max_length(1024)}}}}},
        ),
        (
            {"embeds": [_embed(footer={"text": "x" * 2049})]},
            {"embeds": {"0": {"footer": {"text": max_length(2048)}}}},
        ),
        (
            {"embeds": [{"description": "x" * 4000}, {"description": "x" * 2001}]},
            {
                "embeds": {
                    "_errors": [
                        {
                            "code": "MAX_EMBED_SIZE_EXCEEDED",
                            "message": "Embed size exceeds maximum size of 6000",
                        }
                    ]
                }
            },
        ),
    ],
)
def test_discord_limits_answer_50035(
    api: httpx.Client, body: dict[str, Any], errors: dict[str, Any]
) -> None:
    assert form_errors(api.post(f"/channels/{CHANNEL_ID}/messages", json=body)) == errors


def test_payloads_exactly_at_the_limits_are_accepted(api: httpx.Client) -> None:
    fields = [{"name": "n" * 256, "value": "v" * 1024}] + [{"name": "n", "value": "v"}] * 24
    post(
        api,
        content="c" * 2000,
        embeds=[{"title": "t" * 256, "fields": fields, "footer": {"text": "f" * 2048}}],
    )
    post(api, embeds=[{"description": "d" * 4096}, {"description": "d" * 1904}])  # 6000 in total
    post(api, embeds=[{"title": "t"}] * 10)


def test_edit_keeps_history_and_unchanged_parts(discord: DiscordServer, api: httpx.Client) -> None:
    msg = post(api, content="waiting for approval", embeds=[{"title": "Restart nginx"}])
    path = f"/channels/{CHANNEL_ID}/messages/{msg['id']}"
    edited = api.patch(path, json={"content": "approved by alice"}).json()
    assert edited["content"] == "approved by alice"
    assert edited["embeds"] == msg["embeds"] and edited["edited_timestamp"] is not None
    api.patch(path, json={"embeds": [{"title": "Restarted"}]})
    stored = discord.message(CHANNEL_ID, msg["id"])
    assert [v.content for v in stored.history] == ["waiting for approval", "approved by alice"]
    assert [v.embeds[0]["title"] for v in stored.history] == ["Restart nginx", "Restart nginx"]
    assert (stored.content, stored.embeds[0]["title"]) == ("approved by alice", "Restarted")
    cleared = api.patch(path, json={"content": "", "embeds": []})
    assert cleared.json()["code"] == 50006
    assert form_errors(api.patch(path, json={"content": "x" * 2001})) == {
        "content": max_length(2000)
    }
    other = httpx.patch(
        f"{discord.api_base}{path}",
        json={"content": "x"},
        headers={"Authorization": f"Bot {OTHER_BOT_TOKEN}"},
    )
    assert (other.status_code, other.json()["code"]) == (403, 50005)


@pytest.mark.parametrize("how", ["api", "python", "control"])
def test_a_deleted_message_is_unknown_everywhere(
    discord: DiscordServer, api: httpx.Client, how: str
) -> None:
    msg_id = post(api, content="approve?")["id"]
    path = f"/channels/{CHANNEL_ID}/messages/{msg_id}"
    if how == "api":
        assert api.delete(path).status_code == 204
    elif how == "python":
        discord.delete_message(CHANNEL_ID, msg_id)
    else:
        assert api.delete(f"{discord.url}/_control{path}").status_code == 204
    gone = (404, {"message": "Unknown Message", "code": 10008})
    for resp in (
        api.get(path),
        api.patch(path, json={"content": "x"}),
        api.put(f"{path}/reactions/{CHECK}/@me"),
        api.get(f"{path}/reactions/{CHECK}"),
    ):
        assert (resp.status_code, resp.json()) == gone
    assert discord.messages(CHANNEL_ID) == []
    assert discord.messages(CHANNEL_ID, include_deleted=True)[0].deleted


def test_reactions_by_bot_python_and_control_api(discord: DiscordServer, api: httpx.Client) -> None:
    msg_id = post(api, content="approve?")["id"]
    path = f"/channels/{CHANNEL_ID}/messages/{msg_id}"
    assert api.put(f"{path}/reactions/{CHECK}/@me").status_code == 204
    assert api.put(f"{path}/reactions/%E2%9D%8C/@me").status_code == 204
    assert api.put(f"{discord.url}/_control{path}/reactions/{CHECK}/bob").status_code == 204
    discord.react(CHANNEL_ID, msg_id, "✅", ALICE_ID)
    discord.react(
        CHANNEL_ID, msg_id, "✅", "alice"
    )  # a second reaction by the same user is a no-op
    assert discord.reactions(CHANNEL_ID, msg_id) == {
        "✅": [BOT_USER_ID, BOB_ID, ALICE_ID],
        "❌": [BOT_USER_ID],
    }
    users = api.get(f"{path}/reactions/{CHECK}").json()
    assert [u["id"] for u in users] == [BOT_USER_ID, ALICE_ID, BOB_ID]  # ordered by user id
    assert users[0]["bot"] is True and "bot" not in users[1]
    summary = api.get(path).json()["reactions"]
    assert summary[0]["emoji"] == {"id": None, "name": "✅"}
    assert (summary[0]["count"], summary[0]["me"]) == (3, True)

    assert api.delete(f"{path}/reactions/%E2%9D%8C/@me").status_code == 204
    assert api.delete(f"{discord.url}/_control{path}/reactions/{CHECK}/{BOB_ID}").status_code == 204
    discord.unreact(CHANNEL_ID, msg_id, "✅", "alice")
    assert discord.reactions(CHANNEL_ID, msg_id) == {"✅": [BOT_USER_ID]}
    assert api.put(f"{discord.url}/_control{path}/reactions/{CHECK}/nobody").status_code == 404


def test_reaction_paging_with_limit_and_after(discord: DiscordServer, api: httpx.Client) -> None:
    msg_id = post(api, content="approve?")["id"]
    path = f"/channels/{CHANNEL_ID}/messages/{msg_id}/reactions/{CHECK}"
    ids = [str(2_000_000_000_000_000_000 - i) for i in range(30)]  # reacting in descending id order
    for uid in ids:
        discord.add_user(SandboxUser(uid, f"user{uid[-2:]}"))
        discord.react(CHANNEL_ID, msg_id, "✅", uid)
    ascending = sorted(ids, key=int)
    assert [u["id"] for u in api.get(path).json()] == ascending[:25]  # Discord's default limit
    page = api.get(path, params={"limit": 10, "after": ascending[9]}).json()
    assert [u["id"] for u in page] == ascending[10:20]
    assert api.get(path, params={"limit": 100, "after": ascending[-1]}).json() == []
    assert (
        form_errors(api.get(path, params={"limit": 101}))["limit"]["_errors"][0]["code"]
        == "NUMBER_TYPE_MAX"
    )
    assert (
        form_errors(api.get(path, params={"limit": 0}))["limit"]["_errors"][0]["code"]
        == "NUMBER_TYPE_MIN"
    )


@pytest.mark.parametrize("emoji", ["%25E2%259C%2585", "approve", "white_check_mark"])
def test_badly_encoded_emoji_is_unknown(api: httpx.Client, emoji: str) -> None:
    msg_id = post(api, content="approve?")["id"]
    resp = api.put(f"/channels/{CHANNEL_ID}/messages/{msg_id}/reactions/{emoji}/@me")
    assert (resp.status_code, resp.json()) == (400, {"message": "Unknown Emoji", "code": 10014})


def test_custom_emoji_name_id_is_accepted(discord: DiscordServer, api: httpx.Client) -> None:
    msg_id = post(api, content="approve?")["id"]
    assert (
        api.put(
            f"/channels/{CHANNEL_ID}/messages/{msg_id}/reactions/approve:1234567/@me"
        ).status_code
        == 204
    )
    assert api.get(f"/channels/{CHANNEL_ID}/messages/{msg_id}").json()["reactions"][0]["emoji"] == {
        "id": "1234567",
        "name": "approve",
    }


def test_rate_limit_answers_discords_429(discord: DiscordServer, api: httpx.Client) -> None:
    discord.rate_limit(r"/channels/\d+/messages", retry_after=0.25, times=1, bucket="abc123")
    limited = api.post(f"/channels/{CHANNEL_ID}/messages", json={"content": "x"})
    assert limited.status_code == 429
    assert limited.json() == {
        "message": "You are being rate limited.",
        "retry_after": 0.25,
        "global": False,
    }
    assert limited.headers["Retry-After"] == "1"  # whole seconds, rounded up
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert limited.headers["X-RateLimit-Reset-After"] == "0.250"
    assert (limited.headers["X-RateLimit-Bucket"], limited.headers["X-RateLimit-Scope"]) == (
        "abc123",
        "user",
    )
    assert "X-RateLimit-Limit" in limited.headers
    assert api.post(f"/channels/{CHANNEL_ID}/messages", json={"content": "x"}).status_code == 200
    assert len(discord.received("POST")) == 2  # the limited request is recorded too
    assert len(discord.messages(CHANNEL_ID)) == 1


def test_rate_limit_through_the_control_api(discord: DiscordServer, api: httpx.Client) -> None:
    spec = {"path": "/users/@me", "retry_after": 0.5, "times": 2, "global": True}
    assert api.post(f"{discord.url}/_control/rate_limit", json=spec).status_code == 204
    statuses = [api.get("/users/@me") for _ in range(3)]
    assert [r.status_code for r in statuses] == [429, 429, 200]
    assert (
        statuses[0].json()["global"] is True and statuses[0].headers["X-RateLimit-Global"] == "true"
    )


def test_pings_follow_allowed_mentions(discord: DiscordServer, api: httpx.Client) -> None:
    text = f"<@{ALICE_ID}> <@&{APPROVER_ROLE_ID}> @everyone"
    post(api, content=text)
    post(api, content=text, allowed_mentions={"parse": []})
    post(api, content=text, allowed_mentions={"parse": [], "users": [ALICE_ID]})
    assert [m.pings for m in discord.messages(CHANNEL_ID)] == [
        [f"user:{ALICE_ID}", f"role:{APPROVER_ROLE_ID}", "everyone"],
        [],
        [f"user:{ALICE_ID}"],
    ]


def test_control_messages_lists_everything_for_other_languages(
    discord: DiscordServer, api: httpx.Client
) -> None:
    msg_id = post(api, content="v1")["id"]
    api.patch(f"/channels/{CHANNEL_ID}/messages/{msg_id}", json={"content": "v2"})
    discord.react(CHANNEL_ID, msg_id, "✅", "alice")
    [listed] = api.get(f"{discord.url}/_control/channels/{CHANNEL_ID}/messages").json()
    assert (listed["id"], listed["content"], listed["deleted"]) == (msg_id, "v2", False)
    assert [v["content"] for v in listed["history"]] == ["v1"]
    assert listed["reactions"] == {"✅": [ALICE_ID]} and listed["pings"] == []


def test_reset_keeps_configured_users_only(discord: DiscordServer, api: httpx.Client) -> None:
    discord.add_user(SandboxUser("1999999999999999999", "temp"))
    post(api, content="x")
    discord.rate_limit(times=-1)
    discord.reset()
    assert discord.messages(CHANNEL_ID) == [] and discord.received() == [] and discord.faults == []
    with pytest.raises(KeyError):
        discord.user("temp")
    assert discord.user("alice").id == ALICE_ID
    assert api.get("/users/@me").status_code == 200


def test_unknown_routes_answer_discords_json(api: httpx.Client) -> None:
    missing = api.get("/nope")
    assert (missing.status_code, missing.json()) == (404, {"message": "404: Not Found", "code": 0})
    wrong_method = api.post("/users/@me")
    assert (wrong_method.status_code, wrong_method.json()) == (
        405,
        {"message": "405: Method Not Allowed", "code": 0},
    )
