"""The Prefect API for flows: `PrefectRuns` opened where a flow needs one, and the few
single calls a flow makes on its own run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from clients.prefect_runs import PrefectRuns


@asynccontextmanager
async def open_prefect_runs() -> AsyncIterator[PrefectRuns]:
    """A `PrefectRuns` on its own API client, closed at the end of the block."""
    async with PrefectRuns.open() as runs:
        yield runs


async def run_is_cancelling(run_id: str | uuid.UUID) -> bool:
    """Whether someone asked to cancel the run (it should then end Cancelled)."""
    async with PrefectRuns.open() as runs:
        return await runs.is_cancelling(run_id)
