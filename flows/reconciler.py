"""The reconciler: continue — or close — actions whose `remediate_action` run died.

A live action run writes a heartbeat to the ledger (`tasks.heartbeat.keep_alive`); for
each action not finished whose runs are all dead (`core.liveness`): no decision applied
yet → reported expired; decided → a fresh `remediate_action` run for the same action id,
through the deployment when there is one, else in-process; continued too often (or its
fresh run ended) → reported, not continued again (`tasks.reconcile` does the I/O).

This module owns the in-process continuation: it hands `remediate_action` to the pass
(the tasks layer never imports flows, and `remediate_action` never imports this module,
so there is no cycle). The listener calls `reconcile(conns, policy, prefect, now)` once
per poll; the `reconcile_actions` flow runs one pass on its own.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow

from blocks.names import BlockNames
from core.policy import Policy
from flows.remediate_action import remediate_action
from tasks import reconcile as reconcile_pass
from tasks.chat import CHAT_BLOCKS
from tasks.connections import Connections, open_connections, resolve_policy
from tasks.prefect_runs import open_prefect_runs
from tasks.reconcile import PrefectAccess, wait_for_continuations

__all__ = ["reconcile", "reconcile_actions", "wait_for_continuations"]


async def reconcile(
    conns: Connections,
    policy: Policy,
    prefect: PrefectAccess,
    now: datetime,
    *,
    stale_after: timedelta | None = None,
    wait: bool = False,
) -> list[str]:
    """One reconciliation pass; returns the ids of the actions continued, expired or
    given up. In-process continuations run in the background unless `wait`."""
    return await reconcile_pass.reconcile(
        conns,
        policy,
        prefect,
        now,
        in_process=remediate_action,
        stale_after=stale_after,
        wait=wait,
    )


@flow(name="reconcile-actions", retries=0)
async def reconcile_actions(
    policy: dict[str, Any] | None = None,
    blocks: BlockNames = BlockNames(),  # noqa: B008 - an immutable pydantic default
    stale_after_seconds: float | None = None,
    wait: bool = True,
) -> list[str]:
    """Find action runs that died and continue (or expire) their actions; in-process
    continuations run as subflows of this run and are awaited when `wait`."""
    checked = (await resolve_policy(policy, blocks)).policy
    conns = await open_connections(blocks, (*CHAT_BLOCKS, "ledger"))
    stale = None if stale_after_seconds is None else timedelta(seconds=stale_after_seconds)
    async with conns, open_prefect_runs() as prefect:
        return await reconcile(
            conns, checked, prefect, datetime.now(UTC), stale_after=stale, wait=wait
        )
