"""Load the blocks a flow needs and build their clients, closed together at the end."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel, ConfigDict

from blocks import (
    ClaudeCredentials,
    LedgerDatabase,
    LokiConnection,
    PrometheusConnection,
)
from blocks.base import secret_values
from blocks.job_runners import JobRunnerSpec, runner_block_fields, runner_by_field
from blocks.names import BlockNames, load_block
from blocks.policy import load_policy_block
from channels.channel_set import ChannelSet
from channels.port import ChatChannel
from channels.registry import CHANNELS
from clients.ledger import Ledger
from clients.loki import LokiClient
from clients.prometheus import PrometheusClient
from core.errors import ConfigError
from core.policy import Policy, load_policy, policy_hash

if TYPE_CHECKING:  # the SDK is imported only where Claude is called
    from clients.claude import ClaudeClient

_SERVICE_BLOCKS: dict[str, type] = {
    "prometheus": PrometheusConnection,
    "loki": LokiConnection,
    **{c.name: c.block for c in CHANNELS},
    "claude": ClaudeCredentials,
    "ledger": LedgerDatabase,
}


def block_class(field_name: str) -> type:
    """The block class a `BlockNames` field names: a service's, or a registered job
    runner's (`blocks.job_runners`)."""
    spec = runner_by_field(field_name)
    if spec is not None and spec.block is not None:
        return spec.block
    return _SERVICE_BLOCKS[field_name]


def runner_blocks() -> tuple[str, ...]:
    """Every registered job runner's block field (a flow that launches needs them)."""
    return runner_block_fields()


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
    def chat(self) -> ChatChannel:
        """The chat channel of this run: the registered channel whose block was loaded,
        or all of them as one (`channels.channel_set.ChannelSet`) when several were; built
        once and closed with the rest."""
        if "chat" not in self._clients:
            loaded = [c.connect(self.blocks[c.name]) for c in CHANNELS if c.name in self.blocks]
            if not loaded:
                raise KeyError("no chat channel block was loaded for this flow")
            channel = loaded[0] if len(loaded) == 1 else ChannelSet(loaded)
            self._stack.push_async_callback(channel.aclose)
            self._clients["chat"] = channel
        return self._clients["chat"]

    @property
    def claude(self) -> ClaudeClient:
        return self._client("claude")

    @property
    def ledger(self) -> Ledger:
        return self._client("ledger")

    def runner(self, spec: JobRunnerSpec) -> Any:
        """The client of a runner with a block (a `tasks.runners.JobRunner`)."""
        return self._client(spec.names_field)

    async def aclose(self) -> None:
        await self._stack.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# Loads in flight, per event loop: concurrent runs in one process (inline dispatch of a
# cycle's actions) share one load of each block instead of one each. Loading a block costs
# about 60 ms of CPU between client and server, so five actions starting together spent
# 1.6 s loading the same seven blocks. Nothing is kept once a load ends: a block edited
# later is read afresh.
_in_flight: dict[tuple[int, type, str], asyncio.Future[Any]] = {}


async def _load_shared(cls: type, name: str, field_name: str) -> Any:
    loop = asyncio.get_running_loop()
    key = (id(loop), cls, name)
    future = _in_flight.get(key)
    if future is None or future.get_loop() is not loop:  # (a closed loop's id, reused)
        future = asyncio.ensure_future(load_block(cls, name, field_name))
        _in_flight[key] = future
        future.add_done_callback(lambda _: _in_flight.pop(key, None))
    return await asyncio.shield(future)


async def open_connections(names: BlockNames, needed: tuple[str, ...]) -> Connections:
    """Load the named blocks, all at once (one API round trip of wall time instead of
    one per block); a missing one is a ConfigError naming its field, the first in
    `needed` order when several are."""
    fields = [f for f in needed if getattr(names, f) is not None]
    loaded = await asyncio.gather(
        *(_load_shared(block_class(f), getattr(names, f), f) for f in fields),
        return_exceptions=True,
    )
    conns = Connections()
    for field_name, block in zip(fields, loaded, strict=True):
        if isinstance(block, BaseException):
            raise block
        conns.blocks[field_name] = block
        conns.secrets.extend(secret_values(block))
    return conns


async def add_runner_secrets(conns: Connections, names: BlockNames) -> None:
    """Add the secrets of every registered job runner's block not loaded yet, for
    redaction only (no client is built): a runner's token echoed into a log line is
    masked before the prompt. A block that is not configured or not saved is skipped."""
    await add_secrets(conns, names, tuple(f for f in runner_blocks() if f not in conns.blocks))


async def add_secrets(conns: Connections, names: BlockNames, fields: tuple[str, ...]) -> None:
    """Add the secrets of more blocks, for redaction only (no client is built); a block
    that is not configured or not saved is skipped."""
    for field_name in fields:
        name = getattr(names, field_name)
        if name is None:
            continue
        try:
            block = await load_block(block_class(field_name), name, field_name)
        except ConfigError:
            continue
        conns.secrets.extend(secret_values(block))


class ResolvedPolicy(BaseModel):
    """The policy a run decides by, and where it came from (shown in reports)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    policy: Policy
    hash: str
    source: str


async def resolve_policy(document: dict[str, Any] | None, names: BlockNames) -> ResolvedPolicy:
    """The run's policy: the document passed as a parameter (local runs, `--policy FILE`),
    or the `RemediationPolicy` block that `blocks.policy` names (deployments), or the
    built-in defaults when neither is given. Both at once is refused rather than letting
    one silently win. Invalid data is a ConfigError naming the field."""
    if document is not None and names.policy is not None:
        raise ConfigError(
            "policy",
            f"both a policy document and blocks.policy={names.policy!r} were given; "
            "pass one (deployments name the block, local runs pass a file)",
        )
    if names.policy is not None:
        policy = await load_policy_block(names.policy)
        source = f"policy block {names.policy!r}"
    else:
        policy = load_policy(document)
        source = "the policy parameter" if document else "the built-in defaults"
    return ResolvedPolicy(policy=policy, hash=policy_hash(policy), source=source)
