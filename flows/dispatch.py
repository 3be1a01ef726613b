"""Dispatching vetted actions from the cycle.

From a deployment, each action is a run of the `remediate_action` deployment
(`tasks.dispatch.start_action_runs`: the cycle ends in seconds and never holds its
concurrency slot while people decide). Run locally, the action subflows are gathered
concurrently in-process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import Any

from prefect.logging import get_run_logger

from core.dispatch import DispatchMode, DispatchResult, action_run_parameters
from core.models import Risk
from core.vetting import ProposedAction
from tasks.dispatch import record_actions, running_from_deployment, start_action_runs
from tasks.ledger import Ledger


async def dispatch_actions(
    actions: list[ProposedAction],
    *,
    mode: DispatchMode,
    options: dict[str, Any],
    ledger: Ledger,
    suspended_risks: Collection[Risk] = (),
) -> DispatchResult:
    """Start one `remediate_action` per action; record each in the ledger first. Actions
    at `suspended_risks` (`wait: suspend`) start as top-level deployment runs: Prefect
    cannot suspend a subflow."""
    if not actions or mode == "none":
        return DispatchResult()
    await record_actions(ledger, actions)
    if mode == "auto":
        mode = "deployment" if running_from_deployment() else "inline"
    if mode == "deployment":
        return await start_action_runs(ledger, actions, options, suspended_risks)
    return await run_inline(actions, options)


async def run_inline(actions: list[ProposedAction], options: dict[str, Any]) -> DispatchResult:
    """Every action as a subflow of this run, all at once; each one's end is its result."""
    from flows.remediate_action import remediate_action

    started = time.perf_counter()
    result = DispatchResult()
    states = await asyncio.gather(
        *(remediate_action(**action_run_parameters(a, options), return_state=True) for a in actions)
    )
    for a, state in zip(actions, states, strict=True):
        result.dispatched[a.action_id] = str(state.state_details.flow_run_id)
        try:
            result.results[a.action_id] = await state.aresult()
        except Exception as exc:  # noqa: BLE001 - an action's failure is its own report
            get_run_logger().warning("action %s ended %s: %s", a.action_id, state.name, exc)
            result.results[a.action_id] = {"status": state.name}
    result.seconds = time.perf_counter() - started
    return result
