"""Every flow's parameters validate the way a deployed run validates them (from the
annotations at run time: string annotations would not resolve)."""

from __future__ import annotations

import pytest
from prefect import Flow

from flows.approval_listener import approval_listener
from flows.remediate_action import remediate_action
from flows.remediation_cycle import remediation_cycle
from tests.flows.actions import policy_with, proposal

FLOWS: list[tuple[Flow, dict]] = [
    (remediation_cycle, {"policy": {}, "blocks": {"prometheus": "p"}, "dispatch": "none"}),
    (approval_listener, {"settings": {"poll_seconds": 2, "run_seconds": 10}}),
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
