"""The approval listener: Discord reactions resume paused `remediate_action` runs.

Every poll it finds paused action runs through the Prefect API and their requests in
the ledger, reads ✅/❌ reactions over REST (all pages), and decides with `core.approval`
(bots and non-approvers ignored, ❌ beats ✅, removed reactions don't count, a quorum for
high risk, the register's default at the deadline). It records the intended decision
and decider, resumes the run, and marks the decision applied only when Prefect accepts.
It keeps no state of its own: kill it at any moment and start it again.

Deployed, it runs as a flow for a bounded time (concurrency 1, ENQUEUE, scheduled so the
next run starts as this one ends); `remediation-listener` runs the same loop as a plain
process for a supervisor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from prefect import flow
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.logging import get_logger
from pydantic import BaseModel

from blocks.names import BlockNames
from clients.errors import DiscordNotFound, UpstreamError
from core import render
from core.approval import APPROVE, REJECT, Approvers, deadline_outcome, tally
from core.policy import Policy, load_policy
from core.records import ActionRecord, ActionStatus, Decision
from flows import operator_controls
from flows.connections import Connections, open_connections
from flows.listener_settings import ListenerSettings

ACTION_FLOW = "remediate-action"
NEEDED_BLOCKS = ("discord", "ledger")
log = get_logger("remediation.listener")


class PollStats(BaseModel):
    paused_runs: int = 0
    pending: int = 0
    resumed: int = 0
    reminders: int = 0
    errors: list[str] = []


class Listener:
    """One poll at a time; all state lives in Prefect, the ledger and Discord."""

    def __init__(
        self, conns: Connections, policy: Policy, settings: ListenerSettings, client: PrefectClient
    ) -> None:
        self.conns, self.policy, self.settings, self.client = conns, policy, settings, client
        self._bot_id: str | None = None
        bot = conns.discord_bot
        self.approvers = Approvers(
            user_ids=bot.approver_user_ids,
            role_ids=bot.approver_role_ids,
            any_member=bot.allow_any_channel_member,
        )

    async def paused_action_runs(self) -> dict[str, Any]:
        runs = await self.client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[ACTION_FLOW])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
            ),
            limit=200,
        )
        return {str(r.id): r for r in runs}

    async def poll(self) -> PollStats:
        stats = PollStats()
        now = datetime.now(UTC)
        await self.conns.ledger.heartbeat("listener", now=now)
        paused = await self.paused_action_runs()
        stats.paused_runs = len(paused)
        waiting = await self.conns.ledger.actions_with_status(ActionStatus.AWAITING_APPROVAL)
        stats.pending = len(waiting)
        await operator_controls.check_dead_mans_switch(self.conns, "listener", now)
        if await operator_controls.answer_pending_when_paused(self, waiting, now):
            return stats
        roles: dict[str, list[str]] = {}
        for record in waiting:
            run = paused.get(record.request.flow_run_id or "") if record.request else None
            if run is None:
                continue  # not paused (yet, or any more): nothing to resume
            try:
                if await self.decide(record, run, roles, now):
                    stats.resumed += 1
                if await self.remind(record, now):
                    stats.reminders += 1
            except UpstreamError as exc:
                stats.errors.append(f"{record.proposal.action_id}: {exc}")
                log.warning("listener: %s: %s", record.proposal.action_id, exc)
        return stats

    # --- who may decide -------------------------------------------------------------
    async def bot_id(self) -> str:
        if self._bot_id is None:
            self._bot_id = (await self.conns.discord.current_user()).id
        return self._bot_id

    async def allowed(self, user_id: str, roles: dict[str, list[str]]) -> bool:
        a = self.approvers
        if user_id in a.user_ids:
            return True
        if a.role_ids and self.conns.discord_bot.guild_id:
            if user_id not in roles:
                roles[user_id] = await self.conns.discord.get_member_roles(
                    self.conns.discord_bot.guild_id, user_id
                )
            if set(roles[user_id]) & set(a.role_ids):
                return True
        return not a.user_ids and not a.role_ids and a.any_member

    # --- deciding ---------------------------------------------------------------------
    async def decide(
        self, record: ActionRecord, run: Any, roles: dict[str, list[str]], now: datetime
    ) -> bool:
        request = record.request
        assert request is not None
        action = record.proposal
        level = self.policy.risk.level(action.risk)
        if record.decision is not None:  # intended before a restart: apply it again
            return await self.apply(record, run, record.decision)
        past_deadline = now >= request.deadline
        bot_ids = {await self.bot_id()}
        if request.message_id:
            votes_seen = []
            for emoji in (APPROVE, REJECT):
                try:
                    users = await self.conns.discord.list_reactions(
                        request.channel_id or "", request.message_id, emoji
                    )
                except DiscordNotFound:
                    users = []  # the message was deleted: only the deadline default remains
                for u in users:
                    if u.bot:
                        bot_ids.add(u.id)
                    votes_seen.append((u.id, u.username, emoji))
            if not past_deadline:  # after the deadline, only votes recorded before it count
                votes = await self.conns.ledger.sync_votes(action.action_id, votes_seen, now=now)
            else:
                votes = await self.conns.ledger.votes(action.action_id)
            allowed = {
                v.user_id
                for v in votes
                if v.user_id not in bot_ids and await self.allowed(v.user_id, roles)
            }
            result = tally(
                votes,
                allowed=lambda u: u in allowed,
                bot_user_ids=bot_ids,
                level=level,
                cutoff=request.deadline,
            )
            if result.decision is not None:
                return await self.apply(
                    record,
                    run,
                    Decision(
                        action_id=action.action_id,
                        decision=result.decision,
                        decider=", ".join(result.deciders),
                        via="discord",
                        intended_at=now,
                    ),
                )
        if past_deadline:
            default = deadline_outcome(level, action) if request.message_id else "skip"
            why = (
                "deadline default"
                if request.message_id
                else "deadline passed; the request never reached Discord"
            )
            return await self.apply(
                record,
                run,
                Decision(
                    action_id=action.action_id,
                    decision="approve" if default == "run" else "reject",
                    decider="deadline default",
                    via="deadline",
                    comment=why,
                    intended_at=now,
                ),
            )
        return False

    async def apply(self, record: ActionRecord, run: Any, decision: Decision) -> bool:
        """Record the intent, resume, and mark applied only on ACCEPT."""
        ledger = self.conns.ledger
        decision = await ledger.record_decision_intent(decision)
        answer = await self.client.resume_flow_run(
            run.id,
            run_input={"decision": decision.decision, "comment": (decision.comment or "")[:500]},
        )
        status = str(answer.status.value if hasattr(answer.status, "value") else answer.status)
        reason = str(getattr(answer.details, "reason", "") or "")
        now = datetime.now(UTC)
        if status == "ACCEPT":
            await ledger.mark_decision_applied(decision.action_id, now=now)
            await ledger.record_audit(
                "decision_applied",
                decision.model_dump(mode="json"),
                now=now,
                action_id=decision.action_id,
            )
            await self.announce(record, decision)
            return True
        if status == "ABORT":  # already resumed, e.g. from the UI: record what Prefect applied
            applied = await self._applied_by_prefect(run, record)
            if applied is not None:
                await ledger.record_applied_decision(applied)
                await self.announce(record, applied)
            return False
        if "schema not found" in reason.lower():
            return False  # the run is still entering its pause: retried next poll
        log.error("resume of %s rejected: %s", run.id, reason)
        await ledger.record_audit(
            "resume_rejected", {"reason": reason}, now=now, action_id=decision.action_id
        )
        return False

    async def _applied_by_prefect(self, run: Any, record: ActionRecord) -> Decision | None:
        key = (record.request.pause_key if record.request else None) or (
            f"approve-{record.proposal.action_id}"
        )
        try:
            raw = await self.client.read_flow_run_input(run.id, f"paused-{key}-response")
        except Exception:  # noqa: BLE001 - no stored response: nothing to record
            return None
        data = json.loads(raw) if isinstance(raw, str) else raw
        now = datetime.now(UTC)
        return Decision(
            action_id=record.proposal.action_id,
            decision=data["decision"],
            decider="Prefect UI",
            via="ui",
            comment=data.get("comment") or None,
            intended_at=now,
            applied_at=now,
        )

    async def announce(self, record: ActionRecord, decision: Decision) -> None:
        """Edit the approval message to show how it was decided."""
        req = record.request
        if not req or not req.message_id:
            return
        verb = "✅ Approved" if decision.decision == "approve" else "❌ Rejected"
        text = {
            "discord": f"{verb} by {decision.decider}",
            "deadline": (
                "⏰ Ran by deadline default"
                if decision.decision == "approve"
                else "⏰ Deadline passed: will not run"
            ),
            "ui": f"{verb} — decided in Prefect UI",
        }.get(decision.via, f"{verb} ({decision.via})")
        try:
            await self.conns.discord.edit_message(
                req.channel_id or "", req.message_id, content=text
            )
        except UpstreamError as exc:
            log.warning("could not edit the approval message: %s", exc)

    async def remind(self, record: ActionRecord, now: datetime) -> bool:
        req = record.request
        if req is None or req.reminder_sent_at is not None or record.decision is not None:
            return False
        window = (req.deadline - req.requested_at).total_seconds()
        if (req.deadline - now).total_seconds() > window * self.settings.reminder_fraction:
            return False
        if now >= req.deadline or not await self.conns.ledger.mark_reminder_sent(
            record.proposal.action_id, now=now
        ):
            return False
        a = record.proposal
        ts = int(req.deadline.timestamp())
        await self.conns.discord.create_message(
            self.conns.discord_bot.approvals_channel_id,
            embeds=[
                render.notice_message(
                    f"⏳ Reminder: {a.catalog_key} on {a.host} awaits a decision",
                    f"The deadline is <t:{ts}:R>. React ✅ or ❌ on the request above.",
                    color=self.policy.risk.level(a.risk).color,
                )
            ],
        )
        return True


async def run_listener(
    names: BlockNames,
    policy: Policy,
    settings: ListenerSettings,
    *,
    stop: Callable[[], bool] | None = None,
    on_poll: Callable[[PollStats], Awaitable[None]] | None = None,
) -> int:
    """Poll until `run_seconds` elapse (or `stop()`); returns the number of polls."""
    conns = await open_connections(names, NEEDED_BLOCKS)
    started = time.monotonic()
    polls = 0
    async with conns, get_client() as client:
        listener = Listener(conns, policy, settings, client)
        while True:
            try:
                stats = await listener.poll()
                if on_poll is not None:
                    await on_poll(stats)
            except UpstreamError as exc:
                log.error("listener poll failed: %s", exc)
            polls += 1
            elapsed = time.monotonic() - started
            if (stop and stop()) or (
                settings.run_seconds is not None
                and elapsed + settings.poll_seconds > settings.run_seconds
            ):
                return polls
            await asyncio.sleep(settings.poll_seconds)


@flow(name="approval-listener", retries=0)
async def approval_listener(
    policy: dict[str, Any] | None = None,
    blocks: BlockNames = BlockNames(),  # noqa: B008 - an immutable pydantic default
    settings: ListenerSettings = ListenerSettings(run_seconds=270),  # noqa: B008
) -> int:
    """Poll Discord and resume paused actions for a bounded time."""
    return await run_listener(blocks, load_policy(policy), settings)


def main(argv: list[str] | None = None) -> int:
    """`remediation-listener`: the same loop as a plain process (for a supervisor)."""
    parser = argparse.ArgumentParser(
        prog="remediation-listener",
        description="Resume paused remediation actions from Discord reactions.",
    )
    parser.add_argument("--poll-seconds", type=float, default=20.0)
    parser.add_argument(
        "--run-seconds",
        type=float,
        default=None,
        help="stop after this long (default: run until stopped)",
    )
    parser.add_argument("--policy", help="policy file (YAML or JSON)")
    parser.add_argument("--blocks", help='block names as JSON, e.g. \'{"discord": "bot"}\'')
    args = parser.parse_args(argv)
    from flows.policy_cli import read_policy_file

    names = BlockNames.model_validate_json(args.blocks) if args.blocks else BlockNames()
    policy = load_policy(read_policy_file(args.policy) if args.policy else None)
    settings = ListenerSettings(poll_seconds=args.poll_seconds, run_seconds=args.run_seconds)
    asyncio.run(run_listener(names, policy, settings))
    return 0
