"""The approval listener: Discord reactions resume paused `remediate_action` runs.

Every poll it reads the actions awaiting approval from the ledger and finds which of
their runs are PAUSED through the Prefect API; for each it reads the ✅/❌ reactions of
its Discord message over REST (all pages), records every vote it sees, and decides with
`core.approval`: bots (itself included) and people outside the approver list are
ignored, one allowed ❌ beats any ✅, a removed reaction no longer counts, high risk needs
the register's number of distinct approvers, and at the deadline the register's default
applies (judged on the votes as they stood at the deadline; a request that never reached
Discord never runs by default). One reminder is posted when a configurable part of the
window remains.

Applying a decision: record the intent and decider in the ledger (the first intent per
action wins), resume the run with the RunInput, and mark the decision applied only when
Prefect answers ACCEPT. ABORT means someone resumed it first (the Prefect UI, or another
listener): what Prefect applied is read back and recorded instead. A REJECT for "schema
not found" (the run is still entering its pause) is retried next poll; any other REJECT
is reported. The approval message is then edited to show the outcome.

It keeps no state of its own: kill it at any moment and start it again. A new listener
re-applies intents recorded but not applied, confirms from Prefect the ones applied but
not marked, and edits the messages of decisions not yet shown (a `decision_announced`
audit event marks those done) — nothing is lost, and the ledger's single decision per
action means nothing is applied twice.

`approval_listener` runs the loop as a flow for a bounded time; `remediation-listener`
runs the same loop as a plain process for a supervisor. Deployed (values in prefect.yaml,
reasons in `core/settings.py`): a schedule every 300 s, concurrency limit 1
with ENQUEUE, `settings.run_seconds` 295 counted from each run's scheduled start, so each
run polls until just before the next is due and exactly one listener is always running.
"""

# No `from __future__ import annotations` here: Prefect validates a deployed flow's
# parameters from its annotations at run time, and string annotations do not resolve.

import argparse
import asyncio
import json
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.exceptions import MissingContextError
from prefect.logging import get_logger, get_run_logger
from prefect.states import Cancelled
from pydantic import BaseModel

from blocks.names import BlockNames
from clients.errors import DiscordNotFound, UpstreamError
from core.approval import (
    APPROVE,
    REJECT,
    Approvers,
    applied_by_prefect,
    decide,
    outcome_text,
    reminder_due,
    reminder_embed,
    resume_outcome,
    voters,
)
from core.policy import Policy
from core.records import ActionRecord, ActionStatus, Decision, Vote
from core.settings import DEPLOYED_RUN_SECONDS, ListenerSettings
from flows import operator_controls
from flows.reconciler import reconcile, wait_for_continuations
from tasks.connections import Connections, open_connections, resolve_policy

ACTION_FLOW = "remediate-action"
NEEDED_BLOCKS = ("discord", "ledger")
RECONCILE_EVERY_SECONDS = 30.0  # a dead run waits this long at most; API reads stay cheap
RUN_IDS_PER_QUERY = 100
RECOVERY_LOOKBACK = timedelta(days=1)  # how far back unconfirmed/unshown decisions are found
log = get_logger("remediation.listener")


