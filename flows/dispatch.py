"""Dispatching vetted actions from the cycle.

From a deployment, each action is a run of the `remediate_action` deployment started
with `run_deployment(..., timeout=0)` (linked as a subflow): the cycle ends in seconds
and never holds its concurrency slot while people decide. Its parameters are the
deployment's own, with the cycle's merged over them field by field (`core.run_parameters`),
so settings the action deployment declares are kept. When no listener run is running,
one is started (`options["listener"]` names its deployment), so the first request is
read within a poll of a deploy. Run locally, the action subflows are gathered
concurrently in-process.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.context import FlowRunContext
from prefect.deployments import arun_deployment
from prefect.exceptions import ObjectNotFound
from prefect.logging import get_run_logger
from pydantic import BaseModel, Field

from core.records import ActionStatus
from core.run_parameters import merge_parameters
from core.vetting import ProposedAction

DispatchMode = Literal["auto", "deployment", "inline", "none"]
# A scheduled listener run due this soon counts as running (it will read the new requests
# within its first poll).
LISTENER_DUE_SECONDS = 30


class DispatchResult(BaseModel):
    dispatched: dict[str, str] = Field(default_factory=dict, description="action id → run id")
    errors: dict[str, str] = Field(default_factory=dict)
    results: dict[str, Any] = Field(default_factory=dict)
    listener_run_id: str | None = Field(
        default=None, description="A listener run started because none was running."
    )


def _parameters(action: ProposedAction, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "action": action.model_dump(mode="json"),
        "policy": options.get("policy"),
        "blocks": options.get("blocks") or {},
        "settings": options.get("settings") or {},
    }


async def _declared_parameters(deployment: str) -> dict[str, Any]:
    """The parameters the action deployment declares (empty when it cannot be read: the
    launch then fails on its own and says why)."""
    try:
        async with get_client() as client:
            return dict((await client.read_deployment_by_name(deployment)).parameters or {})
    except ObjectNotFound:
        return {}


async def ensure_listener(deployment: str | None) -> str | None:
    """Start a listener run now unless one is already running or about to: after a
    deploy the first scheduled one may be minutes away, and a ✅ on the first request
    must not wait for it. The deployment's ENQUEUE limit keeps it to one at a time.
    Returns the new run's id, or None when none was needed (or no listener deployment
    is configured)."""
    if not deployment:
        return None
    async with get_client() as client:
        listener = await client.read_deployment_by_name(deployment)
        soon = datetime.now(UTC) + timedelta(seconds=LISTENER_DUE_SECONDS)
        live = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[listener.id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(
                        any_=[StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED]
                    )
                )
            ),
        )
        if any(
            r.state is not None
            and (
                r.state.type is not StateType.SCHEDULED
                or (r.expected_start_time is not None and r.expected_start_time <= soon)
            )
            for r in live
        ):
            return None
        run = await client.create_flow_run_from_deployment(
            listener.id, tags=["remediation", "started-by-cycle"]
        )
        return str(run.id)


async def dispatch_actions(
    actions: list[ProposedAction],
    *,
    mode: DispatchMode,
    options: dict[str, Any],
    ledger: Any,
) -> DispatchResult:
    """Start one `remediate_action` per action; record each in the ledger first."""
    result = DispatchResult()
    if not actions or mode == "none":
        return result
    await ledger.record_actions(actions, now=datetime.now(UTC))
    if mode == "auto":
        # prefect.runtime.flow_run has no deployment id; the run context's flow run does
        ctx = FlowRunContext.get()
        deployed = ctx is not None and ctx.flow_run is not None and ctx.flow_run.deployment_id
        mode = "deployment" if deployed else "inline"
    if mode == "deployment":
        deployment = (options.get("settings") or {}).get(
            "deployment", "remediate-action/remediate-action"
        )
        declared = await _declared_parameters(deployment)
        for a in actions:
            try:
                run = await arun_deployment(
                    deployment,
                    parameters=merge_parameters(declared, _parameters(a, options)),
                    timeout=0,
                    as_subflow=True,
                    idempotency_key=f"remediate-{a.action_id}",
                    tags=["remediation-action", f"action:{a.action_id}"],
                )
                result.dispatched[a.action_id] = str(run.id)
            except Exception as exc:  # noqa: BLE001 - any failure: report, never lose it
                result.errors[a.action_id] = (
                    f"dispatch of {a.catalog_key} on {a.host} failed: {exc}"
                )
                await ledger.set_action_status(
                    a.action_id, ActionStatus.DISPATCH_FAILED, now=datetime.now(UTC)
                )
        if result.dispatched:
            try:
                result.listener_run_id = await ensure_listener(options.get("listener"))
            except Exception as exc:  # noqa: BLE001 - the actions wait either way: say it
                result.errors["listener"] = (
                    f"could not start a listener run ({options.get('listener')}): {exc}; "
                    "decisions are read when the next scheduled one starts"
                )
        return result
    from flows.remediate_action import remediate_action

    states = await asyncio.gather(
        *(remediate_action(**_parameters(a, options), return_state=True) for a in actions)
    )
    for a, state in zip(actions, states, strict=True):
        result.dispatched[a.action_id] = str(state.state_details.flow_run_id)
        try:
            result.results[a.action_id] = await state.aresult()
        except Exception as exc:  # noqa: BLE001 - an action's failure is its own report
            get_run_logger().warning("action %s ended %s: %s", a.action_id, state.name, exc)
            result.results[a.action_id] = {"status": state.name}
    return result
