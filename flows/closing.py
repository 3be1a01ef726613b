"""Closing a cycle: when its last action ends, post the summary and write it as an
artifact on the cycle's own flow run."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.logging import get_run_logger

from clients.errors import UpstreamError
from core.summary import cycle_summary_embed, cycle_summary_markdown, cycle_summary_rows
from flows.connections import Connections
from tasks.notify import post_message


async def post_cycle_summary(conns: Connections, cycle_id: str) -> bool:
    """Post once, by whichever action ends last (the ledger arbitrates)."""
    ledger = conns.ledger
    if not await ledger.claim_cycle_summary(cycle_id, now=datetime.now(UTC)):
        return False
    records = await ledger.cycle_actions(cycle_id)
    verdicts = {}
    for r in records:
        trail = await ledger.audit_trail(action_id=r.proposal.action_id)
        for entry in trail:
            if entry["event"] == "finished" and entry["detail"].get("verdict"):
                verdicts[r.proposal.action_id] = entry["detail"]["verdict"]
    try:
        await post_message(
            conns.discord,
            conns.discord_bot.approvals_channel_id,
            [cycle_summary_embed(cycle_id, records, verdicts)],
        )
    except UpstreamError as exc:
        get_run_logger().error("cycle summary post failed: %s", exc)
    flow_run_id = await ledger.cycle_flow_run(cycle_id)
    markdown = cycle_summary_markdown(cycle_id, cycle_summary_rows(records, verdicts))
    async with get_client() as client:
        await client.create_artifact(
            ArtifactCreate(
                key="remediation-cycle-summary",
                type="markdown",
                data=markdown,
                description=f"All actions of cycle {cycle_id} ended",
                flow_run_id=UUID(flow_run_id) if flow_run_id else None,
            )
        )
    return True
