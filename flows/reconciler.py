"""The reconciler: continue — or close — actions whose `remediate_action` run died.

Prefect does not re-run such a run (`retries=0`): it ends CRASHED when its worker
survives, and stays RUNNING or PAUSED when the worker died too. A live action run writes
a heartbeat to the ledger every `heartbeat_seconds` (`flows.heartbeat.keep_alive`, also
while paused or waiting for a host slot), so a run whose heartbeat has gone stale is
known to be dead.

For each action that has a ledger record, is not finished, and has no live run:
- no decision applied yet (it was awaiting approval) → reported expired in Discord and
  the ledger; nothing runs (a dead run cannot be resumed by an answer any more);
- a decision applied (`approved`, perhaps waiting for its host; a launch intent or job
  id, or nothing yet) → a fresh `remediate_action` run for the same action id, through
  the deployment when there is one, else in-process. It continues from the ledger: it
  polls the recorded job, or finds an unrecorded one by its marker, and never launches
  blindly; then it verifies and reports as usual.
Stale RUNNING/PAUSED runs are marked CRASHED in Prefect, saying what happened. The take
over is a compare-and-set on the action's heartbeat, so two reconcilers (the listener
and a flow) never both continue one action; and an action is continued at most
MAX_CONTINUATIONS times (a run that keeps dying is reported, not retried forever).

A continuation is created first and announced after: its deployment run carries an
idempotency key derived from the dead run (a second reconciler creating it gets the same
run back), and its `reconcile_continued` row and "🔁 Continuing" notice are written once
per dead run. A claim whose fresh run never appeared (its reconciler died in between) is
taken again after CLAIM_WINDOW, not after the whole heartbeat window — the dead run's
launch intent holds its host slot until the fresh run resolves it.

The listener calls `reconcile(conns, policy, client, now)` once per poll; the
`reconcile_actions` flow runs one pass on its own.
"""

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from prefect import flow, tags
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments import arun_deployment
from prefect.exceptions import ObjectNotFound
from prefect.logging import get_logger
from prefect.states import Crashed
from pydantic import BaseModel

from blocks.names import BlockNames
from clients.errors import UpstreamError
from clients.ledger_jobs import ActionLiveness
from core import render
from core.policy import Policy
from core.records import ActionStatus
from core.settings import ActionSettings
from tasks.connections import Connections, open_connections, resolve_policy
from tasks.notify import post_notice

ACTION_FLOW = "remediate-action"
ACTION_TAG = "remediation-action"
STALE_HEARTBEATS = 5  # a run that missed this many heartbeats is presumed dead
LOOKBACK = timedelta(days=2)
MAX_CONTINUATIONS = 3
# A claim is written a moment before its fresh run is created; one older than this with
# no fresh run in sight belongs to a reconciler that died, so the action is taken again.
CLAIM_WINDOW = timedelta(seconds=20)
CLAIMANT = "reconciler:"  # how a claim's heartbeat starts (a live run writes its run id)
CONTINUES = "continues:"  # a fresh run's tag: the dead run it continues
_PAGE = 200
_MAX_PAGES = 10
_DEAD = (StateType.CRASHED, StateType.FAILED)
_LIVE = (StateType.RUNNING, StateType.PAUSED)
_COMING = (StateType.SCHEDULED, StateType.PENDING)

log = get_logger("remediation.reconciler")
_background: set[asyncio.Task[Any]] = set()


# --- finding dead action runs ------------------------------------------------------------
class ReconcileOutcome(BaseModel):
    action_id: str
    outcome: Literal["continued", "expired", "gave_up"]
    dead_run_id: str
    dead_run_state: str
    new_run_id: str | None = None
    via: str | None = None  # "deployment" or "in-process" for a continued action


def _action_id(run: FlowRun) -> str | None:
    action = (run.parameters or {}).get("action")
    if isinstance(action, dict) and isinstance(action.get("action_id"), str):
        return action["action_id"]
    for tag in run.tags or ():
        if tag.startswith("action:"):
            return tag.removeprefix("action:")
    return None


def _heartbeat_seconds(run: FlowRun) -> float:
    settings = (run.parameters or {}).get("settings") or {}
    try:
        return ActionSettings.model_validate(settings).heartbeat_seconds
    except ValueError:
        return ActionSettings().heartbeat_seconds


def _started(run: FlowRun) -> datetime:
    return (
        run.start_time or run.expected_start_time or run.created or datetime.min.replace(tzinfo=UTC)
    )


def _state(run: FlowRun) -> StateType | None:
    return run.state.type if run.state else None


