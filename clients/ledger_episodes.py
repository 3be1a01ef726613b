"""`ledger.episodes`: dedup episodes (claim, confirm, release and close issues), the
attempts made on them (history, details, relapses) and the once-only escalation of issues
whose attempts ran out."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from clients.ledger_base import IN_FLIGHT_STATUSES, Repository, from_ts, to_ts
from clients.ledger_schema import (
    actions,
    alert_states,
    attempts,
    issue_episodes,
)
from core import dedup
from core.models import Issue
from core.summary import AttemptDetail
from core.vetting import AttemptRecord

ESCALATION_PREFIX = "escalated:"


def escalation_name(fingerprint: str) -> str:
    """The alert-state row of an issue's escalation (names are at most 64 characters)."""
    return ESCALATION_PREFIX + hashlib.sha256(fingerprint.encode()).hexdigest()[:40]


class EpisodeRepository(Repository):
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

    # --- outcomes and escalations ----------------------------------------------------------
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

    # --- attempts -------------------------------------------------------------------------
    async def attempt_history(
        self, fingerprints: Iterable[str], *, since: datetime
    ) -> dict[str, list[AttemptRecord]]:
        """Recorded outcomes per fingerprint since `since` (cooldown and attempt limit)."""
        fps = list(fingerprints)
        if not fps:
            return {}
        async with self._tx("read attempts", write=False) as conn:
            rows = await conn.execute(
                select(attempts)
                .where(attempts.c.fingerprint.in_(fps), attempts.c.recorded_at >= to_ts(since))
                .order_by(attempts.c.recorded_at)
            )
            out: dict[str, list[AttemptRecord]] = {}
            for r in rows:
                out.setdefault(r.fingerprint, []).append(
                    AttemptRecord(at=from_ts(r.recorded_at), outcome=r.outcome, counts=r.counts)
                )
            return out

    async def record_attempt(
        self,
        *,
        action_id: str,
        fingerprints: Sequence[str],
        host: str,
        catalog_key: str,
        outcome: str,
        counts: bool,
        explanation: str,
        now: datetime,
    ) -> None:
        """One outcome per addressed issue (a retry of the same action records nothing new)."""
        async with self._tx("record attempt", write=True) as conn:
            known = set(
                (
                    await conn.execute(
                        select(attempts.c.fingerprint).where(attempts.c.action_id == action_id)
                    )
                ).scalars()
            )
            for fp in fingerprints:
                if fp in known:
                    continue
                await conn.execute(
                    insert(attempts).values(
                        action_id=action_id,
                        fingerprint=fp,
                        host=host,
                        catalog_key=catalog_key,
                        outcome=outcome,
                        counts=counts,
                        explanation=explanation[:2000],
                        recorded_at=to_ts(now),
                    )
                )

    async def record_relapses(
        self, fingerprints: Iterable[str], *, window: timedelta, now: datetime
    ) -> list[str]:
        """Issues back within `window` of an `effective` verdict: each such return is
        recorded as an ineffective attempt (a relapse). Returns the relapsed ones."""
        relapsed = []
        async with self._tx("record relapses", write=True) as conn:
            for fp in fingerprints:
                last = (
                    await conn.execute(
                        select(attempts)
                        .where(attempts.c.fingerprint == fp)
                        .order_by(attempts.c.recorded_at.desc())
                        .limit(1)
                    )
                ).first()
                if (
                    last is None
                    or last.outcome != "effective"
                    or to_ts(now) - last.recorded_at > window.total_seconds()
                ):
                    continue
                await conn.execute(
                    insert(attempts).values(
                        action_id=f"{last.action_id}:relapse",
                        fingerprint=fp,
                        host=last.host,
                        catalog_key=last.catalog_key,
                        outcome="relapse",
                        counts=True,
                        explanation="the issue returned after an effective verdict",
                        recorded_at=to_ts(now),
                    )
                )
                relapsed.append(fp)
        return relapsed
