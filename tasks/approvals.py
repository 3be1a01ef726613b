"""The approval listener's I/O steps: one poll over the actions awaiting approval.

`ApprovalPoller.poll` reads the waiting actions from the ledger and their PAUSED runs
from Prefect (`PrefectRuns`); for each it reads the ✅/❌ reactions of its request through
the chat channel's port (`channels.port.ChatChannel.read_ballot`: all pages, bots set
apart), records every vote it sees, and decides with `core.approval` (who may approve:
the channel's `may_approve`, over `core.approval`'s rules). Applying a decision
records the intent (the first per action wins), resumes the run, and marks it applied
only when Prefect's `ResumeAnswer` says so; a run resumed by someone else is confirmed
from what Prefect applied. Then the request is edited to show the outcome, and
intents left unconfirmed or unshown by a killed listener are finished. With the kill
switch on, every pending approval is answered "paused by operator" instead.

Plain async functions, not Prefect tasks: a poll runs every few seconds, in the listener
flow and in the plain `remediation-listener` process alike, and a task run per poll would
cost API calls for nothing a person wants to see. The channel's adapter caches the bot's
id and the approvers' groups (for `role_cache_seconds`); everything else lives in
Prefect, the ledger and the chat channel, so a poller can be dropped and rebuilt at any
moment.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import MissingContextError
from prefect.logging import get_logger, get_run_logger

from clients.errors import UpstreamError
from clients.prefect_runs import PrefectRuns, ResumeRejected
from core import words
from core.approval import (
    PollStats,
    ResumeOutcome,
    applied_by_prefect,
    decide,
    operator_answer,
    reminder_due,
    run_to_confirm,
    voters,
    with_deleted_request,
)
from core.messages import DecisionOutcome, Reminder
from core.policy import Policy
from core.records import ActionRecord, ActionStatus, Decision, Vote
from core.settings import ListenerSettings
from tasks.chat import post_in_thread, say, update_request
from tasks.connections import Connections
from tasks.controls import kill_switch_engaged
from tasks.operator import check_dead_mans_switch, note_kill_switch, record_heartbeat

RECONCILE_EVERY_SECONDS = 30.0  # a dead run waits this long at most; API reads stay cheap
RECOVERY_LOOKBACK = timedelta(days=1)  # how far back unconfirmed/unshown decisions are found
log = get_logger("remediation.listener")


def _logger() -> Any:
    """The flow run's logger inside `approval_listener` (its logs then show in the UI),
    else this module's (the plain process)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return log


