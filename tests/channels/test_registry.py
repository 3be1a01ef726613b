"""The channel registry: one entry per chat channel, each building its adapter from its
block, named by its `BlockNames` field."""

from __future__ import annotations

from blocks.discord import DiscordBot
from blocks.names import CHAT_FIELDS, BlockNames
from blocks.slack import SlackBot
from channels.discord import DiscordChannel
from channels.registry import BLOCK_FIELDS, CHANNELS, spec
from channels.slack import SlackChannel


def test_the_registry_builds_the_slack_adapter_from_its_block() -> None:
    slack = spec("slack")
    assert (slack.name, slack.title, slack.block) == ("slack", "Slack", SlackBot)
    assert slack.connect == SlackChannel.from_block
    assert (spec("discord").block, spec("discord").connect) == (
        DiscordBot,
        DiscordChannel.from_block,
    )


def test_every_channel_is_a_block_names_field_and_the_chat_check_knows_them_all() -> None:
    assert BLOCK_FIELDS == ("discord", "slack") == CHAT_FIELDS
    assert all(c.name in BlockNames.model_fields for c in CHANNELS)
