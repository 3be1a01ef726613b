"""Posting to Discord (never retried here: a retried post could appear twice; the
client already honours 429s)."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from clients.discord import DiscordClient
from core.wire import DiscordMessage, Embed


@task(name="post-to-discord", cache_policy=NO_CACHE, retries=0)
async def post_message(
    discord: DiscordClient, channel_id: str, embeds: Sequence[Embed], content: str = ""
) -> DiscordMessage:
    return await discord.create_message(channel_id, content=content, embeds=embeds)
