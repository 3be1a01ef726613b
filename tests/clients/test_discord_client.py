"""`DiscordClient` against the sandbox Discord: calls, paging, limits, 429s, errors, secrets."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from clients.discord import DiscordClient, cut, embeds_json
from clients.errors import DiscordError, DiscordNotFound, DiscordRateLimited
from core.wire import DiscordUser, Embed, EmbedField
from sandbox.discord import DiscordServer, SandboxUser
from tests.fixtures.loki_discord import (
    ALICE_ID,
    APPROVER_ROLE_ID,
    BOT_TOKEN,
    BOT_USER_ID,
    BOT_USERNAME,
    CAROL_ID,
    CHANNEL_ID,
    DAVE_ID,
    GUILD_ID,
    MALLORY_ID,
    OPS_ROLE_ID,
)

MESSAGES = rf"/api/v10/channels/{CHANNEL_ID}/messages"


@pytest.fixture
async def client(discord: DiscordServer) -> AsyncIterator[DiscordClient]:
    async with DiscordClient(BOT_TOKEN, api_base=discord.api_base, max_retry_wait=2.0) as c:
        yield c


async def test_create_message_sends_embeds_as_discord_json(
    discord: DiscordServer, client: DiscordClient
) -> None:
    embed = Embed(
        title="Restart nginx on web-01",
        description="nginx.service failed",
        url="https://prefect.example/runs/1",
        color=0xE67E22,
        fields=[EmbedField(name="risk", value="medium", inline=True)],
        footer="action 3f2a",
        timestamp=datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
    )
    msg = await client.create_message(CHANNEL_ID, content="Approval needed", embeds=[embed])
    [req] = discord.received("POST", MESSAGES)
    assert req.headers["authorization"] == f"Bot {BOT_TOKEN}"
    assert req.json() == {
        "content": "Approval needed",
        "embeds": [
            {
                "title": "Restart nginx on web-01",
                "description": "nginx.service failed",
                "url": "https://prefect.example/runs/1",
                "color": 0xE67E22,
                "fields": [{"name": "risk", "value": "medium", "inline": True}],
                "footer": {"text": "action 3f2a"},
                "timestamp": "2026-11-26T12:00:00+00:00",
            }
        ],
        "allowed_mentions": {"parse": []},
    }
    [stored] = discord.messages(CHANNEL_ID)
    assert (msg.id, msg.channel_id, msg.content) == (stored.id, CHANNEL_ID, "Approval needed")
    assert msg.embeds == stored.embeds and msg.embeds[0]["type"] == "rich"


async def test_no_post_or_edit_can_ping_anyone(
    discord: DiscordServer, client: DiscordClient
) -> None:
    hostile = f"log line: <@{ALICE_ID}> <@&{APPROVER_ROLE_ID}> @everyone @here"
    msg = await client.create_message(CHANNEL_ID, content=hostile)
    await client.edit_message(CHANNEL_ID, msg.id, content=hostile + " again")
    await client.edit_message(CHANNEL_ID, msg.id, embeds=[Embed(description=hostile)])
    sent = discord.received("POST") + discord.received("PATCH")
    assert len(sent) == 3
    assert all(r.json()["allowed_mentions"] == {"parse": []} for r in sent)
    assert discord.message(CHANNEL_ID, msg.id).pings == []


async def test_edit_changes_only_what_is_given(
    discord: DiscordServer, client: DiscordClient
) -> None:
    msg = await client.create_message(
        CHANNEL_ID, content="waiting", embeds=[Embed(title="Restart nginx")]
    )
    edited = await client.edit_message(CHANNEL_ID, msg.id, content="approved by alice")
    assert edited.content == "approved by alice" and edited.embeds == msg.embeds
    assert "embeds" not in discord.received("PATCH")[0].json()
    await client.edit_message(CHANNEL_ID, msg.id, embeds=[Embed(title="Done")])
    assert "content" not in discord.received("PATCH")[1].json()
    fetched = await client.get_message(CHANNEL_ID, msg.id)
    assert (fetched.content, fetched.embeds[0]["title"]) == ("approved by alice", "Done")
    assert [v.content for v in discord.message(CHANNEL_ID, msg.id).history] == [
        "waiting",
        "approved by alice",
    ]


async def test_add_reaction_percent_encodes_the_emoji(
    discord: DiscordServer, client: DiscordClient
) -> None:
    msg = await client.create_message(CHANNEL_ID, content="approve?")
    await client.add_reaction(CHANNEL_ID, msg.id, "✅")
    await client.add_reaction(CHANNEL_ID, msg.id, "approve:1234567")
    paths = [r.path for r in discord.received("PUT")]
    assert paths == [
        f"{MESSAGES}/{msg.id}/reactions/%E2%9C%85/@me",
        f"{MESSAGES}/{msg.id}/reactions/approve:1234567/@me",
    ]
    assert discord.reactions(CHANNEL_ID, msg.id) == {
        "✅": [BOT_USER_ID],
        "approve:1234567": [BOT_USER_ID],
    }


@pytest.mark.parametrize(("reactors", "requests"), [(0, 1), (99, 1), (100, 2), (250, 3)])
async def test_list_reactions_reads_every_page(
    discord: DiscordServer, client: DiscordClient, reactors: int, requests: int
) -> None:
    msg = await client.create_message(CHANNEL_ID, content="approve?")
    ids = [str(1_400_000_000_000_000_000 + 7 * i) for i in range(reactors)]
    for uid in reversed(ids):  # reacting in the opposite order to the paging order
        discord.add_user(SandboxUser(uid, f"user{uid[-4:]}"))
        discord.react(CHANNEL_ID, msg.id, "✅", uid)
    users = await client.list_reactions(CHANNEL_ID, msg.id, "✅")
    assert [u.id for u in users] == ids
    pages = discord.received("GET", rf"{MESSAGES}/\d+/reactions/%E2%9C%85")
    assert len(pages) == requests
    assert [p.arg("limit") for p in pages] == ["100"] * requests
    assert [p.arg("after") for p in pages] == [None] + [
        ids[100 * k - 1] for k in range(1, requests)
    ]


async def test_list_reactions_marks_bots(discord: DiscordServer, client: DiscordClient) -> None:
    msg = await client.create_message(CHANNEL_ID, content="approve?")
    await client.add_reaction(CHANNEL_ID, msg.id, "❌")
    discord.react(CHANNEL_ID, msg.id, "❌", "mallory")
    assert await client.list_reactions(CHANNEL_ID, msg.id, "❌") == [
        DiscordUser(id=BOT_USER_ID, username=BOT_USERNAME, bot=True),
        DiscordUser(id=MALLORY_ID, username="mallory", bot=False),
    ]


async def test_member_roles_and_non_members(client: DiscordClient) -> None:
    assert await client.get_member_roles(GUILD_ID, ALICE_ID) == [APPROVER_ROLE_ID]
    assert await client.get_member_roles(GUILD_ID, CAROL_ID) == [APPROVER_ROLE_ID, OPS_ROLE_ID]
    assert await client.get_member_roles(GUILD_ID, MALLORY_ID) == []
    assert await client.get_member_roles(GUILD_ID, DAVE_ID) == []  # left the guild: no roles
    with pytest.raises(DiscordError) as caught:
        await client.get_member_roles("42", ALICE_ID)
    assert type(caught.value) is DiscordError
    assert caught.value.detail == "Unknown Guild (code 10004)"


async def test_current_user(client: DiscordClient) -> None:
    assert await client.current_user() == DiscordUser(
        id=BOT_USER_ID, username=BOT_USERNAME, bot=True
    )


async def test_429_is_retried_after_retry_after(
    discord: DiscordServer, client: DiscordClient
) -> None:
    discord.rate_limit(r"/channels/\d+/messages", retry_after=0.15, times=2)
    msg = await client.create_message(CHANNEL_ID, content="eventually")
    attempts = discord.received("POST", MESSAGES)
    assert len(attempts) == 3
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    # The JSON's 0.15 s was honoured, not the header's whole second.
    assert all(0.15 <= gap < 0.9 for gap in gaps), gaps
    assert [m.id for m in discord.messages(CHANNEL_ID)] == [msg.id]


async def test_retry_after_header_is_used_without_a_json_body(
    discord: DiscordServer, client: DiscordClient
) -> None:
    # A 429 from Cloudflare in front of Discord carries no JSON, only the header.
    discord.inject(
        path="/api/v10/users/@me",
        status=429,
        body="error code: 1015",
        headers={"Retry-After": "0.2"},
    )
    await client.current_user()
    first, second = discord.received("GET", "/api/v10/users/@me")
    assert second.at - first.at >= 0.2


async def test_retries_are_bounded_then_rate_limited(discord: DiscordServer) -> None:
    discord.rate_limit(r"/users/@me", retry_after=0.05, times=-1, bucket="b-42")
    async with DiscordClient(BOT_TOKEN, api_base=discord.api_base, max_retries=2) as client:
        with pytest.raises(DiscordRateLimited) as caught:
            await client.current_user()
    assert len(discord.received("GET", "/api/v10/users/@me")) == 3  # 1 try + 2 retries
    assert caught.value.status_code == 429
    assert "after 2 retries" in caught.value.detail and "b-42" in caught.value.detail


async def test_total_wait_is_bounded(discord: DiscordServer) -> None:
    discord.rate_limit(r"/users/@me", retry_after=30.0, times=1)
    started = time.monotonic()
    async with DiscordClient(BOT_TOKEN, api_base=discord.api_base, max_retry_wait=1.0) as client:
        with pytest.raises(DiscordRateLimited):
            await client.current_user()
    assert time.monotonic() - started < 1.0  # gave up at once instead of sleeping 30 s
    assert len(discord.received()) == 1


async def test_deleted_message_and_unknown_channel_are_not_found(
    discord: DiscordServer, client: DiscordClient
) -> None:
    msg = await client.create_message(CHANNEL_ID, content="approve?")
    discord.delete_message(CHANNEL_ID, msg.id)
    calls = [
        client.get_message(CHANNEL_ID, msg.id),
        client.edit_message(CHANNEL_ID, msg.id, content="x"),
        client.add_reaction(CHANNEL_ID, msg.id, "✅"),
        client.list_reactions(CHANNEL_ID, msg.id, "✅"),
    ]
    for call in calls:
        with pytest.raises(DiscordNotFound) as caught:
            await call
        assert (
            caught.value.status_code == 404
            and "Unknown Message (code 10008)" in caught.value.detail
        )
    with pytest.raises(DiscordNotFound, match=r"Unknown Channel \(code 10003\)"):
        await client.create_message("42", content="x")


async def test_other_errors_carry_discords_code_and_field_errors(client: DiscordClient) -> None:
    with pytest.raises(DiscordError) as caught:
        await client.get_member_roles(GUILD_ID, "alice")
    assert caught.value.status_code == 400 and type(caught.value) is DiscordError
    assert (
        caught.value.detail
        == 'Invalid Form Body (code 50035); user_id: Value "alice" is not snowflake.'
    )


async def test_wrong_token_is_an_error_without_the_token(discord: DiscordServer) -> None:
    async with DiscordClient("Zm9vYmFy.wrong-token-value-123", api_base=discord.api_base) as client:
        with pytest.raises(DiscordError) as caught:
            await client.current_user()
    assert caught.value.status_code == 401 and "401: Unauthorized (code 0)" in caught.value.detail
    assert "wrong-token-value" not in str(caught.value)


async def test_timeout_is_a_discord_error(discord: DiscordServer) -> None:
    # A GET, so the handler that runs after the delay changes nothing for later tests.
    discord.inject(path="/api/v10/users/@me", mode="delay", delay=1.0)
    async with DiscordClient(BOT_TOKEN, api_base=discord.api_base, timeout=0.2) as client:
        with pytest.raises(DiscordError, match=r"no answer within 0\.2 s"):
            await client.current_user()


async def test_planted_token_is_sent_but_never_in_an_error(
    discord: DiscordServer, client: DiscordClient
) -> None:
    # A proxy error page that echoes the request's credentials back.
    discord.inject(
        path="/api/v10/users/@me",
        status=500,
        body={"message": f"Bot {BOT_TOKEN} failed", "code": 0},
    )
    discord.rate_limit(r"/channels/.*", retry_after=5.0, times=1)
    errors: list[DiscordError] = []
    for call in (client.current_user(), client.create_message(CHANNEL_ID, content="x")):
        with pytest.raises(DiscordError) as caught:
            await call
        errors.append(caught.value)
    assert all(r.headers["authorization"] == f"Bot {BOT_TOKEN}" for r in discord.received())
    for err in errors:
        assert (
            BOT_TOKEN not in str(err)
            and BOT_TOKEN not in err.detail
            and BOT_TOKEN not in repr(err.args)
        )
    assert "[REDACTED]" in errors[0].detail


async def test_oversized_content_and_embeds_are_cut_to_fit(
    discord: DiscordServer, client: DiscordClient
) -> None:
    big = Embed(
        title="T" * 300,
        description="D" * 5000,
        fields=[EmbedField(name="N" * 300, value="V" * 2000) for _ in range(30)],
        footer="F" * 3000,
    )
    msg = await client.create_message(CHANNEL_ID, content="C" * 5000, embeds=[big] * 12)
    [stored] = discord.messages(CHANNEL_ID)  # the sandbox enforces Discord's limits: it accepted
    assert stored.id == msg.id
    assert len(stored.content) == 2000 and stored.content.endswith("…")
    assert len(stored.embeds) == 10 and stored.embeds[-1]["description"] == "… 3 more not shown"
    first = stored.embeds[0]
    assert len(first["title"]) <= 256 and first["title"].endswith("…")
    assert len(first["fields"]) == 25 and first["fields"][-1]["value"] == "6 more fields not shown"
    texts = [
        e.get("title", "") + e.get("description", "") + e.get("footer", {}).get("text", "")
        for e in stored.embeds
    ]
    texts += [f["name"] + f["value"] for e in stored.embeds for f in e.get("fields", [])]
    assert sum(len(t) for t in texts) <= 6000


def test_text_within_limits_is_untouched() -> None:
    assert cut("x" * 2000, 2000) == "x" * 2000
    assert cut("x" * 2001, 2000) == "x" * 1999 + "…"
    exact = Embed(
        title="t" * 256,
        description="d" * 4096,
        fields=[EmbedField(name="n" * 256, value="v" * 1024)],
    )
    assert embeds_json([exact]) == [
        {
            "title": "t" * 256,
            "description": "d" * 4096,
            "fields": [{"name": "n" * 256, "value": "v" * 1024, "inline": False}],
        }
    ]


def test_total_budget_cuts_the_longest_texts_first() -> None:
    embeds = embeds_json(
        [Embed(title="keep me", description="d" * 4096), Embed(description="e" * 4096)]
    )
    assert embeds[0]["title"] == "keep me"
    # The largest common cap that fits: 7 + 2 × 2996 = 5999 ≤ 6000 < 7 + 2 × 2997.
    assert [len(e["description"]) for e in embeds] == [2996, 2996]
    assert all(e["description"].endswith("…") for e in embeds)


def test_empty_field_texts_become_an_ellipsis() -> None:
    [embed] = embeds_json([Embed(title="t", fields=[EmbedField(name="", value="")])])
    assert embed["fields"] == [{"name": "…", "value": "…", "inline": False}]
