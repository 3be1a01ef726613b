"""The approval listener: chat reactions resume paused `remediate_action` runs.

Every poll it reads the actions awaiting approval from the ledger and finds which of
their runs are PAUSED through the Prefect API; for each it reads the ✅/❌ reactions of
its chat request (all pages, through the channel's port), records every vote it sees,
and decides with `core.approval`: bots (itself included) and people outside the approver
list are ignored, one allowed ❌ beats any ✅, a removed reaction no longer counts, high
risk needs the register's number of distinct approvers, and at the deadline the
register's default applies (judged on the votes as they stood at the deadline; a request
that never reached the chat channel never runs by default). One reminder is posted when
a configurable part of the window remains.

Applying a decision: record the intent and decider in the ledger (the first intent per
action wins), resume the run with the RunInput, and mark the decision applied only when
Prefect answers ACCEPT. ABORT means someone resumed it first (the Prefect UI, or another
listener): what Prefect applied is read back and recorded instead. A REJECT for "schema
not found" (the run is still entering its pause) is retried next poll; any other REJECT
is reported. The approval message is then edited to show the outcome.

It keeps no state of its own: kill it at any moment and start it again. A new listener
re-applies intents recorded but not applied, confirms from Prefect the ones applied but
not marked, and edits the messages of decisions not yet shown (the ledger marks those
announced) — nothing is lost, and the ledger's single decision per action means nothing
is applied twice.

Where things are: the rules in `core.approval` (who may approve, the tally, the deadline
default, what Prefect's answer to a resume means, the reminder), one poll's I/O in
`tasks.approvals.ApprovalPoller`, the Prefect API in `clients.prefect_runs`; this module
is the loop, the flow and the command.

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
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import State, flow
from prefect.context import FlowRunContext
from prefect.logging import get_run_logger
from prefect.states import Cancelled

from blocks.names import BlockNames
from core.approval import ListenerReport, PollStats
from core.policy import Policy
from core.settings import DEPLOYED_RUN_SECONDS, ListenerSettings
from flows.reconciler import reconcile
from tasks.approvals import ApprovalPoller
from tasks.chat import CHAT_BLOCKS
from tasks.connections import open_connections, resolve_policy
from tasks.prefect_runs import open_prefect_runs, run_is_cancelling
from tasks.reconcile import wait_for_continuations

NEEDED_BLOCKS = (*CHAT_BLOCKS, "ledger")
__all__ = ["ListenerReport", "PollStats", "approval_listener", "main", "poll_once", "run_listener"]


async def poll_once(poller: ApprovalPoller) -> PollStats:
    """One poll: the heartbeat, the action runs that died (every 30 s, issue 10 §4),
    then the approvals."""
    now = datetime.now(UTC)
    await poller.beat(now)
    if poller.reconcile_due():
        stale_after = timedelta(seconds=poller.settings.action_heartbeat_stale_seconds)
        await reconcile(poller.conns, poller.policy, poller.runs, now, stale_after=stale_after)
    return await poller.poll(now)


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
    async with conns, open_prefect_runs() as runs:
        poller = ApprovalPoller(conns, policy, settings, runs)
        next_at = time.monotonic()
        while True:
            try:
                stats = await poll_once(poller)
            except Exception as exc:  # a supervisor-grade loop goes on
                poller.log.exception("listener poll failed")
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
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return False
    return await run_is_cancelling(ctx.flow_run.id)


def _scheduled_start() -> datetime | None:
    """The scheduled start of this run when it belongs to a deployment (else None)."""
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
    """Poll the chat channel and resume paused actions for a bounded time, then return.

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
        description="Resume paused remediation actions from chat reactions "
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
    parser.add_argument("--blocks", help='block names as JSON, e.g. \'{"ledger": "main"}\'')
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