def _logger() -> Any:
    """The flow run's logger inside `approval_listener` (its logs then show in the UI),
    else this module's (the plain process)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return log


class ResumeRejected(UpstreamError):
    """Prefect refused the resume for a reason other than "schema not found"."""

    service = "Prefect"


class PollStats(BaseModel):
    paused_runs: int = 0
    pending: int = 0
    resumed: int = 0
    reminders: int = 0
    confirmed: int = 0  # decisions applied earlier, confirmed from Prefect in this poll
    announced: int = 0
    errors: list[str] = []


class ListenerReport(BaseModel):
    """What one bounded run of the loop did."""

    polls: int = 0
    resumed: int = 0
    reminders: int = 0
    errors: int = 0

    def add(self, stats: PollStats) -> None:
        self.polls += 1
        self.resumed += stats.resumed
        self.reminders += stats.reminders
        self.errors += len(stats.errors)


def _status(answer: Any) -> str:
    status = answer.status
    return str(getattr(status, "value", status))


class Listener:
    """One poll at a time; all state lives in Prefect, the ledger and Discord."""

    def __init__(
        self, conns: Connections, policy: Policy, settings: ListenerSettings, client: PrefectClient
    ) -> None:
        self.conns, self.policy, self.settings, self.client = conns, policy, settings, client
        self._bot_id: str | None = None
        self._next_reconcile = 0.0
        self._roles: dict[str, tuple[float, list[str] | None]] = {}  # a cache, not state
        self.log = _logger()
        bot = conns.discord_bot
        self.approvers = Approvers(
            user_ids=bot.approver_user_ids,
            role_ids=bot.approver_role_ids,
            any_member=bot.allow_any_channel_member,
        )

    # --- one poll -------------------------------------------------------------------
    async def poll(self) -> PollStats:
        stats = PollStats()
        now = datetime.now(UTC)
        ledger = self.conns.ledger
        # The detail declares how long this beat stays fresh (read by the dead-man's switch).
        stale = {"stale_after_seconds": self.settings.listener_stale_seconds}
        await ledger.heartbeat("listener", now=now, detail=json.dumps(stale))
        if time.monotonic() >= self._next_reconcile:  # action runs that died (issue 10 §4)
            self._next_reconcile = time.monotonic() + RECONCILE_EVERY_SECONDS
            stale_after = timedelta(seconds=self.settings.action_heartbeat_stale_seconds)
            await reconcile(self.conns, self.policy, self.client, now, stale_after=stale_after)
        waiting = await ledger.actions_with_status(ActionStatus.AWAITING_APPROVAL)
        paused = await self.paused_action_runs(
            r.request.flow_run_id for r in waiting if r.request and r.request.flow_run_id
        )
        stats.pending, stats.paused_runs = len(waiting), len(paused)
        await operator_controls.check_dead_mans_switch(self.conns, "listener", now)
        if await operator_controls.answer_pending_when_paused(self, waiting, now):
            return stats
        for record in waiting:
            run = paused.get(record.request.flow_run_id or "") if record.request else None
            if run is None:
                continue  # not paused (yet, or any more): nothing to resume
            try:
                await self.step(record, run, now, stats)
            except Exception as exc:  # noqa: BLE001 - one action's trouble never stops the rest
                self._error(stats, record.proposal.action_id, exc)
        await self.confirm_unapplied(paused, now, stats)
        await self.announce_pending(now, stats)
        return stats

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

    async def paused_action_runs(self, run_ids: Iterable[str] | None = None) -> dict[str, FlowRun]:
        """PAUSED `remediate-action` runs by id: those among `run_ids`, or all of them."""
        state = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
        flows = FlowFilter(name=FlowFilterName(any_=[ACTION_FLOW]))
        found: dict[str, FlowRun] = {}
        if run_ids is None:
            offset = 0
            while True:
                page = await self.client.read_flow_runs(
                    flow_filter=flows,
                    flow_run_filter=FlowRunFilter(state=state),
                    limit=RUN_IDS_PER_QUERY,
                    offset=offset,
                )
                found.update((str(r.id), r) for r in page)
                if len(page) < RUN_IDS_PER_QUERY:
                    return found
                offset += len(page)
        ids = []
        for rid in dict.fromkeys(run_ids):
            try:
                ids.append(uuid.UUID(rid))
            except ValueError:
                self.log.warning("listener: %r is not a flow run id", rid)
        for i in range(0, len(ids), RUN_IDS_PER_QUERY):
            chunk = ids[i : i + RUN_IDS_PER_QUERY]
            page = await self.client.read_flow_runs(
                flow_filter=flows,
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk), state=state),
                limit=len(chunk),
            )
            found.update((str(r.id), r) for r in page)
        return found

    # --- who may decide -------------------------------------------------------------
    async def bot_id(self) -> str:
        if self._bot_id is None:
            self._bot_id = (await self.conns.discord.current_user()).id
        return self._bot_id

    async def member_roles(self, user_id: str) -> list[str] | None:
        """A guild member's role ids (None: not a member), reused for `role_cache_seconds`."""
        cached = self._roles.get(user_id)
        if cached is not None and time.monotonic() - cached[0] < self.settings.role_cache_seconds:
            return cached[1]
        guild = self.conns.discord_bot.guild_id or ""
        roles = await self.conns.discord.member_roles(guild, user_id)
        self._roles[user_id] = (time.monotonic(), roles)
        return roles

    async def allowed(self, user_id: str) -> bool:
        """Approver user ids or role ids from the Discord block; with neither listed, any
        guild member only if `allow_any_channel_member` is set."""
        a = self.approvers
        if user_id in a.user_ids:
            return True
        guild = self.conns.discord_bot.guild_id
        if a.role_ids:
            if not guild:
                return False  # roles cannot be checked without the guild
            roles = await self.member_roles(user_id)
            return bool(roles and set(roles) & set(a.role_ids))
        if a.user_ids or not a.any_member:
            return False
        # Anyone in the channel; a person who left the guild no longer is.
        return not guild or await self.member_roles(user_id) is not None

    # --- deciding -------------------------------------------------------------------
    async def read_votes(
        self, record: ActionRecord, now: datetime
    ) -> tuple[list[Vote], set[str], bool]:
        """Every reaction on the request, all pages, recorded as votes (bots excepted);
        returns the action's votes, the bot ids seen, and whether the message is gone."""
        req = record.request
        assert req is not None and req.message_id is not None
        channel = req.channel_id or self.conns.discord_bot.approvals_channel_id
        bots = {await self.bot_id()}
        present: list[tuple[str, str, str]] = []
        try:
            for emoji in (REJECT, APPROVE):
                for user in await self.conns.discord.list_reactions(channel, req.message_id, emoji):
                    if user.bot or user.id in bots:
                        bots.add(user.id)
                    else:
                        present.append((user.id, user.username, emoji))
        except DiscordNotFound:
            # The message was deleted: the votes recorded so far stand, no new ones come,
            # and nobody can object any more, so no deadline default runs it.
            return await self.conns.ledger.votes(record.proposal.action_id), bots, True
        votes = await self.conns.ledger.sync_votes(record.proposal.action_id, present, now=now)
        return votes, bots, False

    async def evaluate(
        self, record: ActionRecord, now: datetime
    ) -> tuple[Decision | None, list[str]]:
        """The decision to apply now (if any) and the allowed approvals so far."""
        req, action = record.request, record.proposal
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
            reached_discord=req.message_id is not None and not deleted,
            now=now,
        )
        if deleted and decision is not None and decision.via == "deadline":
            why = "deadline passed; the approval request was deleted from Discord"
            decision = decision.model_copy(update={"comment": why})
        return decision, result.approvals

    # --- applying ---------------------------------------------------------------------
    async def apply(self, record: ActionRecord, run: FlowRun, decision: Decision) -> bool:
        """Record the intent, resume, and mark it applied only on ACCEPT; True if resumed."""
        ledger = self.conns.ledger
        intent = await ledger.record_decision_intent(decision)  # the first intent wins
        answer = await self.client.resume_flow_run(
            run.id,
            run_input={"decision": intent.decision, "comment": (intent.comment or "")[:500]},
        )
        reason = str(getattr(answer.details, "reason", "") or "")
        outcome = resume_outcome(_status(answer), reason)
        now = datetime.now(UTC)
        action_id = intent.action_id
        if outcome == "applied":
            applied = await ledger.record_applied_decision(
                intent.model_copy(update={"applied_at": now})
            )
            await ledger.record_audit(
                "decision_applied", applied.model_dump(mode="json"), now=now, action_id=action_id
            )
            await self.announce(record, applied, now)
            return True
        if outcome == "taken":  # resumed already (the Prefect UI, another listener)
            await ledger.record_audit(
                "resume_aborted",
                {"reason": reason, "intended": intent.model_dump(mode="json")},
                now=now,
                action_id=action_id,
            )
            confirmed = await self.confirm(record, str(run.id), intent)
            if confirmed is not None:
                await self.announce(record, confirmed, now)
            return False
        if outcome == "retry":
            return False  # the run is still entering its pause: retried next poll
        await ledger.record_audit(
            "resume_rejected", {"reason": reason}, now=now, action_id=action_id
        )
        raise ResumeRejected("resume_flow_run", f"run {run.id}: {reason}")

    async def prefect_response(self, run_id: str) -> dict[str, Any] | None:
        """The input the run's latest pause was resumed with, or None (not resumed with
        input: still paused, failed, crashed or cancelled)."""
        states = await self.client.read_flow_run_states(uuid.UUID(run_id))
        paused = [
            s
            for s in states
            if s.type == StateType.PAUSED and (s.state_details.run_input_keyset or {})
        ]
        if not paused:
            return None
        latest = max(paused, key=lambda s: s.timestamp)
        key = latest.state_details.run_input_keyset.get("response")
        try:
            raw = await self.client.read_flow_run_input(uuid.UUID(run_id), key)
        except Exception:  # noqa: BLE001 - no stored response (a 404): nothing applied
            return None
        data = json.loads(raw) if isinstance(raw, str) else raw
        return data if isinstance(data, dict) and data.get("decision") else None

    async def confirm(
        self, record: ActionRecord, run_id: str, intent: Decision | None
    ) -> Decision | None:
        """Record what Prefect applied to a run resumed by someone else, or by a listener
        killed before it could mark it (`core.approval.applied_by_prefect`)."""
        response = await self.prefect_response(run_id)
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
        return await self.conns.ledger.record_applied_decision(applied)

    async def confirm_unapplied(
        self, paused: dict[str, FlowRun], now: datetime, stats: PollStats
    ) -> None:
        """Intents whose run is no longer paused: a listener died between the resume and
        marking it applied, or lost a race. Confirm them from what Prefect applied."""
        ledger = self.conns.ledger
        for action_id in await ledger.unapplied_decisions(since=now - RECOVERY_LOOKBACK):
            try:
                record = await ledger.get_action(action_id)
                if record is None or record.decision is None or record.decision.applied_at:
                    continue
                run_id = (record.request.flow_run_id if record.request else None) or (
                    record.flow_run_id
                )
                if run_id is None or run_id in paused:
                    continue  # still paused: `step` applies the intent
                if await self.confirm(record, run_id, record.decision) is not None:
                    stats.confirmed += 1
            except Exception as exc:  # noqa: BLE001
                self._error(stats, action_id, exc)

    # --- telling people -----------------------------------------------------------------
    async def announce(self, record: ActionRecord, decision: Decision, now: datetime) -> bool:
        """Edit the approval message to show how it was decided (once: an audit event
        marks it done; a restarted listener finishes what a killed one began)."""
        req = record.request
        if req is None or req.message_id is None:
            return False
        channel = req.channel_id or self.conns.discord_bot.approvals_channel_id
        try:
            await self.conns.discord.edit_message(
                channel, req.message_id, content=outcome_text(decision)
            )
        except DiscordNotFound:
            pass  # deleted: nothing left to edit
        except UpstreamError as exc:
            self.log.warning("could not edit the approval message (retried next poll): %s", exc)
            return False
        await self.conns.ledger.record_audit(
            "decision_announced",
            {"message_id": req.message_id, "text": outcome_text(decision)},
            now=now,
            action_id=decision.action_id,
        )
        return True

    async def announce_pending(self, now: datetime, stats: PollStats) -> None:
        """Applied decisions not yet shown in Discord (UI decisions, a killed listener)."""
        ledger = self.conns.ledger
        for action_id in await ledger.decisions_to_announce(since=now - RECOVERY_LOOKBACK):
            try:
                record = await ledger.get_action(action_id)
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
        if not due or not await self.conns.ledger.mark_reminder_sent(action.action_id, now=now):
            return False
        bot = self.conns.discord_bot
        channel = req.channel_id or bot.approvals_channel_id
        url = (
            f"https://discord.com/channels/{bot.guild_id}/{channel}/{req.message_id}"
            if bot.guild_id
            else None
        )
        embed = reminder_embed(
            action,
            self.policy.risk.level(action.risk),
            deadline=req.deadline,
            approvals=approvals,
            message_url=url,
        )
        await self.conns.discord.create_message(channel, embeds=[embed])
        await self.conns.ledger.record_audit(
            "reminder_sent",
            {"deadline": req.deadline.isoformat()},
            now=now,
            action_id=action.action_id,
        )
        return True


