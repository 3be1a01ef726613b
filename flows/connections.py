"""Load the blocks a flow needs and build their clients, closed together at the end."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from blocks import (
    AwxConnection,
    ClaudeCredentials,
    DiscordBot,
    LedgerDatabase,
    LokiConnection,
    PrometheusConnection,
    SemaphoreConnection,
)
from blocks.base import secret_values
from blocks.names import BlockNames, load_block
from clients.awx import AwxClient
from clients.discord import DiscordClient
from clients.ledger import Ledger
from clients.loki import LokiClient
from clients.prometheus import PrometheusClient
from clients.semaphore import SemaphoreClient
from core.errors import ConfigError

if TYPE_CHECKING:  # the SDK is imported only where Claude is called
    from clients.claude import ClaudeClient

_BLOCKS: dict[str, type] = {
    "prometheus": PrometheusConnection,
    "loki": LokiConnection,
    "discord": DiscordBot,
    "claude": ClaudeCredentials,
    "awx": AwxConnection,
    "semaphore": SemaphoreConnection,
    "ledger": LedgerDatabase,
}


@dataclass
class Connections:
    """Clients of one flow run; `secrets` are every block secret, for redaction."""

    blocks: dict[str, Any] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)
    _clients: dict[str, Any] = field(default_factory=dict)

    def _client(self, name: str) -> Any:
        if name not in self._clients:
            if name not in self.blocks:
                raise KeyError(f"block {name!r} was not loaded for this flow")
            client = self.blocks[name].get_client()
            self._stack.push_async_callback(client.aclose)
            self._clients[name] = client
        return self._clients[name]

    @property
    def prometheus(self) -> PrometheusClient:
        return self._client("prometheus")

    @property
    def loki(self) -> LokiClient:
        return self._client("loki")

    @property
    def discord(self) -> DiscordClient:
        return self._client("discord")

    @property
    def discord_bot(self) -> DiscordBot:
        return self.blocks["discord"]

    @property
    def claude(self) -> ClaudeClient:
        return self._client("claude")

    @property
    def ledger(self) -> Ledger:
        return self._client("ledger")

    @property
    def awx(self) -> AwxClient:
        return self._client("awx")

    @property
    def semaphore(self) -> SemaphoreClient:
        return self._client("semaphore")

    async def aclose(self) -> None:
        await self._stack.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def open_connections(names: BlockNames, needed: tuple[str, ...]) -> Connections:
    """Load the named blocks (a missing one is a ConfigError naming its field)."""
    conns = Connections()
    for field_name in needed:
        name = getattr(names, field_name)
        if name is None:
            continue
        block = await load_block(_BLOCKS[field_name], name, field_name)
        conns.blocks[field_name] = block
        conns.secrets.extend(secret_values(block))
    return conns


async def add_secrets(conns: Connections, names: BlockNames, fields: tuple[str, ...]) -> None:
    """Add the secrets of more blocks, for redaction only (no client is built); a block
    that is not configured or not saved is skipped."""
    for field_name in fields:
        name = getattr(names, field_name)
        if name is None:
            continue
        try:
            block = await load_block(_BLOCKS[field_name], name, field_name)
        except ConfigError:
            continue
        conns.secrets.extend(secret_values(block))
