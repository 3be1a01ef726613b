"""A cycle whose actions carry non-string parameters asks for approval and posts its
summary (seen: an integer parameter crashed the summary, so nothing was asked or posted).

Real parts throughout: the real Prometheus over the sandbox fleet, the sandbox Anthropic
(scripted answer), Discord and AWX, the real listener, in-process action subflows.
"""

from __future__ import annotations

import asyncio
from typing import Any

from core.report import CycleOutcome
from tests.e2e.branches_helpers import (
    SCRIPTED,
    awaiting_approval,
    claude_proposes,
    fail_units,
    fields,
    fp,
    listening,
    messages,
    react,
    request_of,
    run_cycle,
    title,
)
from tests.fixtures.stack import FAST_POLICY, Stack

NOTE = "@everyone `tick` **bold**\nsecond line"
ENTRY: dict[str, Any] = {
    "key": "scale_workers",
    "runner": "awx",
    "template_id": SCRIPTED,
    "description": "Set the worker count of the failed unit's service and restart it.",
    "addresses": ["failed_unit"],
    "parameters": {
        "unit": {"pattern": r"[a-z.]+", "from_subject": True},
        "workers": {"type": "integer", "minimum": 1, "maximum": 64},
        "ratio": {"type": "number"},
        "dry_run": {"type": "boolean"},
        "mode": {"enum": ["graceful", "hard"]},
        "note": {"type": "string", "max_length": 4096, "required": False},
    },
}
POLICY: dict[str, Any] = {**FAST_POLICY, "catalog": [ENTRY]}


def scale(host: str, workers: int) -> dict[str, Any]:
    return {
        "catalog_key": "scale_workers",
        "host": host,
        "parameters": {
            "unit": "nginx.service",
            "workers": workers,
            "ratio": 0.5,
            "dry_run": False,
            "mode": "graceful",
            "note": NOTE,
        },
        "risk": "low",
        "reason": "too few workers",
        "expected_outcome": "nginx.service active",
        "fingerprints": [fp(host)],
    }


async def test_integer_parameters_reach_discord_in_the_summary_and_the_approval_requests(
    stack: Stack,
) -> None:
    hosts = {"web-01": 3, "web-02": 4}
    await fail_units(stack, *hosts)
    claude_proposes(stack, *(scale(h, n) for h, n in hosts.items()))
    async with listening(stack, POLICY):
        cycle = asyncio.create_task(run_cycle(stack, POLICY, dispatch="inline"))
        recs = await awaiting_approval(stack, 2)
        for rec in recs.values():
            react(stack, rec, "❌", "alice")
        report = await asyncio.wait_for(cycle, timeout=120)
    assert report.outcome is CycleOutcome.ACTIONS
    assert not [n for n in report.notices if "could not be rendered" in n], report.notices
    summary = messages(stack)[0].embeds[0]
    assert title(messages(stack)[0]) == "📊 2 remediation actions proposed"
    for host, workers in hosts.items():
        line = next(x for x in summary["description"].splitlines() if f"**{host}**" in x)
        assert (
            f"(`unit=nginx.service, workers={workers}, ratio=0.5, dry_run=false, "
            "mode=graceful, note=@everyone ʼtickʼ **bold**⏎second line`)"
        ) in line
        request = request_of(stack, recs[host])
        assert title(request) == f"🟢 Approve scale_workers on {host}? React ✅ or ❌"
        shown = fields(request)["Parameters"]
        assert f'"workers": {workers}, "ratio": 0.5, "dry_run": false' in shown
        assert request.content == "❌ Rejected by alice"
    for host, rec in recs.items():  # the ledger's audit keeps each value with its type
        async with stack.ledger() as ledger:
            trail = await ledger.operations.audit_trail(action_id=rec.proposal.action_id)
        [asked] = [e["detail"] for e in trail if e["event"] == "approval_requested"]
        assert asked["parameters"] == scale(host, hosts[host])["parameters"]
        assert type(asked["parameters"]["workers"]) is int