async def run_listener(
    names: BlockNames,
    policy: Policy,
    settings: ListenerSettings,
    *,
    stop: Callable[[], bool] | None = None,
    on_poll: Callable[[PollStats], Awaitable[None]] | None = None,
    until: datetime | None = None,
) -> ListenerReport:
    """Poll every `poll_seconds` until `until` (default: `run_seconds` from now, or
    forever) or `stop()`; never starts a poll that could not begin before the end."""
    conns = await open_connections(names, NEEDED_BLOCKS)
    if until is None and settings.run_seconds is not None:
        until = datetime.now(UTC) + timedelta(seconds=settings.run_seconds)
    report = ListenerReport()
    async with conns, get_client() as client:
        listener = Listener(conns, policy, settings, client)
        next_at = time.monotonic()
        while True:
            try:
                stats = await listener.poll()
            except Exception as exc:  # a supervisor-grade loop goes on
                listener.log.exception("listener poll failed")
                stats = PollStats(errors=[f"poll: {type(exc).__name__}: {exc}"])
            report.add(stats)
            if on_poll is not None:
                await on_poll(stats)
            next_at = max(next_at + settings.poll_seconds, time.monotonic())
            wait = next_at - time.monotonic()
            if until is not None and datetime.now(UTC) + timedelta(seconds=wait) >= until:
                # continuations started in this process must not die with it
                await wait_for_continuations()
                return report
            while (remaining := next_at - time.monotonic()) > 0:
                if stop is not None and stop():
                    return report
                await asyncio.sleep(min(remaining, 0.25))
            if stop is not None and stop():
                return report


