"""Small builders for core tests (plain data, no project logic re-implemented)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from core.analysis import ModelAction
from core.models import CheckName, Issue, Severity
from core.policy import Policy, policy_hash
from core.records import ApprovalRequest
from core.verify import Recheck, Verification
from core.vetting import ProposedAction, Vetting, vet_actions
from core.wire import ClaudeReply, TextContent, TokenUsage, ToolUseContent

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def issue(
    host: str = "web-02",
    check: CheckName = CheckName.FAILED_UNIT,
    subject: str = "nginx.service",
    severity: Severity = Severity.CRITICAL,
    value: float | None = 1.0,
    labels: dict[str, str] | None = None,
) -> Issue:
    return Issue(
        host=host,
        check=check,
        subject=subject,
        severity=severity,
        value=value,
        threshold=1.0,
        labels=labels or {"instance": host},
        observed_at=NOW,
        summary=f"{check.value} {subject} on {host}",
    )


def vet(
    actions: Iterable[ModelAction | dict[str, Any]],
    issues: list[Issue],
    policy: Policy | None = None,
    *,
    cycle_id: str = "c1",
    now: datetime = NOW,
) -> Vetting:
    """core.vetting.vet_actions with no history and no pending approvals; `policy` defaults
    to Policy(), dicts are read as ModelAction."""
    policy = Policy() if policy is None else policy
    return vet_actions(
        [a if isinstance(a, ModelAction) else ModelAction.model_validate(a) for a in actions],
        issues,
        policy=policy,
        policy_hash=policy_hash(policy),
        history={},
        pending_approvals=0,
        cycle_id=cycle_id,
        now=now,
    )


def approval_request(
    a: ProposedAction, deadline: datetime, requested_at: datetime = NOW
) -> ApprovalRequest:
    """The approval request for `a`, posted as message 2 in channel 1 by flow run "fr"."""
    return ApprovalRequest(
        action_id=a.action_id,
        channel_id="1",
        message_id="2",
        flow_run_id="fr",
        risk=a.risk,
        deadline=deadline,
        policy_hash=a.policy_hash,
        requested_at=requested_at,
    )


def unit_recheck(still_breaching: bool, value: float, data_points: int = 3) -> Recheck:
    """The re-check of issue()'s failed nginx.service (1 before the job): now `value`."""
    return Recheck(
        fingerprint=issue().fingerprint,
        check="failed_unit",
        subject="nginx.service",
        still_breaching=still_breaching,
        before=1,
        value=value,
        data_points=data_points,
        detail=f"now {value}",
    )


def verification(verdict: str, recheck: Recheck, **fields: Any) -> Verification:
    """A verification explained "why" that took one second from NOW."""
    return Verification(
        verdict=verdict,
        explanation="why",
        recheck=recheck,
        started_at=NOW,
        finished_at=NOW + timedelta(seconds=1),
        **fields,
    )


def tool_reply(data: Any, stop_reason: str = "tool_use") -> ClaudeReply:
    return ClaudeReply(
        model="m",
        stop_reason=stop_reason,
        usage=TokenUsage(input_tokens=10),
        content=[ToolUseContent(id="t1", name="submit_analysis", input=data)],
    )


def text_reply(text: str, stop_reason: str = "end_turn") -> ClaudeReply:
    return ClaudeReply(
        model="m", stop_reason=stop_reason, usage=TokenUsage(), content=[TextContent(text=text)]
    )


def action(
    key: str = "restart_unit", host: str = "web-02", risk: str = "low", **params: Any
) -> dict[str, Any]:
    return {
        "catalog_key": key,
        "host": host,
        "parameters": params or {"unit": "nginx.service"},
        "risk": risk,
        "reason": "unit failed",
        "expected_outcome": "unit active",
        "fingerprints": [],
    }
