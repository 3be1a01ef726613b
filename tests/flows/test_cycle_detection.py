"""The remediation cycle's Stage 1-2 over the real Prometheus and the sandbox servers."""

from __future__ import annotations

import asyncio
import time

from core.report import CycleOutcome
from flows.remediation_cycle import remediation_cycle
from sandbox.anthropic import tool_answer
from tests.fixtures.loki_discord import CHANNEL_ID
from tests.fixtures.stack import FAST_POLICY, Stack


async def wait_for_issue(stack: Stack, predicate, timeout: float = 20.0):
    """Run cycles (dispatch none) until the report satisfies `predicate`."""
    deadline = time.monotonic() + timeout
    while True:
        report = await remediation_cycle(policy=FAST_POLICY, blocks=stack.names, dispatch="none")
        if predicate(report) or time.monotonic() > deadline:
            return report
        await asyncio.sleep(1.0)


async def test_no_issues(stack: Stack) -> None:
    report = await remediation_cycle(policy=FAST_POLICY, blocks=stack.names, dispatch="none")
    assert report.outcome is CycleOutcome.NO_ISSUES
    assert report.issues == []
    assert stack.discord.messages(CHANNEL_ID) == []
    assert stack.anthropic.message_bodies() == []


async def test_failed_unit_is_analysed_with_logs_and_deduped(stack: Stack) -> None:
    stack.fleet.patch("web-02", {"units": {"nginx.service": {"state": "failed"}}})
    report = await wait_for_issue(stack, lambda r: r.new_issues)
    assert report.new_issues == ["web-02|failed_unit|nginx.service"]
    [action] = report.actions
    assert (action.catalog_key, action.host, action.policy) == ("restart_unit", "web-02", "allowed")
    [body] = stack.anthropic.message_bodies()
    prompt = body["messages"][0]["content"][1]["text"]
    assert "web-02|failed_unit|nginx.service" in prompt
    assert "Failed with result" in prompt.split("<logs")[1]  # journal lines from Loki
    # nothing was dispatched, so nothing was reported: the next cycle asks again
    again = await remediation_cycle(policy=FAST_POLICY, blocks=stack.names, dispatch="none")
    assert again.new_issues == ["web-02|failed_unit|nginx.service"], (again.dropped, again.outcome)
    assert len(stack.anthropic.message_bodies()) == 2


async def test_manual_only_posts_once_then_dedups(stack: Stack) -> None:
    stack.fleet.patch("db-01", {"mounts": {"/var": {"used_pct": 97}}})
    stack.anthropic.enqueue(
        tool_answer(
            "submit_analysis",
            {
                "summary": "disk nearly full",
                "actions": [],
                "manual_issues": [
                    {
                        "host": "db-01",
                        "problem": "/var at 97 %",
                        "severity": "critical",
                        "recommendation": "grow the volume",
                    }
                ],
            },
        )
    )
    report = await wait_for_issue(stack, lambda r: r.new_issues)
    assert report.outcome is CycleOutcome.MANUAL_ONLY
    [message] = stack.discord.messages(CHANNEL_ID)
    assert "need a human" in message.embeds[0]["title"]
    assert "/var at 97 %" in message.embeds[0]["fields"][0]["value"]
    again = await remediation_cycle(policy=FAST_POLICY, blocks=stack.names, dispatch="none")
    assert again.outcome is CycleOutcome.ALL_CACHED
    assert again.dropped == {"reported within TTL": 1}
    assert len(stack.discord.messages(CHANNEL_ID)) == 1
