"""Outcomes of remediations: closing remediated episodes, attempt details, and the
once-only escalation of issues whose attempts ran out."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import insert, select, update

from clients.ledger_base import LedgerBase, from_ts, to_ts
from clients.ledger_schema import alert_states, attempts, issue_episodes
from core.summary import AttemptDetail

ESCALATION_PREFIX = "escalated:"


def escalation_name(fingerprint: str) -> str:
    """The alert-state row of an issue's escalation (names are at most 64 characters)."""
    return ESCALATION_PREFIX + hashlib.sha256(fingerprint.encode()).hexdigest()[:40]


class OutcomeLedger(LedgerBase):
    async def close_remediated(self, fingerprints: Iterable[str], *, now: datetime) -> int:
        """Close the open episodes of issues verified fixed, so a return is a new episode
        (and, within the relapse time, a relapse) instead of a known one."""
        fps = list(fingerprints)
        if not fps:
            return 0
        async with self._tx("close remediated", write=True, lock="episodes") as conn:
            result = await conn.execute(
                update(issue_episodes)
                .where(issue_episodes.c.fingerprint.in_(fps), issue_episodes.c.closed_at.is_(None))
                .values(closed_at=to_ts(now), close_reason="remediated")
            )
            return result.rowcount

    async def attempt_details(
        self, fingerprints: Iterable[str], *, since: datetime
    ) -> list[AttemptDetail]:
        """Every recorded attempt on these issues since `since`, oldest first."""
        fps = list(fingerprints)
        if not fps:
            return []
        async with self._tx("read attempt details", write=False) as conn:
            rows = await conn.execute(
                select(attempts)
                .where(attempts.c.fingerprint.in_(fps), attempts.c.recorded_at >= to_ts(since))
                .order_by(attempts.c.recorded_at, attempts.c.id)
            )
            return [
                AttemptDetail(
                    at=from_ts(r.recorded_at),
                    outcome=r.outcome,
                    counts=bool(r.counts),
                    action_id=r.action_id,
                    catalog_key=r.catalog_key,
                    explanation=r.explanation or "",
                )
                for r in rows
            ]

    async def claim_escalation(
        self, fingerprint: str, *, latest_attempt: datetime, now: datetime
    ) -> bool:
        """True exactly once per exhaustion: when the issue has not been escalated since
        its latest counted attempt (a later exhaustion, after new attempts, escalates
        again)."""
        name = escalation_name(fingerprint)
        async with self._tx("claim escalation", write=True, lock="alerts") as conn:
            row = (
                await conn.execute(select(alert_states).where(alert_states.c.name == name))
            ).first()
            if row is None:
                await conn.execute(
                    insert(alert_states).values(
                        name=name, firing=True, changed_at=to_ts(now), detail=fingerprint[:2000]
                    )
                )
                return True
            if row.firing and row.changed_at >= to_ts(latest_attempt):
                return False
            await conn.execute(
                update(alert_states)
                .where(alert_states.c.name == name)
                .values(firing=True, changed_at=to_ts(now), detail=fingerprint[:2000])
            )
            return True

    async def release_escalation(self, fingerprint: str, *, now: datetime) -> None:
        """Undo a claim whose post failed, so the next cycle escalates again."""
        async with self._tx("release escalation", write=True, lock="alerts") as conn:
            await conn.execute(
                update(alert_states)
                .where(alert_states.c.name == escalation_name(fingerprint))
                .values(firing=False, changed_at=to_ts(now))
            )

    async def escalated_at(self, fingerprint: str) -> datetime | None:
        async with self._tx("read escalation", write=False) as conn:
            row = (
                await conn.execute(
                    select(alert_states).where(alert_states.c.name == escalation_name(fingerprint))
                )
            ).first()
            return from_ts(row.changed_at) if row is not None and row.firing else None
