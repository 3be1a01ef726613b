"""Shared helpers for flow tests: a background listener, waiting on sandbox state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from core.policy import load_policy
from core.settings import ListenerSettings
from flows.approval_listener import run_listener
from tests.fixtures.loki_discord import CHANNEL_ID
from tests.fixtures.stack import FAST_POLICY, Stack


async def eventually(
    probe: Callable[[], Any],
    *,
    timeout: float = 60.0,
    interval: float = 0.2,
    what: str = "condition",
) -> Any:
    """Poll `probe` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


@asynccontextmanager
async def listener(
    stack: Stack, poll_seconds: float = 0.5, policy: dict[str, Any] | None = None
) -> AsyncIterator[None]:
    """The approval listener polling in the background for the duration of the block."""
    stopping = False
    task = asyncio.create_task(
        run_listener(
            stack.names,
            load_policy(policy or FAST_POLICY),
            ListenerSettings(poll_seconds=poll_seconds),
            stop=lambda: stopping,
        )
    )
    try:
        yield
    finally:
        stopping = True
        await asyncio.wait_for(task, timeout=30)


def approval_messages(stack: Stack) -> list[Any]:
    return [
        m
        for m in stack.discord.messages(CHANNEL_ID)
        if m.embeds and (m.embeds[0].get("title") or "").startswith(("🟢", "🟡", "🔴"))
    ]


def titles(stack: Stack) -> list[str]:
    return [
        (m.embeds[0].get("title") if m.embeds else m.content) or ""
        for m in stack.discord.messages(CHANNEL_ID)
    ]
