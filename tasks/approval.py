"""Discord steps of an approval request."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from clients.discord import DiscordClient
from clients.errors import UpstreamError
from core.approval import APPROVE, REJECT
from core.wire import DiscordMessage, Embed
from tasks.notify import report_fallbacks


@task(name="post-approval-request", cache_policy=NO_CACHE, retries=0)
async def post_approval_request(
    discord: DiscordClient, channel_id: str, embed: Embed
) -> DiscordMessage:
    """Post the request and add ✅ and ❌ as the bot (so people only need to click)."""
    report_fallbacks([embed])  # a plain-text request still asks, and says why it is plain
    message = await discord.create_message(channel_id, embeds=[embed])
    for emoji in (APPROVE, REJECT):
        try:
            await discord.add_reaction(channel_id, message.id, emoji)
        except UpstreamError as exc:  # people can still add the reaction themselves
            get_run_logger().warning("could not add %s to the approval request: %s", emoji, exc)
    return message


@task(name="edit-discord-message", cache_policy=NO_CACHE, retries=0)
async def edit_message(
    discord: DiscordClient, channel_id: str, message_id: str, embeds: list[Embed]
) -> DiscordMessage:
    return await discord.edit_message(channel_id, message_id, embeds=embeds)
