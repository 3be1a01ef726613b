"""Operator controls over the whole sandbox: the kill switch (an approved launch stopped,
pending approvals answered, cycles paused and resumed), a maintenance window, the
dead-man's switch (once on, once off), the self-metrics file and artifact, a real
Pushgateway."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import ArtifactSort
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from core.analysis import ModelAction
from core.deadman import heartbeat_detail
from core.models import CheckName, Issue, Severity
from core.policy import Policy
from core.records import ActionStatus, ApprovalRequest
from core.report import CycleOutcome
from core.selfmetrics import LedgerFacts, build_metrics, render_text
from core.settings import OperatorSettings
from core.vetting import ProposedAction
from flows.remediation_cycle import remediation_cycle
from flows.retention import prune_ledger
from flows.watchdog import remediation_watchdog
from sandbox.http import free_port
from tasks.controls import set_kill_switch
from tasks.selfmetrics import push_metrics
from tests.core.factories import vet
from tests.fixtures.loki_discord import CHANNEL_ID
from tests.fixtures.stack import FAST_POLICY, FAST_SETTINGS, Stack
from tests.flows.helpers import approval_messages, eventually, listener, titles

FP = "web-02|failed_unit|nginx.service"
NGINX_FAILED = 'node_systemd_unit_state{instance="web-02",name="nginx.service",state="failed"} == 1'
CYCLE_SILENT, CYCLE_BACK = "💀 Remediation cycle silent", "✅ Remediation cycle running again"
LISTENER_SILENT = "💀 Approval listener silent"
LISTENER_BACK = "✅ Approval listener polling again"
SERIES = {  # every series issue 12 lists, by name
    "remediation_cycle_issues_found",
    "remediation_cycle_issues_dropped",
    "remediation_cycle_actions_proposed",
    "remediation_cycle_actions_rejected",
    "remediation_approvals",
    "remediation_approval_latency_seconds",
    "remediation_jobs",
    "remediation_job_duration_seconds",
    "remediation_verdicts",
    "remediation_cycle_claude_tokens",
    "remediation_cycle_claude_cost_usd",
    "remediation_cycle_duration_seconds",
    "remediation_listener_lag_seconds",
}

Switch = Callable[[bool], Awaitable[None]]


@pytest.fixture
async def kill_switch(prefect_harness: str) -> AsyncIterator[Switch]:
    """The real Prefect Variable; always off again after the test (the server is shared)."""
    await set_kill_switch(False)
    try:
        yield set_kill_switch
    finally:
        await set_kill_switch(False)


def count(stack: Stack, title: str) -> int:
    return sum(t.startswith(title) for t in titles(stack))


def message(stack: Stack, title: str) -> Any:
    return next(
        m
        for m in stack.discord.messages(CHANNEL_ID)
        if m.embeds and (m.embeds[0].get("title") or "").startswith(title)
    )


def proposal(host: str, unit: str) -> ProposedAction:
    """A real vetted action (core.vetting builds it)."""
    policy = Policy()
    found = Issue(
        host=host,
        check=CheckName.FAILED_UNIT,
        subject=unit,
        severity=Severity.CRITICAL,
        observed_at=datetime.now(UTC),
    )
    [p] = vet(
        [ModelAction(catalog_key="restart_unit", host=host, risk="low", parameters={"unit": unit})],
        [found],
        policy,
        cycle_id="other-cycle",
        now=datetime.now(UTC),
    ).approved
    return p


async def break_nginx(stack: Stack) -> None:
    stack.fleet.patch("web-02", {"units": {"nginx.service": {"state": "failed"}}})
    await stack.scraped(NGINX_FAILED)


def launches(stack: Stack) -> list[Any]:
    return stack.awx.received("POST", stack.awx.launch_path) + stack.semaphore.received(
        "POST", stack.semaphore.launch_path
    )


# --- kill switch ---------------------------------------------------------------------------
async def test_kill_switch_stops_a_launch_already_approved(
    stack: Stack, kill_switch: Switch
) -> None:
    # another job holds web-02's launch slot, so the approved action waits just before launching
    blocker = proposal("web-02", "cron.service")
    async with stack.ledger() as ledger:
        await ledger.actions.record_actions([blocker], now=datetime.now(UTC))
        assert (
            await ledger.jobs.claim_launch(
                action_id=blocker.action_id,
                host="web-02",
                runner="awx",
                template="10",
                marker=blocker.action_id,
                max_running=5,
                now=datetime.now(UTC),
            )
            == "claimed"
        )
    await break_nginx(stack)
    async with listener(stack):
        cycle = asyncio.create_task(
            remediation_cycle(
                policy=FAST_POLICY,
                blocks=stack.names,
                dispatch="inline",
                dispatch_options={"settings": FAST_SETTINGS},
            )
        )
        [request] = await eventually(lambda: approval_messages(stack), what="approval request")
        stack.discord.react(CHANNEL_ID, request.id, "✅", "alice")
        await eventually(
            lambda: count(stack, "⏳ Waiting: restart_unit on web-02"),
            what="the approved action waiting for its slot",
        )
        await kill_switch(True)  # approved, not launched yet: now the switch goes on
        async with stack.ledger() as ledger:
            await ledger.jobs.record_job_state(
                blocker.action_id, state="successful", finished=True, now=datetime.now(UTC)
            )
        report = await asyncio.wait_for(cycle, timeout=120)
    [action] = report.actions
    assert action.dispatched
    assert launches(stack) == []  # the runners never received a launch
    async with stack.ledger() as ledger:
        record = await ledger.actions.get_action(action.action_id)
    assert record.decision.decision == "approve" and record.decision.decider == "alice"
    assert record.status is ActionStatus.NOT_RUN
    assert record.job.state == "not_launched" and record.job.job_id is None
    stopped = message(stack, "⛔ Paused by operator: restart_unit")
    assert "Paused by operator (kill switch): nothing launched." in stopped.embeds[0]["description"]


async def test_pending_approvals_are_answered_paused_by_operator(
    stack: Stack, kill_switch: Switch
) -> None:
    await break_nginx(stack)
    cycle = asyncio.create_task(
        remediation_cycle(
            policy=FAST_POLICY,
            blocks=stack.names,
            dispatch="inline",
            dispatch_options={"settings": FAST_SETTINGS},
        )
    )
    [request] = await eventually(lambda: approval_messages(stack), what="approval request")
    stack.discord.react(CHANNEL_ID, request.id, "✅", "alice")  # nobody reads it yet
    await kill_switch(True)
    async with listener(stack):
        report = await asyncio.wait_for(cycle, timeout=120)
    [action] = report.actions
    async with stack.ledger() as ledger:
        record = await ledger.actions.get_action(action.action_id)
    decision = record.decision
    assert (decision.decision, decision.via, decision.comment) == (
        "reject",
        "operator",
        "paused by operator",
    )
    assert decision.applied_at is not None
    assert record.status is ActionStatus.REJECTED
    assert launches(stack) == []
    async with get_client() as client:
        run = await client.read_flow_run(record.flow_run_id)
    assert run.state.type is StateType.COMPLETED  # ended cleanly, not failed or crashed
    answered = message(stack, "⛔ Paused by operator: 1 pending approval(s) answered")
    assert "restart_unit` on web-02" in answered.embeds[0]["description"]
    rejected = message(stack, "❌ Rejected: restart_unit on web-02")
    assert "paused by operator" in rejected.embeds[0]["description"]
    assert "paused by operator" in stack.discord.message(CHANNEL_ID, request.id).content
    assert count(stack, "⛔ Remediation paused by operator") == 1


async def test_paused_cycles_propose_nothing_and_resume_when_switched_off(
    stack: Stack, kill_switch: Switch
) -> None:
    await kill_switch(True)
    await break_nginx(stack)
    for _ in range(2):
        paused = await remediation_cycle(policy=FAST_POLICY, blocks=stack.names, dispatch="none")
        assert paused.outcome is CycleOutcome.PAUSED_BY_OPERATOR
        assert paused.new_issues == [FP] and paused.reported == []  # detected, not reported
    assert stack.anthropic.message_bodies() == []  # nothing analysed, nothing proposed
    assert count(stack, "⛔ Remediation paused by operator") == 1  # the transition, once
    await kill_switch(False)
    resumed = await remediation_cycle(policy=FAST_POLICY, blocks=stack.names, dispatch="none")
    assert resumed.outcome is CycleOutcome.ACTIONS
    assert resumed.new_issues == [FP]
    [action] = resumed.actions
    assert (action.catalog_key, action.policy) == ("restart_unit", "allowed")
    assert len(stack.anthropic.message_bodies()) == 1
    assert count(stack, "▶️ Remediation resumed") == 1


# --- maintenance window and self-metrics -------------------------------------------------------
async def test_maintenance_window_reports_issues_without_actions_and_metrics_say_so(
    stack: Stack, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    window = {
        "name": "patching",
        "hosts": ["web-02"],
        "start": (now - timedelta(hours=1)).isoformat(),
        "end": (now + timedelta(hours=1)).isoformat(),
    }
    textfile = tmp_path / "textfile" / "remediation.prom"
    await break_nginx(stack)
    report = await remediation_cycle(
        policy={**FAST_POLICY, "maintenance": [window]},
        blocks=stack.names,
        dispatch="inline",
        dispatch_options={"settings": FAST_SETTINGS},
        controls=OperatorSettings(metrics_textfile=str(textfile)),
    )
    assert report.outcome is CycleOutcome.MANUAL_ONLY
    assert FP in report.new_issues and FP in report.reported  # the issue is reported
    [action] = report.actions
    assert action.policy == "host 'web-02' is in maintenance window 'patching'"
    assert not action.dispatched
    assert any("maintenance window 'patching'" in n for n in report.notices), report.notices
    assert approval_messages(stack) == [] and launches(stack) == []
    manual = message(stack, "📋 1 issue(s) need a human")
    assert "maintenance window 'patching'" in manual.embeds[0]["fields"][0]["value"]

    families = {f.name: f for f in text_string_to_metric_families(textfile.read_text())}
    assert set(families) >= SERIES, SERIES - set(families)
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert values[("remediation_cycle_actions_rejected", (("reason", "maintenance"),))] == 1
    assert values[("remediation_cycle_issues_found", ())] >= 1
    assert values[("remediation_cycle_outcome", (("outcome", "manual_only"),))] == 1
    assert values[("remediation_cycle_claude_tokens", (("kind", "input"),))] > 0
    assert [p.name for p in textfile.parent.iterdir()] == ["remediation.prom"]  # no temp left

    async with get_client() as client:
        [artifact] = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["remediation-self-metrics"])
            ),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert artifact.type == "table" and str(artifact.flow_run_id) == report.cycle_id
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert {
        "metric": "remediation_cycle_actions_rejected",
        "labels": "reason=maintenance",
        "value": 1,
    } in rows


# --- dead-man's switch ---------------------------------------------------------------------
async def test_dead_mans_switch_for_the_cycle_fires_once_and_clears_once(stack: Stack) -> None:
    now = datetime.now(UTC)
    async with stack.ledger() as ledger:  # the last cycle completed 200 s ago, every 15 min
        await ledger.operations.heartbeat(
            "cycle",
            now=now - timedelta(seconds=200),
            detail=heartbeat_detail(1800),
        )
    assert (await remediation_watchdog(blocks=stack.names))["cycle"] is False
    assert count(stack, CYCLE_SILENT) == 0
    # with a 60 s schedule interval, 200 s without a cycle is more than twice too long
    assert (await remediation_watchdog(blocks=stack.names, cycle_interval_seconds=60))["cycle"]
    assert (await remediation_watchdog(blocks=stack.names, cycle_interval_seconds=60))["cycle"]
    async with listener(stack):  # the listener checks too (with the declared 30 min)
        await eventually(lambda: _beat_after(stack, "listener", now), what="a listener poll")
    assert count(stack, CYCLE_SILENT) == 1 and count(stack, CYCLE_BACK) == 0
    assert "(Noticed by the watchdog.)" in message(stack, CYCLE_SILENT).embeds[0]["description"]

    report = await remediation_cycle(
        policy=FAST_POLICY,
        blocks=stack.names,
        dispatch="none",
        controls=OperatorSettings(cycle_interval_seconds=60),
    )
    assert report.outcome is CycleOutcome.NO_ISSUES
    assert not (await remediation_watchdog(blocks=stack.names, cycle_interval_seconds=60))["cycle"]
    async with stack.ledger() as ledger:
        assert (await ledger.operations.alert_state("dead-mans-switch-cycle"))[0] is False
    assert count(stack, CYCLE_SILENT) == 1 and count(stack, CYCLE_BACK) == 1


async def _beat_after(stack: Stack, component: str, after: datetime) -> bool:
    async with stack.ledger() as ledger:
        beat = await ledger.operations.last_heartbeat(component)
    return beat is not None and beat > after


async def test_dead_mans_switch_for_the_listener_only_while_approvals_wait(stack: Stack) -> None:
    now = datetime.now(UTC)
    async with stack.ledger() as ledger:
        await ledger.operations.heartbeat("listener", now=now - timedelta(seconds=300))
    assert (await remediation_watchdog(blocks=stack.names))["listener"] is False  # none wait
    pending = proposal("web-04", "nginx.service")
    async with stack.ledger() as ledger:
        await ledger.actions.record_actions([pending], now=now)
        await ledger.actions.record_approval_request(
            ApprovalRequest(
                action_id=pending.action_id,
                channel_id=CHANNEL_ID,
                message_id=None,
                flow_run_id="00000000-0000-4000-8000-000000000000",
                risk=pending.risk,
                deadline=now + timedelta(hours=1),
                policy_hash=pending.policy_hash,
                requested_at=now,
            )
        )
    # the cycle is the next component to notice; the watchdog agrees and posts nothing more
    await remediation_cycle(policy=FAST_POLICY, blocks=stack.names, dispatch="none")
    assert (await remediation_watchdog(blocks=stack.names))["listener"] is True
    assert count(stack, LISTENER_SILENT) == 1
    assert "(Noticed by the cycle.)" in message(stack, LISTENER_SILENT).embeds[0]["description"]
    async with listener(stack):
        await eventually(lambda: count(stack, LISTENER_BACK), what="the recovery notice")
    assert (await remediation_watchdog(blocks=stack.names))["listener"] is False
    assert count(stack, LISTENER_SILENT) == 1 and count(stack, LISTENER_BACK) == 1


# --- settings and a real Pushgateway -----------------------------------------------------------
def test_operator_settings_refuse_a_bad_textfile_or_credentials_in_the_url() -> None:
    with pytest.raises(ValidationError, match="only reads"):
        OperatorSettings(metrics_textfile="/var/lib/node_exporter/remediation.txt")
    with pytest.raises(ValidationError, match="no credentials"):
        OperatorSettings(pushgateway_url="http://user:secret@pushgateway:9091")
    assert OperatorSettings(pushgateway_url="http://pushgateway:9091").pushgateway_url


@pytest.fixture(scope="module")
def pushgateway() -> Iterator[str]:
    """Debian's prometheus-pushgateway on a free loopback port."""
    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        pytest.fail("prometheus-pushgateway is not installed: `make test` installs it")
    url = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [binary, f"--web.listen-address={url.removeprefix('http://')}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("pushgateway did not start")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_push_replaces_the_group_on_a_real_pushgateway(pushgateway: str) -> None:
    now = datetime.now(UTC)
    facts = LedgerFacts(
        window_seconds=60, pending_approvals=4, heartbeats={"listener": now - timedelta(seconds=3)}
    )
    await push_metrics.fn(
        pushgateway,
        "prefect_remediation",
        render_text(build_metrics(None, facts, now=now, kill_switch=True)),
    )
    facts = facts.model_copy(update={"pending_approvals": 1, "heartbeats": {}})
    await push_metrics.fn(
        pushgateway,
        "prefect_remediation",
        render_text(build_metrics(None, facts, now=now, kill_switch=True)),
    )
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{pushgateway}/metrics")).text
    samples = {
        s.name: s
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.startswith("remediation_")
    }
    assert samples["remediation_approvals_pending"].value == 1
    assert samples["remediation_approvals_pending"].labels["job"] == "prefect_remediation"
    assert samples["remediation_kill_switch_engaged"].value == 1
    # PUT replaced the whole group: the listener's heartbeat series is gone
    assert "remediation_heartbeat_timestamp_seconds" not in samples


# --- retention and parameters ------------------------------------------------------------------
async def test_prune_ledger_flow_never_cuts_into_the_attempt_window(stack: Stack) -> None:
    now = datetime.now(UTC)
    async with stack.ledger() as ledger:
        for age in (timedelta(days=40), timedelta(hours=12)):
            await ledger.operations.record_audit("note", {}, now=now - age)
            await ledger.episodes.record_attempt(
                action_id=f"act-{age.total_seconds():.0f}",
                fingerprints=[FP],
                host="web-02",
                catalog_key="restart_unit",
                outcome="ineffective",
                counts=True,
                explanation="",
                now=now - age,
            )
    # six hours asked for, but the policy's attempt window (24 h) is kept whatever
    deleted = await prune_ledger(older_than_days=0.25, policy=FAST_POLICY, blocks=stack.names)
    assert (deleted["audit"], deleted["attempts"]) == (1, 1)
    async with stack.ledger() as ledger:
        [kept] = (await ledger.episodes.attempt_history([FP], since=now - timedelta(days=365)))[FP]
    assert abs((kept.at - (now - timedelta(hours=12))).total_seconds()) < 0.01
    async with get_client() as client:
        [artifact] = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["remediation-ledger-prune"])
            ),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert artifact.type == "table"


def test_operator_flow_parameters_validate_as_deployed_runs_do() -> None:
    cycle = remediation_cycle.validate_parameters(
        {"controls": {"cycle_interval_seconds": 300, "metrics_textfile": "/srv/r.prom"}}
    )
    assert cycle["controls"].cycle_interval_seconds == 300
    watchdog = remediation_watchdog.validate_parameters({"cycle_interval_seconds": 60})
    assert watchdog["cycle_interval_seconds"] == 60
    prune = prune_ledger.validate_parameters({"older_than_days": 7, "policy": {}})
    assert prune["older_than_days"] == 7
