"""Dispatching vetted actions from the cycle.

From a deployment, each action is a run of the `remediate_action` deployment started
with `run_deployment(..., timeout=0)` (linked as a subflow): the cycle ends in seconds
and never holds its concurrency slot while people decide. Run locally, the action
subflows are gathered concurrently in-process.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Literal

from prefect.context import FlowRunContext
from prefect.deployments import arun_deployment
from prefect.logging import get_run_logger
from pydantic import BaseModel, Field

from core.records import ActionStatus
from core.vetting import ProposedAction

DispatchMode = Literal["auto", "deployment", "inline", "none"]


class DispatchResult(BaseModel):
    dispatched: dict[str, str] = Field(default_factory=dict, description="action id → run id")
    errors: dict[str, str] = Field(default_factory=dict)
    results: dict[str, Any] = Field(default_factory=dict)


def _parameters(action: ProposedAction, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "action": action.model_dump(mode="json"),
        "policy": options.get("policy") or {},
        "blocks": options.get("blocks") or {},
        "settings": options.get("settings") or {},
    }


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
        for a in actions:
            try:
                run = await arun_deployment(
                    deployment,
                    parameters=_parameters(a, options),
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
