"""Posting to Discord (never retried here: a retried post could appear twice; the
client already honours 429s)."""

from __future__ import annotations

from collections.abc import Sequence
from logging import Logger, LoggerAdapter
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from clients.discord import DiscordClient
from clients.errors import UpstreamError
from core.fallback import fallback_notices
from core.wire import DiscordMessage, Embed
from tasks.connections import Connections


def report_fallbacks(embeds: Sequence[Embed]) -> list[str]:
    """Log the notice of every plain-text fallback among `embeds` (a message whose
    renderer failed); the notices, so a caller can add them to its report."""
    notices = fallback_notices(embeds)
    for notice in notices:
        get_run_logger().error("%s", notice)
    return notices


@task(name="post-to-discord", cache_policy=NO_CACHE, retries=0)
async def post_message(
    discord: DiscordClient, channel_id: str, embeds: Sequence[Embed], content: str = ""
) -> DiscordMessage:
    report_fallbacks(embeds)
    return await discord.create_message(channel_id, content=content, embeds=embeds)


async def post_notice(conns: Connections, embed: Embed, log: Logger | LoggerAdapter[Any]) -> bool:
    """Post one notice to the approvals channel of `conns` (a flow run's connections). A
    failure is logged, never raised: a notice must not stop what it reports on. True when
    it was posted."""
    try:
        await post_message(conns.discord, conns.discord_bot.approvals_channel_id, [embed])
        return True
    except UpstreamError as exc:
        log.error("Discord post %r failed: %s", embed.title, exc)
        return False
