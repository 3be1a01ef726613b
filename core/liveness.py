"""When an action run is dead, and what the reconciler does about it — pure decisions.

Prefect does not re-run a dead `remediate_action` run (`retries=0`): it ends CRASHED when
its worker survives, and stays RUNNING or PAUSED when the worker died too. A live action
run writes a heartbeat to the ledger every `heartbeat_seconds` (also while paused or
waiting for a host slot), so a run whose heartbeat has gone stale is known to be dead.

A run suspended for its approval (`wait: suspend`: state PAUSED named "Suspended") has no
process and writes no heartbeat: it is alive as a database row until resumed, and a
resumed one is SCHEDULED/PENDING ("Resuming") until a worker starts it again, then gets
a heartbeat window from the moment it is running again. A suspended run whose Prefect
timeout failed it on the server ran no failure hook: the reconciler expires its action.

For each action that has a ledger record, is not finished, and has no live run:
- no decision applied yet (it was awaiting approval) → expired: nothing runs (a dead run
  cannot be resumed by an answer any more);
- a decision applied → continued by a fresh `remediate_action` run for the same action
  id, at most MAX_CONTINUATIONS times (a run that keeps dying is reported, not retried
  forever) — then given up.

The take over is a compare-and-set on the action's heartbeat (a claim written by the
reconciler, `CLAIMANT` + the dead run's id). A claim whose fresh run never appeared (its
reconciler died in between) is taken again after CLAIM_WINDOW, not after the whole
heartbeat window — the dead run's launch intent holds its host slot until the fresh run
resolves it.

Everything here works on `ActionRun`, a plain description of one Prefect flow run, so
this module needs no Prefect objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import Field

from core.models import Frozen
from core.settings import ActionSettings

STALE_HEARTBEATS = 5  # a run that missed this many heartbeats is presumed dead
MAX_CONTINUATIONS = 3
# A claim is written a moment before its fresh run is created; one older than this with
# no fresh run in sight belongs to a reconciler that died, so the action is taken again.
CLAIM_WINDOW = timedelta(seconds=20)
CLAIMANT = "reconciler:"  # how a claim's heartbeat starts (a live run writes its run id)
CONTINUES = "continues:"  # a fresh run's tag: the dead run it continues
ACTION_TAG = "remediation-action"
ACTION_PREFIX = "action:"  # the tag naming an action run's action id
RECONCILED_TAG = "reconciled"
# Heartbeat interval assumed when no run says (there are none to read it from).
DEFAULT_HEARTBEAT_SECONDS = 10.0


class RunStateType(StrEnum):
    """A flow run's state type, as Prefect names it (`StateType` values)."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLED = "CANCELLED"


DEAD_STATES = (RunStateType.CRASHED, RunStateType.FAILED)
LIVE_STATES = (RunStateType.RUNNING, RunStateType.PAUSED)
COMING_STATES = (RunStateType.SCHEDULED, RunStateType.PENDING)
SUSPENDED = "Suspended"  # the name of a suspended run's PAUSED state


class ActionRun(Frozen):
    """One `remediate-action` flow run, as the reconciler needs to know it."""

    id: str
    state: RunStateType | None = None
    state_name: str | None = None  # "Crashed", "Running", … (None: no state yet)
    started: datetime  # start time, else expected start, else creation
    state_since: datetime | None = None  # when the run entered its current state
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    action_id: str | None = None
    continues: str | None = None  # the dead run this one was created to continue
    deployment_id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)

    @property
    def coming(self) -> bool:
        return self.state in COMING_STATES

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def dead(self) -> bool:
        return self.state in DEAD_STATES

    @property
    def suspended(self) -> bool:
        """Waiting suspended: no process, no heartbeat — alive as a database row."""
        return self.state is RunStateType.PAUSED and self.state_name == SUSPENDED

    @property
    def last_start(self) -> datetime:
        """When the run last began running: a resumed suspended run starts a new process
        long after its first start."""
        if self.state is RunStateType.RUNNING and self.state_since is not None:
            return max(self.started, self.state_since)
        return self.started

    @property
    def state_label(self) -> str:
        """The state's name for people ("unknown state" when it has none)."""
        return self.state_name or "unknown state"


