"""Every flow's parameters validate the way a deployed run validates them (from the
annotations at run time: string annotations would not resolve)."""

from __future__ import annotations

import pytest
from prefect import Flow

from flows.approval_listener import approval_listener
from flows.reconciler import reconcile_actions
from flows.remediate_action import remediate_action
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


def test_remediate_action_parameters_validate() -> None:
    policy = policy_with()
    action = proposal(policy).model_dump(mode="json")
    validated = remediate_action.validate_parameters(
        {"action": action, "policy": policy, "blocks": {}, "settings": {"job_poll_seconds": 1}}
    )
    assert validated["settings"].job_poll_seconds == 1