async def action_runs(client: PrefectClient, *, since: datetime) -> dict[str, list[FlowRun]]:
    """`remediate-action` runs since `since` that are not over (or ended crashed or
    failed), by action id."""
    states = [*_DEAD, *_LIVE, *_COMING]
    found: dict[str, list[FlowRun]] = {}
    for page in range(_MAX_PAGES):
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[ACTION_FLOW])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states)),
                expected_start_time=FlowRunFilterExpectedStartTime(after_=since),
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=_PAGE,
            offset=page * _PAGE,
        )
        for run in runs:
            action_id = _action_id(run)
            if action_id is not None:
                found.setdefault(action_id, []).append(run)
        if len(runs) < _PAGE:
            break
    return found


class Reconciler:
    """One pass over the action runs Prefect knows of, checked against the ledger."""

    def __init__(
        self,
        conns: Connections,
        policy: Policy,
        client: PrefectClient,
        *,
        stale_after: timedelta | None = None,
        lookback: timedelta = LOOKBACK,
    ) -> None:
        self.conns, self.policy, self.client = conns, policy, client
        self.stale_after, self.lookback = stale_after, lookback
        self.started: list[asyncio.Task[Any]] = []

    def stale(self, runs: Iterable[FlowRun]) -> timedelta:
        if self.stale_after is not None:
            return self.stale_after
        every = max((_heartbeat_seconds(r) for r in runs), default=10.0)
        return timedelta(seconds=STALE_HEARTBEATS * every)

    def claim_window(self, runs: Iterable[FlowRun]) -> timedelta:
        """How long a claim waits for its fresh run (never longer than the heartbeat
        window: a claim must not outlive what it replaced)."""
        return min(CLAIM_WINDOW, self.stale(runs))

    async def run(self, now: datetime) -> list[ReconcileOutcome]:
        """Never raises: a failure is logged and the next pass tries again (an action
        claimed by a failed pass is taken again once the claim is CLAIM_WINDOW old)."""
        try:
            by_action = await action_runs(self.client, since=now - self.lookback)
            views = await self.conns.ledger.action_liveness(by_action)
        except Exception as exc:  # noqa: BLE001 - Prefect API or ledger unavailable
            log.warning("reconciler: cannot list action runs: %s", exc)
            return []
        outcomes = []
        for action_id, runs in by_action.items():
            view = views.get(action_id)
            if view is None or view.status.terminal:
                continue  # not ours, or already over
            try:
                outcome = await self.reconcile_one(view, runs, now)
            except Exception:  # one action's trouble must not stop the rest
                log.exception("reconciling action %s failed", action_id)
                continue
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def is_dead(self, view: ActionLiveness, runs: list[FlowRun], now: datetime) -> bool:
        if any(_state(r) in _COMING for r in runs):
            return False  # a run is about to start; it continues from the ledger itself
        stale_before = now - self.stale(runs)
        dead_ids = {str(r.id) for r in runs if _state(r) in _DEAD}
        if any(_state(r) in _LIVE and _started(r) >= stale_before for r in runs):
            return False  # just started: give it time for its first heartbeat
        if view.heartbeat_at is None:
            return True
        if _claimed(view):  # no fresh run came of the claim (checked above): retry soon
            return view.heartbeat_at < now - self.claim_window(runs)
        return view.heartbeat_at < stale_before or view.heartbeat_by in dead_ids

    async def reconcile_one(
        self, view: ActionLiveness, runs: list[FlowRun], now: datetime
    ) -> ReconcileOutcome | None:
        if not self.is_dead(view, runs, now):
            await self.announce_missed(view, runs, now)
            return None
        if all(_state(r) is StateType.FAILED for r in runs) and not view.launch_intent:
            return None  # failed before any launch: its failure hook told people
        ledger = self.conns.ledger
        trail = [e["event"] for e in await ledger.audit_trail(action_id=view.action_id)]
        if "reconcile_gave_up" in trail:
            return None
        dead = max(runs, key=_started)
        claimed = await ledger.claim_dead_action(
            view.action_id,
            stale_before=now - self.stale(runs),
            dead_runs=[str(r.id) for r in runs if _state(r) in _DEAD],
            claimant=f"{CLAIMANT}{dead.id}",
            now=now,
            reclaim_prefix=CLAIMANT,
            reclaim_before=now - self.claim_window(runs),
        )
        if not claimed:
            return None  # another reconciler took it
        outcome = ReconcileOutcome(
            action_id=view.action_id,
            outcome="expired",
            dead_run_id=str(dead.id),
            dead_run_state=dead.state.name if dead.state else "?",
        )
        if view.decision is None:
            await self.expire(view, dead, now)
        elif trail.count("reconcile_continued") >= MAX_CONTINUATIONS:
            outcome.outcome = "gave_up"
            await self.give_up(view, dead, now)
        else:
            try:
                outcome.via, outcome.new_run_id = await self.continue_action(view, dead, now)
                outcome.outcome = "continued"
            except ContinuationEnded as ended:  # someone ended the fresh run (cancelled)
                outcome.outcome = "gave_up"
                await self.give_up(view, dead, now, ended=ended.run)
        await self.mark_crashed(runs, outcome.outcome)
        return outcome

    # --- what is done --------------------------------------------------------------------
    async def mark_crashed(self, runs: list[FlowRun], outcome: str) -> None:
        """Runs Prefect still shows RUNNING or PAUSED have no process: say so."""
        then = {
            "continued": "continued by a fresh run",
            "expired": "its action expired",
            "gave_up": "not continued again",
        }[outcome]
        for run in runs:
            if _state(run) not in _LIVE:
                continue
            try:
                await self.client.set_flow_run_state(
                    run.id,
                    Crashed(message=f"Its process died (no heartbeat): {then} (reconciler)."),
                    force=True,
                )
            except Exception as exc:  # noqa: BLE001 - cosmetic in Prefect; the ledger rules
                log.warning("could not mark run %s crashed: %s", run.id, exc)

    async def expire(self, view: ActionLiveness, dead: FlowRun, now: datetime) -> None:
        ledger = self.conns.ledger
        record = await ledger.get_action(view.action_id)
        assert record is not None
        action = record.proposal
        await ledger.set_action_status(view.action_id, ActionStatus.EXPIRED, now=now)
        await ledger.record_audit(
            "reconcile_expired",
            {"dead_run_id": str(dead.id), "dead_run_state": _state_name(dead)},
            now=now,
            action_id=view.action_id,
        )
        await self.say(
            f"⏱️ Expired: {action.catalog_key} on {action.host} did not run",
            f"The run waiting for approval died (run `{dead.id}`, {_state_name(dead)}), so a "
            "decision can no longer resume it. Nothing was launched; the next cycle "
            "reports the issue again if it persists.",
        )
        request = record.request
        if request is not None and request.message_id:
            try:
                await self.conns.discord.edit_message(
                    request.channel_id or "",
                    request.message_id,
                    content="⏱️ Expired — the run that asked died; this will not run.",
                )
            except UpstreamError as exc:
                log.warning("could not edit the approval message: %s", exc)

    async def give_up(
        self, view: ActionLiveness, dead: FlowRun, now: datetime, ended: FlowRun | None = None
    ) -> None:
        record = await self.conns.ledger.get_action(view.action_id)
        assert record is not None
        action = record.proposal
        detail: dict[str, Any] = {"dead_run_id": str(dead.id), "continuations": MAX_CONTINUATIONS}
        if ended is not None:
            detail["ended_run_id"] = str(ended.id)
        await self.conns.ledger.record_audit(
            "reconcile_gave_up", detail, now=now, action_id=view.action_id
        )
        job = f" Job `{view.job_id}` was launched." if view.job_id else ""
        why = (
            f"Its run died (`{dead.id}`, {_state_name(dead)}) and the run that was to continue "
            f"it ended {_state_name(ended)} (`{ended.id}`) without finishing it."
            if ended is not None
            else f"Its run died {MAX_CONTINUATIONS + 1} times (last: `{dead.id}`, "
            f"{_state_name(dead)})."
        )
        await self.say(
            f"🛑 Not continued again: {action.catalog_key} on {action.host}",
            f"{why}{job} Please check the runner and the host by hand.",
            color=render.RED,
        )

    async def continue_action(
        self, view: ActionLiveness, dead: FlowRun, now: datetime
    ) -> tuple[str, str | None]:
        """A fresh `remediate_action` for the same action, from the dead run's parameters:
        created first, then announced (once per dead run)."""
        params = dict(dead.parameters or {})
        deployment_id = await self._deployment(dead, params)
        via = "deployment" if deployment_id is not None else "in-process"
        new_run_id = await self.start_continuation(view, dead, params, deployment_id)
        await self.announce(view, str(dead.id), _state_name(dead), via, now)
        return via, new_run_id

    async def start_continuation(
        self, view: ActionLiveness, dead: FlowRun, params: dict[str, Any], deployment_id: Any
    ) -> str | None:
        """Create the fresh run: the step a claim stands for. Through the deployment, its
        idempotency key is derived from the dead run, so a second reconciler creating it
        (the first one slow, or dead after the create) gets the same run back."""
        labels = [ACTION_TAG, f"action:{view.action_id}", "reconciled", f"{CONTINUES}{dead.id}"]
        if deployment_id is not None:
            run = await arun_deployment(
                deployment_id,
                parameters=params,
                timeout=0,
                as_subflow=False,
                idempotency_key=f"reconcile-{dead.id}",
                tags=labels,
            )
            if run.state is not None and run.state.is_final():
                raise ContinuationEnded(run)  # it ran (or was cancelled) and left this undone
            return str(run.id)
        from flows.remediate_action import remediate_action

        with tags(*labels):  # the task copies this context: its flow run carries the labels
            task = asyncio.create_task(remediate_action(**params, return_state=True))
        _background.add(task)
        task.add_done_callback(_background.discard)
        self.started.append(task)
        return None

    async def announce(
        self, view: ActionLiveness, dead_run_id: str, dead_state: str, via: str, now: datetime
    ) -> None:
        """Record and post the continuation of one dead run — once, whoever calls."""
        first = await self.conns.ledger.record_continuation(
            view.action_id,
            dead_run_id=dead_run_id,
            detail={
                "dead_run_state": dead_state,
                "via": via,
                "job_id": view.job_id,
                "launch_intent": view.launch_intent,
            },
            now=now,
        )
        if not first:
            return
        record = await self.conns.ledger.get_action(view.action_id)
        assert record is not None
        action = record.proposal
        job = (
            f"job `{view.job_id}` is polled"
            if view.job_id
            else "the job is looked up by its marker (never launched twice)"
            if view.launch_intent
            else "it launches once, as approved"
        )
        await self.say(
            f"🔁 Continuing: {action.catalog_key} on {action.host}",
            f"The run handling this approved action died (run `{dead_run_id}`, "
            f"{dead_state}). A fresh run continues it from the ledger: {job}.",
            color=render.GREY,
        )

    async def announce_missed(
        self, view: ActionLiveness, runs: list[FlowRun], now: datetime
    ) -> None:
        """A fresh run whose reconciler died between creating and announcing it: announce
        it now, and mark the run it continues crashed (a no-op when all went well)."""
        fresh = [r for r in runs if _continues(r) and _state(r) not in _DEAD]
        if not fresh:
            return
        run = max(fresh, key=_started)
        dead_run_id = _continues(run)
        assert dead_run_id is not None
        trail = await self.conns.ledger.audit_trail(action_id=view.action_id)
        if any(
            e["event"] == "reconcile_continued" and e["detail"].get("dead_run_id") == dead_run_id
            for e in trail
        ):
            return
        dead = [r for r in runs if str(r.id) == dead_run_id]
        via = "deployment" if run.deployment_id is not None else "in-process"
        state = _state_name(dead[0]) if dead else "unknown state"
        await self.announce(view, dead_run_id, state, via, now)
        await self.mark_crashed(dead, "continued")

    async def _deployment(self, dead: FlowRun, params: dict[str, Any]) -> Any:
        if dead.deployment_id is not None:
            return dead.deployment_id
        name = (params.get("settings") or {}).get("deployment") or ActionSettings().deployment
        try:
            return (await self.client.read_deployment_by_name(name)).id
        except ObjectNotFound:
            return None

    async def say(self, title: str, text: str, color: int = render.GREY) -> None:
        await post_notice(self.conns, render.notice_message(title, text, color=color), log)


