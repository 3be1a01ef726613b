"""Self-metrics: built from a cycle report and ledger facts, parsed back with
prometheus_client's parser and linted by promtool."""

from __future__ import annotations

import math
import shutil
import subprocess
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.analysis import ModelAction
from core.models import CheckName
from core.policy import MaintenanceWindow, Policy, policy_hash
from core.report import ActionOutcome, CycleOutcome, CycleReport
from core.selfmetrics import (
    ApprovalFact,
    JobFact,
    LedgerFacts,
    build_metrics,
    quantile,
    rejection_reason,
    render_text,
    table_rows,
)
from core.vetting import AttemptRecord, vet_actions
from core.wire import TokenUsage
from tests.core.factories import NOW, action, issue

# Every series the issue lists, by the name a user alerts on.
LISTED = {
    "remediation_cycle_issues_found",  # issues found
    "remediation_cycle_issues_dropped",  # ... and dropped
    "remediation_cycle_actions_proposed",  # actions proposed
    "remediation_cycle_actions_rejected",  # ... and rejected by policy, by reason
    "remediation_approvals",  # approvals by outcome
    "remediation_approval_latency_seconds",  # ... and latency
    "remediation_jobs",  # jobs by state
    "remediation_job_duration_seconds",  # ... and duration
    "remediation_verdicts",
    "remediation_cycle_claude_tokens",  # input/output/cached
    "remediation_cycle_claude_cost_usd",
    "remediation_recent_claude_tokens",
    "remediation_recent_claude_cost_usd",
    "remediation_cycle_duration_seconds",
    "remediation_listener_lag_seconds",
}


def _rejections() -> list[str]:
    """Real rejection texts from core.vetting, one per reason."""
    fp = "web-02|failed_unit|nginx.service"
    policy = Policy(
        protected_hosts=["db-01"],
        maintenance=[
            MaintenanceWindow(
                name="patching",
                hosts=["web-03"],
                start=(NOW - timedelta(hours=1)).isoformat(),
                end=(NOW + timedelta(hours=1)).isoformat(),
            )
        ],
    )
    issues = [
        issue(),
        issue("web-03"),
        issue("db-01", CheckName.DISK, "/var", value=97.0),
        issue("web-04"),
    ]

    def vet(acts, history=None):
        return vet_actions(
            [ModelAction.model_validate(a) for a in acts],
            issues,
            policy=policy,
            policy_hash=policy_hash(policy),
            history=history or {},
            pending_approvals=0,
            cycle_id="c1",
            now=NOW,
        ).rejected

    cooldown = {
        fp: [AttemptRecord(at=NOW - timedelta(minutes=5), outcome="effective", counts=False)]
    }
    return [
        r.reason
        for r in [
            *vet([action("no_such_entry")]),
            *vet([action(host="web-99")]),
            *vet([action(host="db-01")]),
            *vet([action(host="web-03")]),
            *vet([action(), action()]),
            *vet([action(unit="ssh.service")]),
            *vet([action()], history=cooldown),
        ]
    ]


def test_policy_rejection_texts_fold_into_known_reasons() -> None:
    reasons = _rejections()
    labels = [rejection_reason(r) for r in reasons]
    assert labels[:5] == [
        "unknown_catalog_key",
        "no_current_issue",
        "protected_host",
        "maintenance",
        "duplicate",
    ], list(zip(reasons, labels, strict=True))
    assert "other" not in labels, list(zip(reasons, labels, strict=True))
    assert labels[-1] == "cooldown"
    assert rejection_reason("something new") == "other"


def _report() -> CycleReport:
    start = NOW - timedelta(seconds=42)
    return CycleReport(
        cycle_id="c1",
        started_at=start,
        finished_at=NOW,
        outcome=CycleOutcome.ACTIONS,
        issues=[issue(), issue("web-03"), issue("db-01", CheckName.DISK, "/var", value=97.0)],
        new_issues=["web-02|failed_unit|nginx.service", "web-03|failed_unit|nginx.service"],
        dropped={"reported within TTL": 1},
        actions=[
            ActionOutcome(catalog_key="restart_unit", host="web-02", risk="low",
                          policy="allowed", action_id="a1", dispatched=True),
            ActionOutcome(catalog_key="restart_unit", host="web-03", risk="low",
                          policy="host 'web-03' is in maintenance window 'patching'"),
            ActionOutcome(catalog_key="x", host="web-03", risk="low",
                          policy="unknown catalog key 'x'"),
        ],
        manual_issues=2,
        usage=TokenUsage(input_tokens=1200, output_tokens=300, cache_read_input_tokens=900,
                         cache_creation_input_tokens=50),
        cost_usd=0.0123,
        stage_seconds={"detect": 0.8, "analysis": 3.5},
    )  # fmt: skip


def _facts() -> LedgerFacts:
    return LedgerFacts(
        window_seconds=86400,
        approvals=[
            ApprovalFact(outcome="approved", via="discord", latency_seconds=30),
            ApprovalFact(outcome="approved", via="discord", latency_seconds=90),
            ApprovalFact(outcome="rejected", via="operator", latency_seconds=10),
            ApprovalFact(outcome="expired", via="timeout"),
        ],
        pending_approvals=3,
        jobs=[JobFact(state="successful", duration_seconds=20), JobFact(state="timeout")],
        running_jobs=1,
        verdicts={"effective": 2, "ineffective": 1},
        cycles=96,
        usage=TokenUsage(input_tokens=50_000, output_tokens=9_000),
        cost_usd=1.5,
        heartbeats={"cycle": NOW - timedelta(seconds=5), "listener": NOW - timedelta(seconds=7)},
        alerts={"dead-mans-switch-listener": True, "kill-switch": False},
    )