class Outcome(StrEnum):
    """What a pass did with one dead action."""

    CONTINUED = "continued"
    EXPIRED = "expired"
    GAVE_UP = "gave_up"


class Via(StrEnum):
    """How a continuation runs."""

    DEPLOYMENT = "deployment"
    IN_PROCESS = "in-process"


class ReconcileOutcome(Frozen):
    action_id: str
    outcome: Outcome
    dead_run_id: str
    dead_run_state: str
    new_run_id: str | None = None
    via: Via | None = None  # for a continued action


class Remedy(StrEnum):
    """What to do with a dead action the reconciler has claimed."""

    EXPIRE = "expire"  # no decision applied: nothing runs
    CONTINUE = "continue"  # decided: a fresh run continues it from the ledger
    GIVE_UP = "give_up"  # continued too often already


# --- reading a run's tags and parameters ----------------------------------------------
def action_id_of(parameters: Mapping[str, Any] | None, tags: Iterable[str] | None) -> str | None:
    """The action an action run handles: its `action` parameter, else its `action:` tag."""
    action = (parameters or {}).get("action")
    if isinstance(action, dict) and isinstance(action.get("action_id"), str):
        return action["action_id"]
    for tag in tags or ():
        if tag.startswith(ACTION_PREFIX):
            return tag.removeprefix(ACTION_PREFIX)
    return None


def continues_of(tags: Iterable[str] | None) -> str | None:
    """The dead run a reconciler created this one to continue, if it did."""
    for tag in tags or ():
        if tag.startswith(CONTINUES):
            return tag.removeprefix(CONTINUES)
    return None


def heartbeat_seconds_of(parameters: Mapping[str, Any] | None) -> float:
    """How often the run beats: its `settings` parameter, else the default settings."""
    settings = (parameters or {}).get("settings") or {}
    try:
        return ActionSettings.model_validate(settings).heartbeat_seconds
    except ValueError:
        return ActionSettings().heartbeat_seconds


def continuation_deployment(parameters: Mapping[str, Any]) -> str:
    """The deployment name a continuation of a run with these parameters goes through
    when the dead run itself came from no deployment."""
    return (parameters.get("settings") or {}).get("deployment") or ActionSettings().deployment


def continuation_tags(action_id: str, dead_run_id: str) -> list[str]:
    """The tags of a fresh run continuing `dead_run_id`."""
    return [ACTION_TAG, f"{ACTION_PREFIX}{action_id}", RECONCILED_TAG, f"{CONTINUES}{dead_run_id}"]


def continuation_key(dead_run_id: str) -> str:
    """The idempotency key of a continuation: derived from the dead run, so a second
    reconciler creating it (the first one slow, or dead after the create) gets the same
    run back."""
    return f"reconcile-{dead_run_id}"


def claimant(dead_run_id: str) -> str:
    """What a reconciler's claim on the action of `dead_run_id` writes as its heartbeat."""
    return f"{CLAIMANT}{dead_run_id}"


def is_claim(heartbeat_by: str | None) -> bool:
    """The action's last heartbeat is a reconciler's claim, not a run's."""
    return (heartbeat_by or "").startswith(CLAIMANT)


# --- windows --------------------------------------------------------------------------
def stale_after(runs: Iterable[ActionRun], override: timedelta | None = None) -> timedelta:
    """How old a heartbeat may be before its run is presumed dead: `override` when
    given, else STALE_HEARTBEATS of the slowest-beating run's interval."""
    if override is not None:
        return override
    every = max((r.heartbeat_seconds for r in runs), default=DEFAULT_HEARTBEAT_SECONDS)
    return timedelta(seconds=STALE_HEARTBEATS * every)


