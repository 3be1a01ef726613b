"""`remediation-watchdog`: the dead-man's switch when neither the cycle nor the listener
is running to notice the other.

Deploy it on its own schedule (e.g. every 5 minutes, concurrency 1): it compares the
last completed cycle and the last listener poll with their thresholds and posts one
chat alert when either went silent, and one when it recovers (exactly once across
every component that checks, through the ledger's alert states).
"""

# No `from __future__ import annotations` here: Prefect validates a deployed flow's
# parameters from its annotations at run time, and string annotations do not resolve.

import asyncio
import sys
from datetime import UTC, datetime

from prefect import flow
from prefect.logging import get_run_logger

from blocks.names import BlockNames
from tasks.chat import CHAT_BLOCKS
from tasks.connections import open_connections
from tasks.operator import check_dead_mans_switch, record_heartbeat

NEEDED_BLOCKS = (*CHAT_BLOCKS, "ledger")
WATCHDOG_STALE_SECONDS = 3600.0  # the watchdog's own heartbeat, for the self-metrics


@flow(name="remediation-watchdog", retries=0)
async def remediation_watchdog(
    blocks: BlockNames = BlockNames(),  # noqa: B008 - an immutable pydantic default
    cycle_interval_seconds: float | None = None,
    listener_stale_seconds: float | None = None,
) -> dict[str, bool | None]:
    """Check the cycle and listener heartbeats; alert or clear in chat.

    Args:
        blocks: which saved blocks to use (only the chat channel's and `ledger` are loaded).
        cycle_interval_seconds: the cycle's schedule interval; the alert fires when no
            cycle completed for twice this long. None: what the last cycle declared
            (its `controls.cycle_interval_seconds`), else 15 minutes.
        listener_stale_seconds: how long without a listener poll, while approvals wait,
            fires the alert. None: what the listener declared, else 120 s.

    Returns:
        {"cycle": silent?, "listener": silent while approvals wait?} (None: never seen).
    """
    now = datetime.now(UTC)
    conns = await open_connections(blocks, NEEDED_BLOCKS)
    async with conns:
        states = await check_dead_mans_switch(
            conns,
            "watchdog",
            now,
            cycle_stale_seconds=2 * cycle_interval_seconds if cycle_interval_seconds else None,
            listener_stale_seconds=listener_stale_seconds,
        )
        await record_heartbeat(conns, "watchdog", now, stale_after_seconds=WATCHDOG_STALE_SECONDS)
    get_run_logger().info("dead-man's switch: %s", states)
    return states


def main() -> int:
    """Run one check locally against the default blocks."""
    states = asyncio.run(remediation_watchdog())
    print(states)
    return 1 if any(states.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
