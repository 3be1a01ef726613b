"""Stage 1 against the real Prometheus: every check, sustained breaches, dedup through the
ledger, clearing, partial failure, Loki enrichment and the degraded paths."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from blocks import LokiConnection, PrometheusConnection
from clients.prometheus import PrometheusClient
from core.checks import DetectionSettings, ThresholdRule, build_queries
from core.detect import CheckAnswer, evaluate
from core.models import CheckName, Severity
from core.report import CycleOutcome
from flows.remediation_cycle import remediation_cycle
from sandbox.anthropic import tool_answer
from sandbox.prometheus import PrometheusServer
from tests.fixtures.loki_discord import CHANNEL_ID
from tests.fixtures.stack import FAST_POLICY, Stack
from tests.flows.helpers import titles

NO_ACTIONS = {
    "summary": "people should look",
    "actions": [],
    "manual_issues": [
        {"host": "db-01", "problem": "see issues", "severity": "critical", "recommendation": "x"}
    ],
}


async def cycle(stack: Stack, policy: dict[str, Any] | None = None):
    return await remediation_cycle(
        policy=policy or FAST_POLICY, blocks=stack.names, dispatch="none"
    )


async def test_scenario_yields_exactly_the_expected_issues_then_dedups(stack: Stack) -> None:
    stack.fleet.apply_scenario(
        {
            "web-01": {
                "cpu_busy_pct": 97,
                "units": {"ssh.service": {"state": "inactive"}},
                "processes": {"java": {"cpu_cores": 1.9, "rss_bytes": 3_000_000_000}},
            },
            "db-01": {
                "mounts": {"/var": {"used_pct": 97}},
                "io_pressure": 0.4,
                "units": {"nginx.service": {"state": "failed"}},
            },
            "web-02": {"down": True},
        }
    )
    expected = {
        "web-01|cpu|-",
        "web-01|inactive_unit|ssh.service",
        "db-01|disk|/var",
        "db-01|io_pressure|-",
        "db-01|failed_unit|nginx.service",
        "web-02|host_down|-",
    }
    # the CPU rule is sustained (6 s in FAST_POLICY): wait until Prometheus agrees that
    # web-01 (not just any host) breaches it
    cpu = build_queries(_settings())["cpu"]
    await stack.scraped(f'({cpu}) and on(instance) up{{instance="web-01"}}', timeout=30)
    await stack.scraped("up == 0")
    stack.anthropic.enqueue(tool_answer("submit_analysis", NO_ACTIONS))
    report = await cycle(stack)
    found = {i.fingerprint for i in report.issues}
    assert found == expected, (report.check_errors, await stack.query(cpu.split(" > ")[0]))
    assert set(report.new_issues) == expected
    assert report.outcome is CycleOutcome.MANUAL_ONLY and set(report.reported) == expected
    prompt = stack.anthropic.message_bodies()[0]["messages"][0]["content"][1]["text"]
    assert '"process": "java"' in prompt  # the hungry process is context for Claude
    again = await cycle(stack)  # within the TTL: nothing new, no Claude call
    assert again.outcome is CycleOutcome.ALL_CACHED and again.new_issues == []
    assert again.dropped == {"reported within TTL": 6}
    assert len(stack.anthropic.message_bodies()) == 1


def _settings() -> DetectionSettings:
    return DetectionSettings.model_validate(FAST_POLICY["detection"])


async def test_cleared_then_recurring_is_reported_again_and_failed_query_clears_nothing(
    stack: Stack,
) -> None:
    failed = 'node_systemd_unit_state{instance="web-02",name="nginx.service",state="failed"}'
    stack.fleet.patch("web-02", {"units": {"nginx.service": {"state": "failed"}}})
    await stack.scraped(f"{failed} == 1")
    stack.anthropic.enqueue(tool_answer("submit_analysis", NO_ACTIONS))
    assert (await cycle(stack)).new_issues == ["web-02|failed_unit|nginx.service"]
    stack.fleet.patch("web-02", {"units": {"nginx.service": {"state": "active"}}})
    await stack.scraped(f"{failed} == 0")
    broken_query = {
        **FAST_POLICY,
        "detection": {**FAST_POLICY["detection"], "queries": {"failed_unit": "node_systemd{"}},
    }
    failing = await cycle(stack, broken_query)
    assert "failed_unit" in failing.check_errors and failing.cleared == []
    async with stack.ledger() as ledger:
        assert [e["fingerprint"] for e in await ledger.episodes.open_episodes()] == [
            "web-02|failed_unit|nginx.service"
        ]
    cleared = await cycle(stack)
    assert cleared.cleared == ["web-02|failed_unit|nginx.service"]
    stack.fleet.patch("web-02", {"units": {"nginx.service": {"state": "failed"}}})
    await stack.scraped(f"{failed} == 1")
    stack.anthropic.enqueue(tool_answer("submit_analysis", NO_ACTIONS))
    recurred = await cycle(stack)
    assert recurred.new_issues == ["web-02|failed_unit|nginx.service"]  # fresh episode


async def test_loki_context_rules_in_the_prompt(stack: Stack) -> None:
    stack.fleet.patch("web-02", {"units": {"nginx.service": {"state": "failed"}}})
    stack.fleet.journal(
        "web-02", "nginx.service", [f"line {i} password=hunter2-{i}" for i in range(40)]
    )
    await stack.scraped('node_systemd_unit_state{instance="web-02",state="failed"} == 1')
    await cycle(stack)
    logs = stack.anthropic.message_bodies()[0]["messages"][0]["content"][1]["text"]
    logs = logs.split("<logs", 1)[1]
    assert "hunter2" not in logs and "[REDACTED]" in logs
    assert "line 39 " in logs and "line 19 " not in logs  # only the newest 20 per stream
    assert len(logs) < 3300  # the context itself is capped at 3,000 characters


async def test_dead_prometheus_alerts_once_and_recovers(stack: Stack) -> None:
    dead = PrometheusConnection(url="http://127.0.0.1:1", timeout_seconds=1)
    await dead.asave(stack.names.prometheus, overwrite=True)
    first = await cycle(stack)
    second = await cycle(stack)
    assert first.outcome is second.outcome is CycleOutcome.PROMETHEUS_UNREACHABLE
    assert len(first.check_errors) == 10
    notices = [t for t in titles(stack) if "Prometheus unreachable" in t]
    assert len(notices) == 1  # once, not every cycle
    await PrometheusConnection(url=stack.prometheus.url).asave(
        stack.names.prometheus, overwrite=True
    )
    assert (await cycle(stack)).outcome is CycleOutcome.NO_ISSUES
    assert [t for t in titles(stack) if "Prometheus reachable again" in t]
    assert stack.anthropic.message_bodies() == []


async def test_dead_loki_gives_explicit_unavailable_context(stack: Stack) -> None:
    await LokiConnection(
        url="http://127.0.0.1:1", timeout_seconds=1, bearer_token=SecretStr("loki-planted-tok")
    ).asave(stack.names.loki, overwrite=True)
    stack.fleet.patch("web-02", {"units": {"nginx.service": {"state": "failed"}}})
    await stack.scraped('node_systemd_unit_state{instance="web-02",state="failed"} == 1')
    report = await cycle(stack)
    assert report.log_status == "unavailable"
    assert any("Loki unavailable" in n for n in report.notices)
    prompt = stack.anthropic.message_bodies()[0]["messages"][0]["content"][1]["text"]
    assert '<logs status="unavailable">' in prompt and "logs unavailable:" in prompt
    assert "loki-planted-tok" not in prompt
    assert report.actions  # the analysis still ran
    assert stack.discord.messages(CHANNEL_ID) == []  # dispatch none: nothing posted


async def test_a_ten_second_spike_is_no_sustained_breach() -> None:
    """Backfilled history: web-01 spikes to 95 % for 10 s at the end; db-01 stays at 97 %
    for the whole window. Only db-01 breaches "CPU > 90 % for 5 minutes"."""
    segments = [(380.0, {"db-01": {"cpu_busy_pct": 97}}), (10.0, {"web-01": {"cpu_busy_pct": 95}})]
    prom = PrometheusServer()
    prom.backfill(segments, hosts=["web-01", "web-02", "db-01"], step=2.0, shard_hosts=3)
    sustained = DetectionSettings(
        rate_window="6s",
        subquery_step="4s",
        rules=(
            ThresholdRule(
                check=CheckName.CPU,
                operator=">",
                threshold=90,
                severity=Severity.WARNING,
                duration="5m",
            ),
        ),
    )
    instant = DetectionSettings(
        rate_window="6s",
        rules=(
            ThresholdRule(
                check=CheckName.CPU, operator=">", threshold=90, severity=Severity.WARNING
            ),
        ),
    )
    with prom:
        at = datetime.fromtimestamp(prom.backfilled_until, UTC)
        async with PrometheusClient(prom.url) as client:
            found = {}
            for name, settings in (("sustained", sustained), ("instant", instant)):
                query = build_queries(settings)["cpu"]
                samples = await client.query(query, time=at)
                answers = {"cpu": CheckAnswer(check="cpu", query=query, samples=samples)}
                found[name] = {i.host for i in evaluate(settings, answers, at).issues}
    assert found["instant"] == {"web-01", "db-01"}  # the spike is visible at that instant
    assert found["sustained"] == {"db-01"}  # but it is not a 5-minute breach