def _state_name(run: FlowRun) -> str:
    return run.state.name if run.state else "unknown state"


def _claimed(view: ActionLiveness) -> bool:
    """The action's last heartbeat is a reconciler's claim, not a run's."""
    return (view.heartbeat_by or "").startswith(CLAIMANT)


def _continues(run: FlowRun) -> str | None:
    """The dead run a reconciler created this one to continue, if it did."""
    for tag in run.tags or ():
        if tag.startswith(CONTINUES):
            return tag.removeprefix(CONTINUES)
    return None


class ContinuationEnded(Exception):
    """The fresh run for a dead one already exists and has ended."""

    def __init__(self, run: FlowRun) -> None:
        super().__init__(f"run {run.id} ended {_state_name(run)}")
        self.run = run


async def reconcile(
    conns: Connections,
    policy: Policy,
    client: PrefectClient,
    now: datetime,
    *,
    stale_after: timedelta | None = None,
    wait: bool = False,
) -> list[str]:
    """One reconciliation pass; returns the ids of the actions continued, expired or
    given up. In-process continuations run in the background unless `wait`."""
    reconciler = Reconciler(conns, policy, client, stale_after=stale_after)
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


@flow(name="reconcile-actions", retries=0)
async def reconcile_actions(
    policy: dict[str, Any] | None = None,
    blocks: BlockNames = BlockNames(),  # noqa: B008 - an immutable pydantic default
    stale_after_seconds: float | None = None,
    wait: bool = True,
) -> list[str]:
    """Find action runs that died and continue (or expire) their actions; in-process
    continuations run as subflows of this run and are awaited when `wait`."""
    checked = (await resolve_policy(policy, blocks)).policy
    conns = await open_connections(blocks, ("discord", "ledger"))
    stale = None if stale_after_seconds is None else timedelta(seconds=stale_after_seconds)
    async with conns, get_client() as client:
        return await reconcile(
            conns, checked, client, datetime.now(UTC), stale_after=stale, wait=wait
        )
