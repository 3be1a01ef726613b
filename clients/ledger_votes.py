"""What the approval listener asks of the ledger beyond votes and decisions themselves:
decisions whose application is unconfirmed, and applied decisions whose Discord message
does not show the outcome yet (so a restarted listener finishes what a killed one began).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, exists, select

from clients.ledger_base import LedgerBase, to_ts
from clients.ledger_schema import approval_requests, audit, decisions

ANNOUNCED = "decision_announced"


class VoteLedger(LedgerBase):
    async def unapplied_decisions(self, *, since: datetime) -> list[str]:
        """Action ids whose decision was intended since `since` but never confirmed
        applied."""
        async with self._tx("list unapplied decisions", write=False) as conn:
            rows = await conn.execute(
                select(decisions.c.action_id)
                .where(decisions.c.applied_at.is_(None), decisions.c.intended_at >= to_ts(since))
                .order_by(decisions.c.intended_at)
            )
            return list(rows.scalars())

    async def decisions_to_announce(self, *, since: datetime) -> list[str]:
        """Action ids with a decision applied since `since` whose approval message (one
        that reached Discord) was not yet edited to show it (no `decision_announced`
        audit event)."""
        announced = exists().where(
            and_(audit.c.event == ANNOUNCED, audit.c.action_id == decisions.c.action_id)
        )
        async with self._tx("list decisions to announce", write=False) as conn:
            rows = await conn.execute(
                select(decisions.c.action_id)
                .join(approval_requests, approval_requests.c.action_id == decisions.c.action_id)
                .where(
                    decisions.c.applied_at.is_not(None),
                    decisions.c.applied_at >= to_ts(since),
                    approval_requests.c.message_id.is_not(None),
                    ~announced,
                )
                .order_by(decisions.c.applied_at)
            )
            return list(rows.scalars())
