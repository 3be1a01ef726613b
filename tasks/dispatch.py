"""Starting the cycle's action runs from the `remediate_action` deployment.

Each action is a run of the deployment started with `run_deployment(..., timeout=0)`
(linked as a subflow, except where the action's risk level waits suspended: Prefect
suspends only top-level runs): the cycle ends in seconds and never holds its concurrency slot
while people decide. Its parameters are the deployment's own, with the cycle's merged
over them field by field (`core.run_parameters`), so settings the action deployment
declares are kept. When no listener run is running, one is started (`options["listener"]`
names its deployment), so the first request is read within a poll of a deploy.

Plain functions, not Prefect tasks: they are also called outside any flow run (tests,
benchmarks), where `run_deployment` must not link its runs to a standalone task run;
each run started shows in the UI as its own subflow of the cycle.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from prefect.client.schemas.objects import StateType
from prefect.context import FlowRunContext

from clients.ledger import Ledger
from clients.prefect_runs import PrefectRuns
from core.dispatch import (
    DispatchResult,
    ListenerRun,
    action_deployment,
    action_run_parameters,
    dispatch_failed,
    listener_covers,
    listener_not_started,
)
from core.models import Risk
from core.records import ActionStatus
from core.run_parameters import merge_parameters
from core.vetting import ProposedAction

_LIVE = (StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED)


def running_from_deployment() -> bool:
    """Whether the calling flow run was started from a deployment (prefect.runtime's
    flow_run has no deployment id; the run context's flow run does)."""
    ctx = FlowRunContext.get()
    return bool(ctx is not None and ctx.flow_run is not None and ctx.flow_run.deployment_id)


async def record_actions(ledger: Ledger, actions: Sequence[ProposedAction]) -> None:
    """The ledger knows every action before its run starts."""
    await ledger.actions.record_actions(actions, now=datetime.now(UTC))


async def ensure_listener(runs: PrefectRuns, deployment: str | None) -> str | None:
    """Start a listener run now unless one is already running or about to: after a
    deploy the first scheduled one may be minutes away, and a ✅ on the first request
    must not wait for it. The deployment's ENQUEUE limit keeps it to one at a time.
    Returns the new run's id, or None when none was needed (or no listener deployment
    is configured)."""
    if not deployment:
        return None
    deployment_id, live = await runs.runs_of(deployment, _LIVE)
    listeners = [
        ListenerRun(
            scheduled=r.state.type is StateType.SCHEDULED, expected_start=r.expected_start_time
        )
        for r in live
        if r.state is not None
    ]
    if listener_covers(listeners, datetime.now(UTC)):
        return None
    run = await runs.start_run(deployment_id, tags=["remediation", "started-by-cycle"])
    return str(run.id)


async def start_action_runs(
    ledger: Ledger,
    actions: Sequence[ProposedAction],
    options: dict[str, Any],
    suspended_risks: Collection[Risk] = (),
) -> DispatchResult:
    """One `remediate_action` deployment run per action (a failed start marks the
    action DISPATCH_FAILED and is reported, never lost); then a listener run if none
    is due. An action at one of `suspended_risks` is not linked as a subflow (Prefect
    suspends top-level runs only)."""
    started = time.perf_counter()
    result = DispatchResult()
    deployment = action_deployment(options)
    async with PrefectRuns.open() as runs:
        declared = await runs.deployment_parameters(deployment)
        for a in actions:
            try:
                run = await runs.run_deployment(
                    deployment,
                    merge_parameters(declared, action_run_parameters(a, options)),
                    idempotency_key=f"remediate-{a.action_id}",
                    tags=["remediation-action", f"action:{a.action_id}"],
                    as_subflow=a.risk not in suspended_risks,
                )
                result.dispatched[a.action_id] = str(run.id)
            except Exception as exc:  # noqa: BLE001 - any failure: report, never lose it
                result.errors[a.action_id] = dispatch_failed(a, exc)
                await ledger.actions.set_action_status(
                    a.action_id, ActionStatus.DISPATCH_FAILED, now=datetime.now(UTC)
                )
        if result.dispatched:
            listener = options.get("listener")
            try:
                result.listener_run_id = await ensure_listener(runs, listener)
            except Exception as exc:  # noqa: BLE001 - the actions wait either way: say it
                result.errors["listener"] = listener_not_started(listener, exc)
    result.seconds = time.perf_counter() - started
    return result
