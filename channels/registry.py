"""One entry per chat channel: its block, and the adapter built from it.

Connections load the block of every registered channel a flow names (its field in
`BlockNames` is the entry's `name`) and build the adapter with `connect`; the listener
and every post reach the channel only through the `ChatChannel` port. Adding a channel
is one entry here, its adapter module and its block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from blocks.discord import DiscordBot
from blocks.slack import SlackBot
from channels.discord import DiscordChannel
from channels.port import ChatChannel
from channels.slack import SlackChannel


@dataclass(frozen=True)
class ChannelSpec:
    name: str  # the block's field in BlockNames, and the adapter's name
    title: str
    block: type
    connect: Callable[[Any], ChatChannel]


CHANNELS: tuple[ChannelSpec, ...] = (
    ChannelSpec("discord", "Discord", DiscordBot, DiscordChannel.from_block),
    ChannelSpec("slack", "Slack", SlackBot, SlackChannel.from_block),
)
BLOCK_FIELDS: tuple[str, ...] = tuple(c.name for c in CHANNELS)


def spec(name: str) -> ChannelSpec:
    return next(c for c in CHANNELS if c.name == name)