@contextmanager
def _stop_on_sigterm() -> Iterator[asyncio.Event]:
    """An event SIGTERM sets, for as long as the block runs (main thread only; elsewhere
    the event is simply never set).

    A worker stopped as README says (`deploy/stop-worker.sh`) SIGTERMs its flow-run
    processes first, and a cancellation from the UI SIGTERMs the run too. Left to
    Prefect's handler, the listener is torn down wherever it is (between recording a
    decision and resuming its run, say) and the run ends Crashed ("Execution was
    cancelled by the runtime environment"): an alarm for a routine stop. With this, the
    poll in hand finishes and the run ends Completed (Cancelled when it was cancelled),
    within a second or two."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    try:
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
    except (ValueError, RuntimeError):  # not the main thread: nothing to install
        previous = None
    try:
        yield stopping
    finally:
        if previous is not None:
            loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, previous)


async def _cancelling() -> bool:
    """Whether this run is being cancelled (then it should end Cancelled, not Completed)."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return False
    async with get_client() as client:
        state = (await client.read_flow_run(ctx.flow_run.id)).state
    return state is not None and state.is_cancelling()


def _scheduled_start() -> datetime | None:
    """The scheduled start of this run when it belongs to a deployment (else None)."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx is not None else None
    if run is None or run.deployment_id is None or run.expected_start_time is None:
        return None
    return datetime.fromtimestamp(run.expected_start_time.timestamp(), UTC)


@flow(name="approval-listener", retries=0)
async def approval_listener(
    policy: dict[str, Any] | None = None,
    blocks: BlockNames = BlockNames(),  # noqa: B008 - an immutable pydantic default
    settings: ListenerSettings = ListenerSettings(run_seconds=DEPLOYED_RUN_SECONDS),  # noqa: B008
) -> ListenerReport | State:
    """Poll Discord and resume paused actions for a bounded time, then return.

    A deployed run counts `run_seconds` from its scheduled start, so it ends just before
    the next scheduled run is due (see `core/settings.py`)."""
    seconds = settings.run_seconds or DEPLOYED_RUN_SECONDS
    start = _scheduled_start() or datetime.now(UTC)
    until = start + timedelta(seconds=seconds)
    with _stop_on_sigterm() as stopping:
        checked = (await resolve_policy(policy, blocks)).policy
        report = await run_listener(blocks, checked, settings, until=until, stop=stopping.is_set)
    logger = get_run_logger()
    logger.info(
        "listener: %d polls, %d resumed, %d reminders, %d errors",
        report.polls,
        report.resumed,
        report.reminders,
        report.errors,
    )
    if stopping.is_set():
        logger.info("listener: stopped by SIGTERM; the next listener run picks everything up")
        if await _cancelling():
            return Cancelled(message="Cancelled: the listener stopped after its last poll.")
    return report


def main(argv: list[str] | None = None) -> int:
    """`remediation-listener`: the same loop as a plain process (for a supervisor)."""
    parser = argparse.ArgumentParser(
        prog="remediation-listener",
        description="Resume paused remediation actions from Discord reactions "
        "(needs PREFECT_API_URL and the saved blocks).",
    )
    parser.add_argument(
        "--poll-seconds", type=float, default=20.0, help="seconds between polls (default 20)"
    )
    parser.add_argument(
        "--run-seconds",
        type=float,
        default=None,
        help="stop after this long (default: run until SIGTERM/SIGINT)",
    )
    parser.add_argument("--policy", help="policy file (YAML or JSON; default: built-in policy)")
    parser.add_argument("--blocks", help='block names as JSON, e.g. \'{"discord": "bot"}\'')
    args = parser.parse_args(argv)
    from tasks.policy_file import read_policy_file

    names = BlockNames.model_validate_json(args.blocks) if args.blocks else BlockNames()
    document = read_policy_file(args.policy) if args.policy else None
    settings = ListenerSettings(poll_seconds=args.poll_seconds, run_seconds=args.run_seconds)

    async def supervised() -> ListenerReport:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        policy = (await resolve_policy(document, names)).policy
        return await run_listener(names, policy, settings, stop=stopping.is_set)

    report = asyncio.run(supervised())
    print(report.model_dump_json())
    return 0
