"""Dedup episodes: claim, confirm, release and close issues."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from clients.ledger_base import IN_FLIGHT_STATUSES, LedgerBase, from_ts, to_ts
from clients.ledger_schema import (
    actions,
    issue_episodes,
)
from core import dedup
from core.models import Issue


class EpisodeLedger(LedgerBase):
    # --- dedup episodes --------------------------------------------------------------
    async def claim_issues(
        self,
        issues: Iterable[Issue],
        *,
        cycle_id: str,
        now: datetime,
        ttl: timedelta,
        claim_ttl: timedelta = timedelta(minutes=10),
    ) -> dedup.DedupDecision:
        """Decide which issues are new and claim them for `cycle_id`, atomically.

        New issues get an open episode (or their open one is re-claimed); they are not
        *reported* until `confirm_reported` is called after the report succeeded."""
        issues = list(issues)
        now_ts = to_ts(now)
        async with self._tx("claim issues", write=True, lock="episodes") as conn:
            fps = [i.fingerprint for i in issues]
            episodes = await self._open_episodes(conn, fps)
            in_flight = await self._in_flight(conn, fps)
            decision = dedup.decide(
                issues,
                episodes,
                in_flight,
                cycle_id=cycle_id,
                now=now,
                ttl=ttl,
                claim_ttl=claim_ttl,
            )
            for issue in decision.new:
                if issue.fingerprint in episodes:
                    await conn.execute(
                        update(issue_episodes)
                        .where(
                            issue_episodes.c.fingerprint == issue.fingerprint,
                            issue_episodes.c.closed_at.is_(None),
                        )
                        .values(claimed_by=cycle_id, claimed_at=now_ts, last_seen_at=now_ts)
                    )
                else:
                    await conn.execute(
                        insert(issue_episodes).values(
                            fingerprint=issue.fingerprint,
                            host=issue.host,
                            check_name=issue.check.value,
                            subject=issue.subject,
                            opened_at=now_ts,
                            last_seen_at=now_ts,
                            claimed_by=cycle_id,
                            claimed_at=now_ts,
                        )
                    )
            seen = [d.issue.fingerprint for d in decision.dropped]
            if seen:
                await conn.execute(
                    update(issue_episodes)
                    .where(
                        issue_episodes.c.fingerprint.in_(seen), issue_episodes.c.closed_at.is_(None)
                    )
                    .values(last_seen_at=now_ts)
                )
        return decision

    async def _open_episodes(
        self, conn: AsyncConnection, fps: Sequence[str]
    ) -> dict[str, dedup.EpisodeView]:
        if not fps:
            return {}
        rows = await conn.execute(
            select(issue_episodes).where(
                issue_episodes.c.fingerprint.in_(fps), issue_episodes.c.closed_at.is_(None)
            )
        )
        return {
            r.fingerprint: dedup.EpisodeView(
                fingerprint=r.fingerprint,
                opened_at=from_ts(r.opened_at),
                reported_at=from_ts(r.reported_at),
                claimed_by=r.claimed_by,
                claimed_at=from_ts(r.claimed_at),
            )
            for r in rows
        }

    async def _in_flight(self, conn: AsyncConnection, fps: Sequence[str]) -> set[str]:
        if not fps:
            return set()
        wanted = set(fps)
        rows = await conn.execute(
            select(actions.c.fingerprints).where(actions.c.status.in_(IN_FLIGHT_STATUSES))
        )
        out: set[str] = set()
        for (raw,) in rows:
            out.update(fp for fp in json.loads(raw) if fp in wanted)
        return out

    async def confirm_reported(
        self, fingerprints: Iterable[str], *, cycle_id: str, now: datetime
    ) -> int:
        """Mark issues reported — call only after their Discord post or dispatch succeeded.

        Only episodes this cycle still claims: one released meanwhile (an action run
        inline already ended failed or ineffective) stays released."""
        fps = list(fingerprints)
        if not fps:
            return 0
        async with self._tx("confirm reported", write=True, lock="episodes") as conn:
            result = await conn.execute(
                update(issue_episodes)
                .where(
                    issue_episodes.c.fingerprint.in_(fps),
                    issue_episodes.c.closed_at.is_(None),
                    issue_episodes.c.claimed_by == cycle_id,
                )
                .values(reported_at=to_ts(now), claimed_by=cycle_id)
            )
            return result.rowcount

    async def release_claims(self, fingerprints: Iterable[str], *, cycle_id: str) -> int:
        """Drop this cycle's claim on issues it did not manage to report, so the next
        cycle reports them again at once."""
        fps = list(fingerprints)
        if not fps:
            return 0
        async with self._tx("release claims", write=True, lock="episodes") as conn:
            result = await conn.execute(
                update(issue_episodes)
                .where(
                    issue_episodes.c.fingerprint.in_(fps),
                    issue_episodes.c.closed_at.is_(None),
                    issue_episodes.c.claimed_by == cycle_id,
                )
                .values(claimed_by=None, claimed_at=None)
            )
            return result.rowcount

    async def close_cleared(
        self,
        current: set[str],
        *,
        checks_ok: set[str],
        hosts_up: set[str],
        now: datetime,
    ) -> list[str]:
        """Close open episodes seen cleared (see `core.dedup.cleared`); returns them."""
        async with self._tx("close cleared", write=True, lock="episodes") as conn:
            open_fps = list(
                (
                    await conn.execute(
                        select(issue_episodes.c.fingerprint).where(
                            issue_episodes.c.closed_at.is_(None)
                        )
                    )
                ).scalars()
            )
            done = dedup.cleared(open_fps, current, checks_ok=checks_ok, hosts_up=hosts_up)
            if done:
                await conn.execute(
                    update(issue_episodes)
                    .where(
                        issue_episodes.c.fingerprint.in_(done), issue_episodes.c.closed_at.is_(None)
                    )
                    .values(closed_at=to_ts(now), close_reason="cleared")
                )
        return done

    async def release_issue(self, fingerprint: str, *, now: datetime) -> bool:
        """Forget that an open issue was reported, so the next cycle reports it again
        (after a failed or ineffective attempt)."""
        async with self._tx("release issue", write=True, lock="episodes") as conn:
            result = await conn.execute(
                update(issue_episodes)
                .where(
                    issue_episodes.c.fingerprint == fingerprint,
                    issue_episodes.c.closed_at.is_(None),
                )
                .values(reported_at=None, claimed_by=None, claimed_at=None, last_seen_at=to_ts(now))
            )
            return result.rowcount > 0

    async def open_episodes(self) -> list[dict[str, Any]]:
        async with self._tx("read episodes", write=False) as conn:
            rows = await conn.execute(
                select(issue_episodes).where(issue_episodes.c.closed_at.is_(None))
            )
            return [dict(r._mapping) for r in rows]

    async def episode_count(self, fingerprint: str) -> int:
        async with self._tx("count episodes", write=False) as conn:
            return (
                await conn.execute(
                    select(func.count())
                    .select_from(issue_episodes)
                    .where(issue_episodes.c.fingerprint == fingerprint)
                )
            ).scalar_one()
