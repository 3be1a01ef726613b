"""`ledger.actions`: actions, their approval requests, votes and decisions, verdicts, and
the approval listener's recovery queries (decisions whose application is unconfirmed, and
applied decisions whose Discord message does not show the outcome yet, so a restarted
listener finishes what a killed one began)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from clients.ledger_base import Repository, from_ts, to_ts
from clients.ledger_rows import decision_row, job_row, request_row, vote_row
from clients.ledger_schema import (
    ANNOUNCED,
    actions,
    approval_requests,
    audit,
    decisions,
    jobs,
    votes,
)
from core.records import (
    ActionRecord,
    ActionStatus,
    ApprovalRequest,
    Decision,
    Vote,
)
from core.vetting import ProposedAction


class ActionRepository(Repository):
    # --- actions ---------------------------------------------------------------------
    async def record_actions(
        self,
        proposals: Sequence[ProposedAction],
        *,
        now: datetime,
        status: ActionStatus = ActionStatus.PROPOSED,
    ) -> None:
        """Record proposed actions (an action id already recorded is left as it is)."""
        if not proposals:
            return
        async with self._tx("record actions", write=True) as conn:
            known = set(
                (
                    await conn.execute(
                        select(actions.c.action_id).where(
                            actions.c.action_id.in_([p.action_id for p in proposals])
                        )
                    )
                ).scalars()
            )
            for p in proposals:
                if p.action_id in known:
                    continue
                await conn.execute(
                    insert(actions).values(
                        action_id=p.action_id,
                        cycle_id=p.cycle_id,
                        host=p.host,
                        catalog_key=p.catalog_key,
                        risk=p.risk.value,
                        policy_hash=p.policy_hash,
                        fingerprints=json.dumps(p.fingerprints),
                        proposal=p.model_dump_json(),
                        status=status.value,
                        created_at=to_ts(now),
                        updated_at=to_ts(now),
                    )
                )

    async def set_action_status(
        self,
        action_id: str,
        status: ActionStatus,
        *,
        now: datetime,
        flow_run_id: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status.value, "updated_at": to_ts(now)}
        if flow_run_id is not None:
            values["flow_run_id"] = flow_run_id
        if status.terminal:
            values["finished_at"] = to_ts(now)
        async with self._tx("set action status", write=True) as conn:
            await conn.execute(
                update(actions).where(actions.c.action_id == action_id).values(**values)
            )

    async def mark_approved(self, action_id: str, *, now: datetime) -> bool:
        """A decision to run was taken: `approved` until the launch is claimed. Only an
        undecided action moves (never one launched or ended); True if this one did."""
        async with self._tx("mark approved", write=True) as conn:
            return await _approve(conn, action_id, to_ts(now))

    async def get_action(self, action_id: str) -> ActionRecord | None:
        async with self._tx("read action", write=False) as conn:
            row = (
                await conn.execute(select(actions).where(actions.c.action_id == action_id))
            ).first()
            if row is None:
                return None
            req = (
                await conn.execute(
                    select(approval_requests).where(approval_requests.c.action_id == action_id)
                )
            ).first()
            dec = (
                await conn.execute(select(decisions).where(decisions.c.action_id == action_id))
            ).first()
            job = (await conn.execute(select(jobs).where(jobs.c.action_id == action_id))).first()
        return ActionRecord(
            proposal=ProposedAction.model_validate_json(row.proposal),
            status=ActionStatus(row.status),
            flow_run_id=row.flow_run_id,
            created_at=from_ts(row.created_at),
            updated_at=from_ts(row.updated_at),
            request=request_row(req) if req else None,
            decision=decision_row(dec) if dec else None,
            job=job_row(job) if job else None,
        )

    async def actions_with_status(self, *statuses: ActionStatus) -> list[ActionRecord]:
        async with self._tx("list actions", write=False) as conn:
            ids = list(
                (
                    await conn.execute(
                        select(actions.c.action_id)
                        .where(actions.c.status.in_([s.value for s in statuses]))
                        .order_by(actions.c.created_at)
                    )
                ).scalars()
            )
        return [r for i in ids if (r := await self.get_action(i)) is not None]

    async def cycle_actions(self, cycle_id: str) -> list[ActionRecord]:
        async with self._tx("list cycle actions", write=False) as conn:
            ids = list(
                (
                    await conn.execute(
                        select(actions.c.action_id)
                        .where(actions.c.cycle_id == cycle_id)
                        .order_by(actions.c.created_at)
                    )
                ).scalars()
            )
        return [r for i in ids if (r := await self.get_action(i)) is not None]

    # --- approval requests, votes and decisions ----------------------------------------
    async def record_approval_request(self, request: ApprovalRequest) -> None:
        """Record (or, after a restart, re-point to the new run) an approval request."""
        values = {
            "channel_id": request.channel_id,
            "message_id": request.message_id,
            "flow_run_id": request.flow_run_id,
            "risk": request.risk.value,
            "deadline": to_ts(request.deadline),
            "policy_hash": request.policy_hash,
            "requested_at": to_ts(request.requested_at),
            "pause_key": request.pause_key,
        }
        async with self._tx("record approval request", write=True) as conn:
            exists = (
                await conn.execute(
                    select(approval_requests.c.action_id).where(
                        approval_requests.c.action_id == request.action_id
                    )
                )
            ).first()
            if exists is None:
                await conn.execute(
                    insert(approval_requests).values(action_id=request.action_id, **values)
                )
            else:
                await conn.execute(
                    update(approval_requests)
                    .where(approval_requests.c.action_id == request.action_id)
                    .values(flow_run_id=request.flow_run_id, pause_key=request.pause_key)
                )
            await conn.execute(
                update(actions)
                .where(actions.c.action_id == request.action_id)
                .values(
                    status=ActionStatus.AWAITING_APPROVAL.value,
                    flow_run_id=request.flow_run_id,
                    updated_at=to_ts(request.requested_at),
                )
            )

    async def mark_reminder_sent(self, action_id: str, *, now: datetime) -> bool:
        """True for the one caller that gets to send the reminder."""
        async with self._tx("mark reminder", write=True) as conn:
            result = await conn.execute(
                update(approval_requests)
                .where(
                    approval_requests.c.action_id == action_id,
                    approval_requests.c.reminder_sent_at.is_(None),
                )
                .values(reminder_sent_at=to_ts(now))
            )
            return result.rowcount == 1

    async def sync_votes(
        self, action_id: str, present: Sequence[tuple[str, str, str]], *, now: datetime
    ) -> list[Vote]:
        """Make the recorded votes match the reactions seen now ((user_id, username,
        emoji) triples): new ones recorded, vanished ones marked removed, returning ones
        restored. Returns every vote of the action."""
        seen = {(u, e): name for u, name, e in present}
        async with self._tx("sync votes", write=True, lock=f"votes:{action_id}") as conn:
            rows = list(await conn.execute(select(votes).where(votes.c.action_id == action_id)))
            known = {(r.user_id, r.emoji): r for r in rows}
            for (user, emoji), name in seen.items():
                row = known.get((user, emoji))
                if row is None:
                    await conn.execute(
                        insert(votes).values(
                            action_id=action_id,
                            user_id=user,
                            username=name,
                            emoji=emoji,
                            first_seen_at=to_ts(now),
                        )
                    )
                elif row.removed_at is not None:
                    await conn.execute(
                        update(votes)
                        .where(votes.c.id == row.id)
                        .values(removed_at=None, first_seen_at=to_ts(now))
                    )
            for key, row in known.items():
                if key not in seen and row.removed_at is None:
                    await conn.execute(
                        update(votes).where(votes.c.id == row.id).values(removed_at=to_ts(now))
                    )
            rows = list(
                await conn.execute(
                    select(votes).where(votes.c.action_id == action_id).order_by(votes.c.id)
                )
            )
        return [vote_row(r) for r in rows]

    async def votes(self, action_id: str) -> list[Vote]:
        async with self._tx("read votes", write=False) as conn:
            rows = await conn.execute(
                select(votes).where(votes.c.action_id == action_id).order_by(votes.c.id)
            )
            return [vote_row(r) for r in rows]

    async def record_decision_intent(self, decision: Decision) -> Decision:
        """Record the decision about to be applied; the first one recorded wins and is
        returned (so two listeners, or a listener restart, never apply two)."""
        async with self._tx(
            "record decision", write=True, lock=f"decision:{decision.action_id}"
        ) as conn:
            row = (
                await conn.execute(
                    select(decisions).where(decisions.c.action_id == decision.action_id)
                )
            ).first()
            if row is not None:
                return decision_row(row)
            await conn.execute(
                insert(decisions).values(
                    action_id=decision.action_id,
                    decision=decision.decision,
                    decider=decision.decider,
                    via=decision.via,
                    comment=decision.comment,
                    intended_at=to_ts(decision.intended_at),
                )
            )
            return decision

    async def mark_decision_applied(self, action_id: str, *, now: datetime) -> None:
        async with self._tx("mark decision applied", write=True) as conn:
            await conn.execute(
                update(decisions)
                .where(decisions.c.action_id == action_id, decisions.c.applied_at.is_(None))
                .values(applied_at=to_ts(now))
            )
            choice = (
                await conn.execute(
                    select(decisions.c.decision).where(decisions.c.action_id == action_id)
                )
            ).scalar()
            if choice == "approve":
                await _approve(conn, action_id, to_ts(now))

    async def record_applied_decision(self, decision: Decision) -> Decision:
        """What Prefect actually applied replaces an unapplied intent (e.g. the UI won a
        race with the listener); an applied decision is never rewritten."""
        async with self._tx(
            "record applied decision", write=True, lock=f"decision:{decision.action_id}"
        ) as conn:
            row = (
                await conn.execute(
                    select(decisions).where(decisions.c.action_id == decision.action_id)
                )
            ).first()
            values = {
                "decision": decision.decision,
                "decider": decision.decider,
                "via": decision.via,
                "comment": decision.comment,
                "intended_at": to_ts(decision.intended_at),
                "applied_at": to_ts(decision.applied_at or decision.intended_at),
            }
            if row is not None and row.applied_at is not None and row.decision == decision.decision:
                applied = decision_row(row)
            elif row is None:
                await conn.execute(insert(decisions).values(action_id=decision.action_id, **values))
                applied = decision
            else:
                await conn.execute(
                    update(decisions)
                    .where(decisions.c.action_id == decision.action_id)
                    .values(**values)
                )
                applied = decision
            # Approved by votes, the UI or a deadline default: the action is decided now,
            # though its launch may still wait for the host (a reject is ended by the run).
            if applied.decision == "approve":
                await _approve(conn, decision.action_id, values["applied_at"])
            return applied

    async def clear_unapplied_decision(self, action_id: str) -> None:
        """Forget an intent that Prefect never applied (the run was re-gated)."""
        async with self._tx("clear decision", write=True) as conn:
            await conn.execute(
                decisions.delete().where(
                    decisions.c.action_id == action_id, decisions.c.applied_at.is_(None)
                )
            )

    # --- the listener's recovery -----------------------------------------------------------
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
        that reached Discord) was not yet edited to show it (`mark_decision_announced`)."""
        async with self._tx("list decisions to announce", write=False) as conn:
            rows = await conn.execute(
                select(decisions.c.action_id)
                .join(approval_requests, approval_requests.c.action_id == decisions.c.action_id)
                .where(
                    decisions.c.applied_at.is_not(None),
                    decisions.c.applied_at >= to_ts(since),
                    decisions.c.announced_at.is_(None),
                    approval_requests.c.message_id.is_not(None),
                )
                .order_by(decisions.c.applied_at)
            )
            return list(rows.scalars())

    async def mark_decision_announced(self, action_id: str, text: str, *, now: datetime) -> bool:
        """The approval message now shows the decision (`text`): recorded on the decision,
        and as a `decision_announced` audit event (the human record). True the first
        time; an action already marked is left as it is."""
        async with self._tx("mark decision announced", write=True) as conn:
            done = await conn.execute(
                update(decisions)
                .where(decisions.c.action_id == action_id, decisions.c.announced_at.is_(None))
                .values(announced_at=to_ts(now))
            )
            if done.rowcount != 1:
                return False
            message_id = (
                await conn.execute(
                    select(approval_requests.c.message_id).where(
                        approval_requests.c.action_id == action_id
                    )
                )
            ).scalar()
            await conn.execute(
                insert(audit).values(
                    at=to_ts(now),
                    event=ANNOUNCED,
                    action_id=action_id,
                    detail=json.dumps({"message_id": message_id, "text": text}, sort_keys=True),
                )
            )
            return True

    # --- verdicts ------------------------------------------------------------------------
    async def record_verdict(self, action_id: str, verdict: str, *, now: datetime) -> None:
        """The verification's verdict of an action that ran (the latest one stands)."""
        async with self._tx("record verdict", write=True) as conn:
            await conn.execute(
                update(actions)
                .where(actions.c.action_id == action_id)
                .values(verdict=verdict, verdict_at=to_ts(now))
            )

    async def cycle_verdicts(self, cycle_id: str) -> dict[str, str]:
        """Action id → verdict, for the actions of a cycle that have one."""
        async with self._tx("read cycle verdicts", write=False) as conn:
            rows = await conn.execute(
                select(actions.c.action_id, actions.c.verdict).where(
                    actions.c.cycle_id == cycle_id, actions.c.verdict.is_not(None)
                )
            )
            return {r.action_id: r.verdict for r in rows}


# Statuses a decision to run moves on from (never back from a launch or an end).
UNDECIDED = (ActionStatus.PROPOSED.value, ActionStatus.AWAITING_APPROVAL.value)


async def _approve(conn: AsyncConnection, action_id: str, at: float) -> bool:
    done = await conn.execute(
        update(actions)
        .where(actions.c.action_id == action_id, actions.c.status.in_(UNDECIDED))
        .values(status=ActionStatus.APPROVED.value, updated_at=at)
    )
    return done.rowcount == 1