def claim_window(stale: timedelta) -> timedelta:
    """How long a claim waits for its fresh run (never longer than the heartbeat window
    `stale`: a claim must not outlive what it replaced)."""
    return min(CLAIM_WINDOW, stale)


# --- deciding -------------------------------------------------------------------------
def is_dead(
    runs: Sequence[ActionRun],
    *,
    heartbeat_at: datetime | None,
    heartbeat_by: str | None,
    now: datetime,
    stale: timedelta,
) -> bool:
    """No run of the action is alive: none is coming, none just started, and its last
    heartbeat is stale, written by a run known dead, or a claim whose fresh run never
    came within the claim window."""
    if any(r.coming for r in runs):
        return False  # a run is about to start; it continues from the ledger itself
    if any(r.suspended for r in runs):
        return False  # waits as a database row: no process to die, no heartbeat to miss
    stale_before = now - stale
    if any(r.live and r.last_start >= stale_before for r in runs):
        return False  # just started: give it time for its first heartbeat
    if heartbeat_at is None:
        return True
    if is_claim(heartbeat_by):  # no fresh run came of the claim (checked above): retry soon
        return heartbeat_at < now - claim_window(stale)
    return heartbeat_at < stale_before or heartbeat_by in dead_run_ids(runs)


def failed_before_launch(runs: Sequence[ActionRun], *, launch_intent: bool) -> bool:
    """Every run failed (not crashed) and nothing was launched: its failure hook already
    told people, so the reconciler leaves it alone."""
    return all(r.state is RunStateType.FAILED for r in runs) and not launch_intent


def hook_missed(
    runs: Sequence[ActionRun], *, awaiting_decision: bool, now: datetime, stale: timedelta
) -> bool:
    """The action still awaits a decision although its latest run failed longer than a
    heartbeat window ago: its failure hook never ran. That is a suspended run whose
    Prefect timeout failed it on the server (no process to run the hook); a paused run's
    hook expires the action within seconds."""
    if not runs or not awaiting_decision:
        return False
    latest = dead_run(runs)
    since = latest.state_since or latest.started
    return latest.state is RunStateType.FAILED and since < now - stale


def remedy(*, decision: str | None, continuations: int) -> Remedy:
    """What to do with a claimed dead action: expire it when nobody's decision was
    applied, give up after MAX_CONTINUATIONS continuations, else continue it."""
    if decision is None:
        return Remedy.EXPIRE
    if continuations >= MAX_CONTINUATIONS:
        return Remedy.GIVE_UP
    return Remedy.CONTINUE


def dead_run(runs: Sequence[ActionRun]) -> ActionRun:
    """The run a take-over replaces: the action's latest."""
    return max(runs, key=lambda r: r.started)


def dead_run_ids(runs: Iterable[ActionRun]) -> set[str]:
    """Runs Prefect knows ended crashed or failed."""
    return {r.id for r in runs if r.dead}


def to_mark_crashed(runs: Iterable[ActionRun]) -> list[ActionRun]:
    """Runs Prefect still shows RUNNING or PAUSED although their process is gone."""
    return [r for r in runs if r.live]


def crashed_message(outcome: Outcome) -> str:
    """The message of the Crashed state a dead run is given, saying what became of it."""
    then = {
        Outcome.CONTINUED: "continued by a fresh run",
        Outcome.EXPIRED: "its action expired",
        Outcome.GAVE_UP: "not continued again",
    }[outcome]
    return f"Its process died (no heartbeat): {then} (reconciler)."


def unannounced_continuation(runs: Sequence[ActionRun]) -> ActionRun | None:
    """The newest fresh run a reconciler created (it carries a `continues:` tag) that is
    not dead — its announcement may have been missed if that reconciler died."""
    fresh = [r for r in runs if r.continues and not r.dead]
    return dead_run(fresh) if fresh else None


def via_of(run: ActionRun) -> Via:
    """How a continuation run runs: from a deployment or in-process."""
    return Via.DEPLOYMENT if run.deployment_id is not None else Via.IN_PROCESS
