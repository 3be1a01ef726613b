"""Building vetted actions for flow tests without running a whole cycle."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType

from core.analysis import ModelAction
from core.models import CheckName, Issue, Severity
from core.policy import load_policy, policy_hash
from core.vetting import ProposedAction, vet_actions
from tests.fixtures.stack import FAST_POLICY

SCRIPTED_TEMPLATE = 30


def policy_with(
    key: str = "noop_fix",
    *,
    min_risk: str = "low",
    template: int = SCRIPTED_TEMPLATE,
    deadline_default_may_run: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """FAST_POLICY plus one catalog entry running the AWX sandbox's scripted template."""
    entry = {
        "key": key,
        "runner": "awx",
        "template_id": template,
        "description": "A scripted sandbox job that fixes nothing by itself.",
        "min_risk": min_risk,
        "addresses": ["failed_unit"],
        "parameters": {"unit": {"pattern": r"[a-z.]+", "from_subject": True}},
        "deadline_default_may_run": deadline_default_may_run,
        "max_job_seconds": 60,
    }
    return {**FAST_POLICY, "catalog": [entry], **overrides}


def failed_unit(host: str = "web-02", unit: str = "nginx.service") -> Issue:
    """The issue a failed unit raises, as Stage 1 reports it."""
    return Issue(
        host=host,
        check=CheckName.FAILED_UNIT,
        subject=unit,
        severity=Severity.CRITICAL,
        value=1.0,
        threshold=1.0,
        operator="==",
        labels={"instance": host, "name": unit},
        observed_at=datetime.now(UTC),
        summary=f"Unit failed: {unit}",
    )


def proposal(
    policy: dict[str, Any],
    *,
    host: str = "web-02",
    unit: str = "nginx.service",
    risk: str = "low",
    cycle_id: str = "cycle-test",
    key: str = "noop_fix",
    reason: str = "unit failed; a restart should fix it",
) -> ProposedAction:
    checked = load_policy(policy)
    issue = failed_unit(host, unit)
    vetted = vet_actions(
        [
            ModelAction(
                catalog_key=key,
                host=host,
                parameters={"unit": unit},
                risk=risk,
                reason=reason,
                expected_outcome=f"{unit} active",
                fingerprints=[issue.fingerprint],
            )
        ],
        [issue],
        policy=checked,
        policy_hash=policy_hash(checked),
        history={},
        pending_approvals=0,
        cycle_id=cycle_id,
        now=datetime.now(UTC),
    )
    assert vetted.approved, vetted.rejected
    return vetted.approved[0]


async def paused_runs(action_id: str | None = None) -> list[FlowRun]:
    async with get_client() as client:
        return await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["remediate-action"])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
                tags=FlowRunFilterTags(all_=[f"action:{action_id}"]) if action_id else None,
            ),
        )


async def resume(run_id: Any, decision: str, comment: str = "") -> str:
    """Resume as the Prefect UI does (POST /flow_runs/{id}/resume); returns the status.

    A run seen PAUSED may not have stored its form yet: Prefect answers REJECT "schema
    not found" until it has (a person would try again). That answer is retried for up to
    30 s; any other is returned."""
    deadline = time.monotonic() + 30
    async with get_client() as client:
        while True:
            answer = await client.resume_flow_run(
                run_id, run_input={"decision": decision, "comment": comment}
            )
            status = str(answer.status.value)
            reason = str(getattr(answer.details, "reason", "") or "")
            if status != "REJECT" or "schema not found" not in reason.lower():
                return status
            if time.monotonic() > deadline:
                return status
            await asyncio.sleep(0.2)