class ApprovalPoller:
    """One poll at a time; all state lives in Prefect, the ledger and the chat channel."""

    def __init__(
        self, conns: Connections, policy: Policy, settings: ListenerSettings, runs: PrefectRuns
    ) -> None:
        self.conns, self.policy, self.settings, self.runs = conns, policy, settings, runs
        self._next_reconcile = 0.0
        self.log = _logger()

    # --- what the loop does around a poll -------------------------------------------
    async def beat(self, now: datetime) -> None:
        """The listener's heartbeat; it declares how long it stays fresh (read by the
        dead-man's switch)."""
        await record_heartbeat(
            self.conns, "listener", now, stale_after_seconds=self.settings.listener_stale_seconds
        )

    def reconcile_due(self) -> bool:
        """True at most every RECONCILE_EVERY_SECONDS (the first poll included)."""
        if time.monotonic() < self._next_reconcile:
            return False
        self._next_reconcile = time.monotonic() + RECONCILE_EVERY_SECONDS
        return True

    # --- one poll -------------------------------------------------------------------
    async def poll(self, now: datetime) -> PollStats:
        stats = PollStats()
        waiting = await self.conns.ledger.actions.actions_with_status(
            ActionStatus.AWAITING_APPROVAL
        )
        paused = await self.runs.paused_action_runs(
            r.request.flow_run_id for r in waiting if r.request and r.request.flow_run_id
        )
        stats.pending, stats.paused_runs = len(waiting), len(paused)
        await check_dead_mans_switch(self.conns, "listener", now)
        if await self.answer_pending_when_paused(waiting, paused, now):
            return stats
        for record in waiting:
            run = self._paused_run(record, paused)
            if run is None:
                continue  # not paused (yet, or any more): nothing to resume
            try:
                await self.step(record, run, now, stats)
            except Exception as exc:  # noqa: BLE001 - one action's trouble never stops the rest
                self._error(stats, record.proposal.action_id, exc)
        await self.confirm_unapplied(paused, now, stats)
        await self.announce_pending(now, stats)
        return stats

    @staticmethod
    def _paused_run(record: ActionRecord, paused: dict[str, FlowRun]) -> FlowRun | None:
        return paused.get(record.request.flow_run_id or "") if record.request else None

    async def step(
        self, record: ActionRecord, run: FlowRun, now: datetime, stats: PollStats
    ) -> None:
        decision, approvals = await self.evaluate(record, now)
        if decision is not None:
            if await self.apply(record, run, decision):
                stats.resumed += 1
        elif await self.remind(record, now, approvals):
            stats.reminders += 1

    def _error(self, stats: PollStats, action_id: str, exc: Exception) -> None:
        stats.errors.append(f"{action_id}: {type(exc).__name__}: {exc}")
        if isinstance(exc, UpstreamError):
            self.log.warning("listener: %s: %s", action_id, exc)
        else:
            self.log.exception("listener: %s failed", action_id)

    # --- the kill switch --------------------------------------------------------------
    async def answer_pending_when_paused(
        self, waiting: list[ActionRecord], paused: dict[str, FlowRun], now: datetime
    ) -> bool:
        """With the kill switch on, answer every pending approval "paused by operator"
        (`core.approval.operator_answer`) and return True (nothing else is resumed this
        poll); a run not paused yet is answered on a later poll."""
        engaged = await kill_switch_engaged()
        await note_kill_switch(self.conns, engaged, now)
        if not engaged:
            return False
        answered: list[ActionRecord] = []
        for record in waiting:
            run = self._paused_run(record, paused)
            if run is None:
                continue
            decision = operator_answer(
                record,
                now,
                decider=words.OPERATOR,
                comment=words.PAUSED_COMMENT,
            )
            try:
                if await self.apply(record, run, decision) and record.decision is None:
                    answered.append(record)
            except Exception as exc:  # noqa: BLE001 - one action's trouble never stops the rest
                self.log.warning("could not answer %s: %s", record.proposal.action_id, exc)
        if answered:
            notice = words.pending_answered(
                [(r.proposal.catalog_key, r.proposal.host) for r in answered]
            )
            await say(self.conns, notice, self.log)
        return True

    # --- who may decide -------------------------------------------------------------
    async def allowed(self, user_id: str) -> bool:
        """May `user_id` decide (the channel's approvers, its lookups cached)?"""
        return await self.conns.chat.may_approve(
            user_id, cache_seconds=self.settings.role_cache_seconds
        )

    # --- deciding -------------------------------------------------------------------
    async def read_votes(
        self, record: ActionRecord, now: datetime
    ) -> tuple[list[Vote], set[str], bool]:
        """Every reaction on the request, all pages, recorded as votes (bots excepted);
        returns the action's votes, the bot ids seen, and whether the request is gone."""
        req = record.request
        assert req is not None and req.message_id is not None
        ballot = await self.conns.chat.read_ballot(req)
        if ballot.gone:
            # The request was deleted: the votes recorded so far stand, no new ones come,
            # and nobody can object any more, so no deadline default runs it.
            votes = await self.conns.ledger.actions.votes(record.proposal.action_id)
            return votes, ballot.bot_ids, True
        present = [(r.user_id, r.username, r.emoji) for r in ballot.reactions]
        votes = await self.conns.ledger.actions.sync_votes(
            record.proposal.action_id, present, now=now
        )
        return votes, ballot.bot_ids, False

    async def evaluate(
        self, record: ActionRecord, now: datetime
    ) -> tuple[Decision | None, list[str]]:
        """The decision to apply now (if any) and the allowed approvals so far."""
        req, action, chat = record.request, record.proposal, self.conns.chat
        assert req is not None
        if record.decision is not None:  # intended before (a restart, a retry): apply it
            return record.decision, []
        votes: list[Vote] = []
        bots: set[str] = set()
        deleted = False
        if req.message_id is not None:
            votes, bots, deleted = await self.read_votes(record, now)
        allowed = {
            u for u in voters(votes, req.deadline) if u not in bots and await self.allowed(u)
        }
        decision, result = decide(
            votes,
            allowed=allowed.__contains__,
            bot_user_ids=bots,
            level=self.policy.risk.level(action.risk),
            action=action,
            deadline=req.deadline,
            reached_chat=req.message_id is not None and not deleted,
            now=now,
            via=chat.name,  # a channel's registry name is its `Via`
            channel=chat.title,
        )
        return with_deleted_request(decision, deleted, chat.title), result.approvals

    # --- applying ---------------------------------------------------------------------
    async def apply(self, record: ActionRecord, run: FlowRun, decision: Decision) -> bool:
        """Record the intent, resume, and mark it applied only when Prefect applied it;
        True if resumed. Raises `ResumeRejected` when Prefect refused for good."""
        ledger = self.conns.ledger
        intent = await ledger.actions.record_decision_intent(decision)  # the first intent wins
        answer = await self.runs.resume(run.id, intent.decision, intent.comment)
        now = datetime.now(UTC)
        action_id = intent.action_id
        if answer.outcome is ResumeOutcome.APPLIED:
            applied = await ledger.actions.record_applied_decision(
                intent.model_copy(update={"applied_at": now})
            )
            await ledger.operations.record_audit(
                "decision_applied", applied.model_dump(mode="json"), now=now, action_id=action_id
            )
            await self.announce(record, applied, now)
            return True
        if answer.outcome is ResumeOutcome.TAKEN:  # resumed already (the UI, another listener)
            await ledger.operations.record_audit(
                "resume_aborted",
                {"reason": answer.reason, "intended": intent.model_dump(mode="json")},
                now=now,
                action_id=action_id,
            )
            confirmed = await self.confirm(record, str(run.id), intent)
            if confirmed is not None:
                await self.announce(record, confirmed, now)
            return False
        if answer.outcome is ResumeOutcome.RETRY:
            return False  # the run is still entering its pause: retried next poll
        await ledger.operations.record_audit(
            "resume_rejected", {"reason": answer.reason}, now=now, action_id=action_id
        )
        raise ResumeRejected("resume_flow_run", f"run {run.id}: {answer.reason}")

    async def confirm(
        self, record: ActionRecord, run_id: str, intent: Decision | None
    ) -> Decision | None:
        """Record what Prefect applied to a run resumed by someone else, or by a listener
        killed before it could mark it (`core.approval.applied_by_prefect`)."""
        response = await self.runs.applied_input(run_id)
        if response is None:
            return None
        applied = applied_by_prefect(
            response,
            intent=intent,
            level=self.policy.risk.level(record.proposal.risk),
            action_id=record.proposal.action_id,
            now=datetime.now(UTC),
        )
        if applied is None:
            return None
        return await self.conns.ledger.actions.record_applied_decision(applied)

    async def confirm_unapplied(
        self, paused: dict[str, FlowRun], now: datetime, stats: PollStats
    ) -> None:
        """Intents whose run is no longer paused: a listener died between the resume and
        marking it applied, or lost a race. Confirm them from what Prefect applied."""
        ledger = self.conns.ledger
        for action_id in await ledger.actions.unapplied_decisions(since=now - RECOVERY_LOOKBACK):
            try:
                record = await ledger.actions.get_action(action_id)
                run_id = run_to_confirm(record, paused) if record is not None else None
                if record is None or run_id is None:
                    continue  # gone, applied meanwhile, or still paused: `step` applies it
                if await self.confirm(record, run_id, record.decision) is not None:
                    stats.confirmed += 1
            except Exception as exc:  # noqa: BLE001
                self._error(stats, action_id, exc)

    # --- telling people -----------------------------------------------------------------
    async def announce(self, record: ActionRecord, decision: Decision, now: datetime) -> bool:
        """Edit the request to show how it was decided (once: the ledger marks it
        announced; a restarted listener finishes what a killed one began)."""
        req = record.request
        if req is None or req.message_id is None:
            return False
        text = words.outcome_text(decision)
        try:
            await update_request(self.conns, req, DecisionOutcome(decision=decision))
        except UpstreamError as exc:
            self.log.warning("could not edit the approval message (retried next poll): %s", exc)
            return False
        await self.conns.ledger.actions.mark_decision_announced(decision.action_id, text, now=now)
        return True

    async def announce_pending(self, now: datetime, stats: PollStats) -> None:
        """Applied decisions not yet shown in chat (UI decisions, a killed listener)."""
        ledger = self.conns.ledger
        for action_id in await ledger.actions.decisions_to_announce(since=now - RECOVERY_LOOKBACK):
            try:
                record = await ledger.actions.get_action(action_id)
                if record and record.decision and await self.announce(record, record.decision, now):
                    stats.announced += 1
            except Exception as exc:  # noqa: BLE001
                self._error(stats, action_id, exc)

    async def remind(self, record: ActionRecord, now: datetime, approvals: list[str]) -> bool:
        """The one reminder, when the configured part of the window remains."""
        req = record.request
        if req is None or req.message_id is None or req.reminder_sent_at is not None:
            return False
        due = reminder_due(
            req.requested_at,
            req.deadline,
            now,
            fraction=self.settings.reminder_fraction,
            before_seconds=self.settings.reminder_seconds,
        )
        action = record.proposal
        if not due or not await self.conns.ledger.actions.mark_reminder_sent(
            action.action_id, now=now
        ):
            return False
        reminder = Reminder(
            action=action,
            level=self.policy.risk.level(action.risk),
            deadline=req.deadline,
            approvals=approvals,
            request=req,
        )
        await post_in_thread(self.conns, req, reminder)
        await self.conns.ledger.operations.record_audit(
            "reminder_sent",
            {"deadline": req.deadline.isoformat()},
            now=now,
            action_id=action.action_id,
        )
        return True
