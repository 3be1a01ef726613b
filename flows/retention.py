"""`prune-ledger`: delete ledger rows older than a configurable age.

What the remediator still needs is never pruned: open issue episodes, actions that have
not ended (with their approval requests, votes, decisions, jobs and audit rows), cycles
that still own an action, and attempts inside the policy's attempt window, cooldown and
relapse horizon — whichever of those is longest is the minimum age, whatever
`older_than_days` says. One transaction: a failure deletes nothing.

Prefect's own flow runs, logs, artifacts and result files are pruned by Prefect (see the
README: the server's `db_vacuum` service, `prefect artifact delete`, and the result
files under PREFECT_HOME/storage).
"""

# No `from __future__ import annotations` here: Prefect validates a deployed flow's
# parameters from its annotations at run time, and string annotations do not resolve.

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow
from prefect.artifacts import acreate_table_artifact
from prefect.logging import get_run_logger

from blocks.names import BlockNames
from core.retention import attempt_horizon, prune_cutoff, prune_rows
from tasks.connections import open_connections, resolve_policy
from tasks.ledger import prune_ledger_rows

NEEDED_BLOCKS = ("ledger",)


@flow(name="prune-ledger", retries=0)
async def prune_ledger(
    older_than_days: float = 30.0,
    policy: dict[str, Any] | None = None,
    blocks: BlockNames = BlockNames(),  # noqa: B008 - an immutable pydantic default
) -> dict[str, int]:
    """Delete ledger rows older than `older_than_days` (never inside the attempt window).

    Returns the number of rows deleted per table (also a table artifact).
    """
    if older_than_days <= 0:
        raise ValueError("older_than_days must be positive")
    checked = (await resolve_policy(policy, blocks)).policy
    conns = await open_connections(blocks, NEEDED_BLOCKS)
    now = datetime.now(UTC)
    older_than = timedelta(days=older_than_days)
    async with conns:
        deleted, remaining = await prune_ledger_rows(
            conns.ledger, older_than, attempt_horizon(checked), now
        )
    cutoff = prune_cutoff(now, older_than, checked)
    await acreate_table_artifact(
        key="remediation-ledger-prune",
        table=prune_rows(deleted, remaining),
        description=f"Ledger rows older than {cutoff.isoformat()} pruned",
    )
    get_run_logger().info("pruned %d ledger rows older than %s", sum(deleted.values()), cutoff)
    return deleted
