"""The heartbeat of a live action run: the reconciler tells a dead run from a live one
by it (`core.liveness`). Its own module so the action flow need not import the
reconciler (which starts action runs itself)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime

from prefect.logging import get_logger

from clients.errors import UpstreamError
from clients.ledger import Ledger

log = get_logger("remediation.heartbeat")


@asynccontextmanager
async def keep_alive(
    ledger: Ledger, action_id: str, run_id: str, every_seconds: float
) -> AsyncIterator[None]:
    """Write the action's heartbeat now and every `every_seconds` until the block ends."""
    await ledger.jobs.action_heartbeat(action_id, run_id=run_id, now=datetime.now(UTC))

    async def beat() -> None:
        while True:
            await asyncio.sleep(every_seconds)
            try:
                await ledger.jobs.action_heartbeat(action_id, run_id=run_id, now=datetime.now(UTC))
            except UpstreamError as exc:  # the next one may land; staleness is generous
                log.warning("heartbeat of action %s failed: %s", action_id, exc)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
