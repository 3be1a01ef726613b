"""The reconciler's I/O: one pass over the action runs Prefect knows of, checked against
the ledger — claiming dead actions, expiring, continuing or giving them up, announcing,
and marking their runs crashed. What is dead and what to do is decided in
`core.liveness`; the notices' words are in `core.reconcile_notices`.

A continuation is created first and announced after: its deployment run carries an
idempotency key derived from the dead run (a second reconciler creating it gets the same
run back), and its continuation record and "🔁 Continuing" notice are written once
per dead run. Without a deployment, the fresh run is the action flow started in-process:
the caller (a flow) passes that flow in as `in_process`, so this module never imports
`flows`.

The helpers here are plain async functions, not Prefect tasks: the listener runs a pass
every 30 s (a task run per pass would cost API calls), and an in-process continuation
must stay a subflow of the calling flow run, not of a task run that ends before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect import tags
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.logging import get_logger

from clients.errors import UpstreamError
from clients.ledger_jobs import ActionLiveness
from clients.prefect_runs import ContinuationEnded, PrefectRuns, state_name
from core.liveness import (
    CLAIMANT,
    MAX_CONTINUATIONS,
    ActionRun,
    Outcome,
    ReconcileOutcome,
    Remedy,
    RunStateType,
    Via,
    action_id_of,
    claim_window,
    claimant,
    continuation_deployment,
    continuation_key,
    continuation_tags,
    continues_of,
    crashed_message,
    dead_run,
    dead_run_ids,
    failed_before_launch,
    heartbeat_seconds_of,
    hook_missed,
    is_dead,
    remedy,
    stale_after,
    to_mark_crashed,
    unannounced_continuation,
    via_of,
)
from core.messages import Notice, RequestClosed
from core.policy import Policy
from core.records import ActionStatus
from core.words import (
    EXPIRED_APPROVAL,
    continuing_message,
    expired_message,
    gave_up_message,
)
from tasks.chat import say, update_request
from tasks.connections import Connections

LOOKBACK = timedelta(days=2)

log = get_logger("remediation.reconciler")
_background: set[asyncio.Task[Any]] = set()

# The action flow (`remediate_action`), called with a dead run's parameters to continue
# it in-process when there is no deployment to run it through.
ActionFlow = Callable[..., Awaitable[Any]]
# What a caller may hand a pass: the project's Prefect client, or a bare PrefectClient.
PrefectAccess = PrefectRuns | PrefectClient


def action_run(run: FlowRun) -> ActionRun:
    """What the reconciler needs to know of one Prefect flow run."""
    started = run.start_time or run.expected_start_time or run.created
    return ActionRun(
        id=str(run.id),
        state=RunStateType(run.state.type.value) if run.state else None,
        state_name=run.state.name if run.state else None,
        started=started or datetime.min.replace(tzinfo=UTC),
        state_since=run.state.timestamp if run.state else None,
        heartbeat_seconds=heartbeat_seconds_of(run.parameters),
        action_id=action_id_of(run.parameters, run.tags),
        continues=continues_of(run.tags),
        deployment_id=str(run.deployment_id) if run.deployment_id else None,
        parameters=dict(run.parameters or {}),
    )


class Reconciler:
    """One pass over the action runs Prefect knows of, checked against the ledger."""

    def __init__(
        self,
        conns: Connections,
        policy: Policy,
        prefect: PrefectAccess,
        *,
        in_process: ActionFlow | None = None,
        stale_after: timedelta | None = None,
        lookback: timedelta = LOOKBACK,
    ) -> None:
        self.conns, self.policy = conns, policy
        self.prefect = prefect if isinstance(prefect, PrefectRuns) else PrefectRuns(prefect)
        self.in_process = in_process
        self.stale_after, self.lookback = stale_after, lookback
        self.started: list[asyncio.Task[Any]] = []

    async def run(self, now: datetime) -> list[ReconcileOutcome]:
        """Never raises: a failure is logged and the next pass tries again (an action
        claimed by a failed pass is taken again once the claim is CLAIM_WINDOW old)."""
        try:
            by_action = await self.prefect.action_runs(since=now - self.lookback)
            views = await self.conns.ledger.jobs.action_liveness(by_action)
        except Exception as exc:  # noqa: BLE001 - Prefect API or ledger unavailable
            log.warning("reconciler: cannot list action runs: %s", exc)
            return []
        outcomes = []
        for action_id, flow_runs in by_action.items():
            view = views.get(action_id)
            if view is None or view.status.terminal:
                continue  # not ours, or already over
            try:
                outcome = await self.reconcile_one(view, [action_run(r) for r in flow_runs], now)
            except Exception:  # one action's trouble must not stop the rest
                log.exception("reconciling action %s failed", action_id)
                continue
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    async def reconcile_one(
        self, view: ActionLiveness, runs: list[ActionRun], now: datetime
    ) -> ReconcileOutcome | None:
        stale = stale_after(runs, self.stale_after)
        at, by = view.heartbeat_at, view.heartbeat_by
        if not is_dead(runs, heartbeat_at=at, heartbeat_by=by, now=now, stale=stale):
            await self.announce_missed(view, runs, now)
            return None
        awaiting = view.status is ActionStatus.AWAITING_APPROVAL and view.decision is None
        if failed_before_launch(runs, launch_intent=view.launch_intent) and not hook_missed(
            runs, awaiting_decision=awaiting, now=now, stale=stale
        ):
            return None  # its failure hook told people
        if view.gave_up:
            return None  # reported already: it needs a person
        dead = dead_run(runs)
        claimed = await self.conns.ledger.jobs.claim_dead_action(
            view.action_id,
            stale_before=now - stale,
            dead_runs=sorted(dead_run_ids(runs)),
            claimant=claimant(dead.id),
            now=now,
            reclaim_prefix=CLAIMANT,
            reclaim_before=now - claim_window(stale),
        )
        if not claimed:
            return None  # another reconciler took it
        outcome = ReconcileOutcome(
            action_id=view.action_id,
            outcome=Outcome.EXPIRED,
            dead_run_id=dead.id,
            dead_run_state=dead.state_name or "?",
        )
        match remedy(decision=view.decision, continuations=view.continuations):
            case Remedy.EXPIRE:
                await self.expire(view, dead, now)
            case Remedy.GIVE_UP:
                outcome = outcome.model_copy(update={"outcome": Outcome.GAVE_UP})
                await self.give_up(view, dead, now)
            case Remedy.CONTINUE:
                try:
                    via, new_run_id = await self.continue_action(view, dead, now)
                    update = {"outcome": Outcome.CONTINUED, "via": via, "new_run_id": new_run_id}
                except ContinuationEnded as ended:  # someone ended the fresh run (cancelled)
                    update = {"outcome": Outcome.GAVE_UP}
                    await self.give_up(view, dead, now, ended=ended.run)
                outcome = outcome.model_copy(update=update)
        await self.mark_crashed(runs, outcome.outcome)
        return outcome

    # --- what is done ---------------------------------------------------------------------
    async def mark_crashed(self, runs: Sequence[ActionRun], outcome: Outcome) -> None:
        """Runs Prefect still shows RUNNING or PAUSED have no process: say so."""
        for run in to_mark_crashed(runs):
            try:
                await self.prefect.mark_crashed(run.id, crashed_message(outcome))
            except Exception as exc:  # noqa: BLE001 - cosmetic in Prefect; the ledger rules
                log.warning("could not mark run %s crashed: %s", run.id, exc)

    async def expire(self, view: ActionLiveness, dead: ActionRun, now: datetime) -> None:
        ledger = self.conns.ledger
        record = await ledger.actions.get_action(view.action_id)
        assert record is not None
        await ledger.actions.set_action_status(view.action_id, ActionStatus.EXPIRED, now=now)
        await ledger.operations.record_audit(
            "reconcile_expired",
            {"dead_run_id": dead.id, "dead_run_state": dead.state_label},
            now=now,
            action_id=view.action_id,
        )
        await self.say(expired_message(record.proposal, dead.id, dead.state_label))
        request = record.request
        if request is not None and request.message_id:
            try:
                await update_request(self.conns, request, RequestClosed(text=EXPIRED_APPROVAL))
            except UpstreamError as exc:
                log.warning("could not edit the approval message: %s", exc)

    async def give_up(
        self, view: ActionLiveness, dead: ActionRun, now: datetime, ended: FlowRun | None = None
    ) -> None:
        record = await self.conns.ledger.actions.get_action(view.action_id)
        assert record is not None
        detail: dict[str, Any] = {"dead_run_id": dead.id, "continuations": MAX_CONTINUATIONS}
        if ended is not None:
            detail["ended_run_id"] = str(ended.id)
        if not await self.conns.ledger.jobs.record_gave_up(view.action_id, detail, now=now):
            return  # another reconciler gave it up and said so
        await self.say(
            gave_up_message(
                record.proposal,
                dead.id,
                dead.state_label,
                job_id=view.job_id,
                ended_run_id=str(ended.id) if ended is not None else None,
                ended_state=state_name(ended) if ended is not None else None,
            )
        )

    async def continue_action(
        self, view: ActionLiveness, dead: ActionRun, now: datetime
    ) -> tuple[Via, str | None]:
        """A fresh `remediate_action` for the same action, from the dead run's parameters:
        created first, then announced (once per dead run)."""
        params = dict(dead.parameters)
        deployment_id = await self.deployment(dead, params)
        via = Via.DEPLOYMENT if deployment_id is not None else Via.IN_PROCESS
        new_run_id = await self.start_continuation(view, dead, params, deployment_id)
        await self.announce(view, dead.id, dead.state_label, via, now)
        return via, new_run_id

    async def start_continuation(
        self,
        view: ActionLiveness,
        dead: ActionRun,
        params: dict[str, Any],
        deployment_id: UUID | str | None,
    ) -> str | None:
        """Create the fresh run: the step a claim stands for. Through the deployment, its
        idempotency key is derived from the dead run, so a second reconciler creating it
        (the first one slow, or dead after the create) gets the same run back."""
        labels = continuation_tags(view.action_id, dead.id)
        if deployment_id is not None:
            run = await self.prefect.start_continuation(
                deployment_id, params, continuation_key(dead.id), labels
            )
            return str(run.id)
        if self.in_process is None:
            raise RuntimeError("no deployment to continue the action through, nor a flow")
        with tags(*labels):  # the task copies this context: its flow run carries the labels
            task = asyncio.create_task(self.in_process(**params, return_state=True))
        _background.add(task)
        task.add_done_callback(_background.discard)
        self.started.append(task)
        return None

    async def announce(
        self, view: ActionLiveness, dead_run_id: str, dead_state: str, via: Via, now: datetime
    ) -> None:
        """Record and post the continuation of one dead run — once, whoever calls."""
        first = await self.conns.ledger.jobs.record_continuation(
            view.action_id,
            dead_run_id=dead_run_id,
            detail={
                "dead_run_state": dead_state,
                "via": str(via),
                "job_id": view.job_id,
                "launch_intent": view.launch_intent,
            },
            now=now,
        )
        if not first:
            return
        record = await self.conns.ledger.actions.get_action(view.action_id)
        assert record is not None
        await self.say(
            continuing_message(
                record.proposal,
                dead_run_id,
                dead_state,
                job_id=view.job_id,
                launch_intent=view.launch_intent,
            )
        )

    async def announce_missed(
        self, view: ActionLiveness, runs: Sequence[ActionRun], now: datetime
    ) -> None:
        """A fresh run whose reconciler died between creating and announcing it: announce
        it now, and mark the run it continues crashed (a no-op when all went well)."""
        fresh = unannounced_continuation(runs)
        if fresh is None or fresh.continues is None:
            return
        dead_run_id = fresh.continues
        if await self.conns.ledger.jobs.continued_from(view.action_id, dead_run_id):
            return
        dead = [r for r in runs if r.id == dead_run_id]
        state = dead[0].state_label if dead else "unknown state"
        await self.announce(view, dead_run_id, state, via_of(fresh), now)
        await self.mark_crashed(dead, Outcome.CONTINUED)

    async def deployment(self, dead: ActionRun, params: dict[str, Any]) -> UUID | str | None:
        """Where a continuation runs: the dead run's deployment, else the one its
        settings name (None: there is none, it runs in-process)."""
        if dead.deployment_id is not None:
            return dead.deployment_id
        return await self.prefect.deployment_id(continuation_deployment(params))

    async def say(self, notice: Notice) -> None:
        await say(self.conns, notice, log)


async def reconcile(
    conns: Connections,
    policy: Policy,
    prefect: PrefectAccess,
    now: datetime,
    *,
    in_process: ActionFlow | None = None,
    stale_after: timedelta | None = None,
    wait: bool = False,
) -> list[str]:
    """One reconciliation pass; returns the ids of the actions continued, expired or
    given up. In-process continuations (`in_process`, the action flow) run in the
    background unless `wait`."""
    reconciler = Reconciler(conns, policy, prefect, in_process=in_process, stale_after=stale_after)
    outcomes = await reconciler.run(now)
    for o in outcomes:
        log.warning(
            "action %s: run %s was dead (%s): %s%s",
            o.action_id,
            o.dead_run_id,
            o.dead_run_state,
            o.outcome,
            f" via {o.via}" if o.via else "",
        )
    if wait and reconciler.started:
        await asyncio.gather(*reconciler.started, return_exceptions=True)
    return [o.action_id for o in outcomes]


async def wait_for_continuations(timeout: float | None = None) -> int:
    """Wait for the in-process continuations this process started (call it before a
    caller that reconciles, such as a bounded listener run, exits); returns how many
    were still running."""
    pending = list(_background)
    if pending:
        await asyncio.wait(pending, timeout=timeout)
    return len(pending)
