"""Every flow's parameters validate the way a deployed run validates them (from the
annotations at run time: string annotations would not resolve)."""

from __future__ import annotations

import pytest
from prefect import Flow

from flows.approval_listener import approval_listener
from flows.remediate_action import remediate_action
from flows.reconciler import reconcile_actions
from flows.remediation_cycle import remediation_cycle
from flows.retention import prune_ledger
from flows.watchdog import remediation_watchdog
from tests.flows.actions import policy_with, proposal

FLOWS: list[tuple[Flow, dict]] = [
    (remediation_cycle, {"policy": {}, "blocks": {"prometheus": "p"}, "dispatch": "none"}),
    (approval_listener, {"settings": {"poll_seconds": 2, "run_seconds": 10}}),
    (remediation_watchdog, {"blocks": {"discord": "d"}, "cycle_interval_seconds": 900}),
    (reconcile_actions, {"policy": {}, "blocks": {}}),
    (prune_ledger, {"older_than_days": 30, "policy": {}, "blocks": {}}),
]


@pytest.mark.parametrize(("flow", "params"), FLOWS, ids=lambda x: getattr(x, "name", ""))
def test_parameters_validate(flow: Flow, params: dict) -> None:
    validated = flow.validate_parameters(params)
    assert set(params) <= set(validated)


ENTRYPOINTS = [
    "flows/remediation_cycle.py:remediation_cycle",
    "flows/remediate_action.py:remediate_action",
    "flows/approval_listener.py:approval_listener",
    "flows/watchdog.py:remediation_watchdog",
    "flows/reconciler.py:reconcile_actions",
    "flows/retention.py:prune_ledger",
]


@pytest.mark.parametrize("entrypoint", ENTRYPOINTS)
def test_flows_load_from_their_entrypoints_as_a_worker_does(entrypoint: str) -> None:
    """A worker loads the file by path; string annotations would not resolve there."""
    from prefect.flows import load_flow_from_entrypoint

    flow = load_flow_from_entrypoint(entrypoint)
    params = {f.name: p for f, p in FLOWS}.get(flow.name)
    if params is None:  # remediate-action
        policy = policy_with()
        params = {"action": proposal(policy).model_dump(mode="json"), "policy": policy,
                  "blocks": {}, "settings": {}}
    validated = flow.validate_parameters(params)
    assert set(params) <= set(validated)