def _parsed(text: str) -> dict[str, dict[tuple, float]]:
    out: dict[str, dict[tuple, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_text_parses_with_prometheus_client_and_carries_every_listed_series() -> None:
    text = render_text(build_metrics(_report(), _facts(), now=NOW, kill_switch=True))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(families) >= LISTED, LISTED - set(families)
    m = _parsed(text)
    assert m["remediation_cycle_issues_found"][()] == 3
    assert m["remediation_cycle_issues_new"][()] == 2
    assert m["remediation_cycle_issues_dropped"][(("reason", "reported_within_ttl"),)] == 1
    assert m["remediation_cycle_issues_dropped"][(("reason", "action_in_flight"),)] == 0
    assert m["remediation_cycle_actions_proposed"][()] == 3
    rejected = m["remediation_cycle_actions_rejected"]
    assert rejected[(("reason", "maintenance"),)] == 1
    assert rejected[(("reason", "unknown_catalog_key"),)] == 1
    assert rejected[(("reason", "cooldown"),)] == 0  # known reasons always present
    assert m["remediation_cycle_actions_dispatched"][()] == 1
    assert m["remediation_cycle_outcome"][(("outcome", "actions"),)] == 1
    assert m["remediation_cycle_outcome"][(("outcome", "no_issues"),)] == 0
    assert m["remediation_cycle_duration_seconds"][()] == 42
    tokens = m["remediation_cycle_claude_tokens"]
    assert [tokens[(("kind", k),)] for k in ("input", "output", "cache_read", "cache_write")] == [
        1200, 300, 900, 50]  # fmt: skip
    assert m["remediation_cycle_claude_cost_usd"][()] == pytest.approx(0.0123)
    assert m["remediation_recent_claude_cost_usd"][()] == 1.5
    approvals = m["remediation_approvals"]
    assert approvals[(("outcome", "approved"), ("via", "discord"))] == 2
    assert approvals[(("outcome", "rejected"), ("via", "operator"))] == 1
    assert approvals[(("outcome", "expired"), ("via", "timeout"))] == 1
    assert approvals[(("outcome", "approved"), ("via", "ui"))] == 0
    assert families["remediation_approval_latency_seconds"].type == "summary"
    latency = m["remediation_approval_latency_seconds"]
    assert latency[(("quantile", "0.5"),)] == 30
    assert latency[(("quantile", "0.99"),)] == 90
    assert m["remediation_approval_latency_seconds_count"][()] == 3
    assert m["remediation_approval_latency_seconds_sum"][()] == 130
    jobs = m["remediation_jobs"]
    assert (jobs[(("state", "successful"),)], jobs[(("state", "timeout"),)]) == (1, 1)
    assert jobs[(("state", "running"),)] == 1
    assert m["remediation_job_duration_seconds_count"][()] == 1
    assert m["remediation_verdicts"][(("verdict", "effective"),)] == 2
    assert m["remediation_verdicts"][(("verdict", "inconclusive"),)] == 0
    assert m["remediation_listener_lag_seconds"][()] == 7
    assert m["remediation_approvals_pending"][()] == 3
    assert m["remediation_kill_switch_engaged"][()] == 1
    assert m["remediation_alert_firing"][(("alert", "dead-mans-switch-listener"),)] == 1
    assert m["remediation_heartbeat_timestamp_seconds"][(("component", "cycle"),)] == (
        NOW - timedelta(seconds=5)).timestamp()  # fmt: skip


def test_empty_window_is_valid_and_nan_quantiles() -> None:
    facts = LedgerFacts(window_seconds=3600)
    text = render_text(build_metrics(None, facts, now=NOW, kill_switch=False))
    m = _parsed(text)
    assert math.isnan(m["remediation_approval_latency_seconds"][(("quantile", "0.5"),)])
    assert m["remediation_approval_latency_seconds_count"][()] == 0
    assert math.isnan(m["remediation_listener_lag_seconds"][()])  # never polled: unknown
    assert not any(name.startswith("remediation_cycle_") for name in m)
    rows = table_rows(build_metrics(None, facts, now=NOW, kill_switch=False))
    assert {"metric": "remediation_approval_latency_seconds", "labels": "quantile=0.5",
            "value": None} in rows  # fmt: skip


def test_label_values_are_escaped() -> None:
    facts = LedgerFacts(window_seconds=60, verdicts={'odd "verdict"\\\nx': 1})
    m = _parsed(render_text(build_metrics(None, facts, now=NOW, kill_switch=False)))
    assert m["remediation_verdicts"][(("verdict", 'odd "verdict"\\\nx'),)] == 1


def test_promtool_accepts_the_text() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: `make test` installs Debian's prometheus")
    text = render_text(build_metrics(_report(), _facts(), now=NOW, kill_switch=False))
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stderr.decode() + done.stdout.decode()


def test_quantile_nearest_rank() -> None:
    assert quantile([5, 1, 3], 0.5) == 3
    assert quantile([5, 1, 3], 0.99) == 5
    assert quantile([7], 0.9) == 7
    assert math.isnan(quantile([], 0.5))
