"""Every issue accounted for, on every route of the seed chart's `ROUTE`: after vetting each
analysed issue is covered by an approval request, a manual issue or a named "no action
needed" — or it is posted as not addressed by the analysis — and it counts as reported
only once that reached people. A malformed answer is never "nothing to do".

The cycle runs as a flow over the sandbox servers; a Prometheus stand-in in front of the
real one answers the failed-unit check, and the sandbox Anthropic server answers with the
crafted analysis. Each test asserts what the sandbox Discord received and which
fingerprints the ledger marks reported.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.report import CycleOutcome, CycleReport
from sandbox.anthropic import tool_answer
from tests.fixtures.loki_discord import CHANNEL_ID
from tests.fixtures.stack import FAST_SETTINGS, Stack
from tests.flows.actions import paused_runs, resume
from tests.flows.helpers import approval_messages, titles
from tests.reliability.stand_ins import FAILED_UNIT_QUERY, PrometheusProxy, failed_units
from tests.reliability.support import cycle, posts, proxied_prometheus, rows, text

NGINX = "web-02|failed_unit|nginx.service"
CRON = "web-01|failed_unit|cron.service"
SSH = "db-01|failed_unit|ssh.service"
DB_NGINX = "db-01|failed_unit|nginx.service"
UNITS = {
    NGINX: ("web-02", "nginx.service"),
    CRON: ("web-01", "cron.service"),
    SSH: ("db-01", "ssh.service"),
    DB_NGINX: ("db-01", "nginx.service"),
}
REASON = "a planned restart by the deploy job; it comes back within minutes"


@pytest.fixture
async def proxy(stack: Stack) -> AsyncIterator[PrometheusProxy]:
    """A Prometheus in front of the real one, saved as the stack's Prometheus block."""
    async with proxied_prometheus(stack) as server:
        yield server


def failing(proxy: PrometheusProxy, *fps: str) -> None:
    """The failed-unit check answers exactly these issues."""
    proxy.override(FAILED_UNIT_QUERY, 200, failed_units(*(UNITS[fp] for fp in fps)))


def restart(fp: str) -> dict[str, Any]:
    host, unit = UNITS[fp]
    return {"catalog_key": "restart_unit", "host": host, "parameters": {"unit": unit},
            "risk": "low", "reason": "the unit failed", "expected_outcome": f"{unit} active",
            "fingerprints": [fp]}  # fmt: skip


def manual(host: str, *fps: str) -> dict[str, Any]:
    item = {"host": host, "problem": f"{host} needs a look", "severity": "critical",
            "recommendation": "read the journal"}  # fmt: skip
    return {**item, "fingerprints": list(fps)} if fps else item


def answer(stack: Stack, **fields: Any) -> None:
    stack.anthropic.enqueue(tool_answer("submit_analysis", {"summary": "scripted", **fields}))


def reported(stack: Stack) -> list[str]:
    """The fingerprints the ledger holds as reported."""
    return sorted(e["fingerprint"] for e in rows(stack.ledger_url, "issue_episodes")
                  if e["reported_at"] is not None)  # fmt: skip


def released(stack: Stack) -> list[str]:
    """Open episodes neither reported nor claimed: the next cycle asks about them again."""
    return sorted(e["fingerprint"] for e in rows(stack.ledger_url, "issue_episodes")
                  if e["reported_at"] is None and e["claimed_by"] is None)  # fmt: skip


async def cycle_rejecting_every_action(stack: Stack, expected: int) -> CycleReport:
    """A cycle whose actions run in-process and are rejected in the Prefect UI as soon as
    they wait for a decision (nothing launches)."""

    async def reject() -> None:
        done: set[str] = set()
        while len(done) < expected:
            for run in await paused_runs():
                if str(run.id) not in done:
                    assert await resume(run.id, "reject", "test") == "ACCEPT"
                    done.add(str(run.id))
            await asyncio.sleep(0.3)

    humans = asyncio.create_task(reject())
    try:
        report = await cycle(stack, dispatch="inline", dispatch_options={"settings": FAST_SETTINGS})
        await asyncio.wait_for(humans, 30)
    finally:
        humans.cancel()
    return report


# --- actions only ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["list", "json-string"])
async def test_actions_only_reach_approval_and_their_issues_are_reported(
    stack: Stack, proxy: PrometheusProxy, shape: str
) -> None:
    """`json-string` is the case seen in production: the list arrived as a JSON string
    inside the tool input, was ignored, and the cycle said "no action needed" in silence."""
    failing(proxy, NGINX)
    actions = [restart(NGINX)]
    answer(stack, actions=json.dumps(actions) if shape == "json-string" else actions,
           manual_issues=[])  # fmt: skip

    report = await cycle_rejecting_every_action(stack, 1)

    assert report.outcome is CycleOutcome.ACTIONS
    assert [(a.catalog_key, a.policy, a.dispatched) for a in report.actions] == [
        ("restart_unit", "allowed", True)
    ]
    [request] = approval_messages(stack)
    assert request.embeds[0]["title"] == "🟢 Approve restart_unit on web-02? React ✅ or ❌"
    assert posts(stack, "📋") == posts(stack, "⚠️") == posts(stack, "✅") == []
    assert report.reported == [NGINX] and reported(stack) == [NGINX]
    assert report.coverage == {NGINX: f"approval request {report.actions[0].action_id}"}
    if shape == "json-string":
        assert "'actions' arrived as a JSON string: read as a list" in report.analysis_notes


async def test_an_action_that_was_not_dispatched_leaves_its_issue_unreported(
    stack: Stack, proxy: PrometheusProxy
) -> None:
    failing(proxy, NGINX)
    answer(stack, actions=[restart(NGINX)], manual_issues=[])

    report = await cycle(
        stack, dispatch="deployment", dispatch_options={"settings": {"deployment": "no/such"}}
    )

    assert report.outcome is CycleOutcome.ACTIONS and not report.actions[0].dispatched
    assert any("dispatch of restart_unit on web-02 failed" in n for n in report.notices)
    assert report.reported == [] and released(stack) == [NGINX]


# --- manual issues only ---------------------------------------------------------------------
async def test_manual_issues_only_cover_the_issues_they_name_or_their_hosts(
    stack: Stack, proxy: PrometheusProxy
) -> None:
    failing(proxy, NGINX, CRON)
    answer(stack, actions=[], manual_issues=[manual("web-02", NGINX), manual("web-01")])

    report = await cycle(stack)

    assert report.outcome is CycleOutcome.MANUAL_ONLY
    assert titles(stack) == ["📋 2 issue(s) need a human"]
    assert report.coverage == {NGINX: "manual issue", CRON: "manual issue"}
    assert sorted(report.reported) == reported(stack) == sorted([NGINX, CRON])


# --- no action needed -----------------------------------------------------------------------
async def test_no_action_needed_is_posted_naming_each_issue_with_its_reason(
    stack: Stack, proxy: PrometheusProxy
) -> None:
    failing(proxy, NGINX, CRON)
    answer(stack, actions=[], manual_issues=[],
           no_action_needed=[{"fingerprints": [NGINX, CRON], "reason": REASON}])  # fmt: skip

    report = await cycle(stack)

    assert report.outcome is CycleOutcome.NO_ACTION_NEEDED
    [message] = stack.discord.messages(CHANNEL_ID)
    assert message.embeds[0]["title"] == "✅ 2 issue(s) need no action"
    shown = text(message)
    assert NGINX in shown and CRON in shown and REASON in shown
    assert sorted(report.reported) == reported(stack) == sorted([NGINX, CRON])

    again = await cycle(stack)  # reported: neither asked nor posted again within the TTL

    assert again.outcome is CycleOutcome.ALL_CACHED
    assert (
        len(stack.anthropic.message_bodies()) == 1 and len(stack.discord.messages(CHANNEL_ID)) == 1
    )


async def test_a_no_action_message_that_failed_to_post_reports_nothing(
    stack: Stack, proxy: PrometheusProxy
) -> None:
    failing(proxy, NGINX)
    answer(stack, no_action_needed=[{"fingerprints": [NGINX], "reason": REASON}])
    stack.discord.inject(method="POST", path=r"/api/v10/channels/.*/messages", status=502,
                         body="<html>502 Bad Gateway</html>")  # fmt: skip

    report = await cycle(stack)

    assert (
        report.outcome is CycleOutcome.NO_ACTION_NEEDED and stack.discord.messages(CHANNEL_ID) == []
    )
    assert any(n.startswith("Discord post of the no-action-needed message failed")
               for n in report.notices)  # fmt: skip
    assert report.reported == [] and released(stack) == [NGINX]


# --- mixed ----------------------------------------------------------------------------------
async def test_mixed_answer_accounts_for_every_issue_and_reports_only_what_people_saw(
    stack: Stack, proxy: PrometheusProxy
) -> None:
    failing(proxy, NGINX, CRON, SSH, DB_NGINX)
    answer(
        stack,
        actions=[restart(NGINX)],
        manual_issues=[manual("web-01", CRON)],
        no_action_needed=[{"fingerprints": [SSH], "reason": REASON}],
    )  # DB_NGINX is not mentioned at all

    report = await cycle(stack)  # dispatch none: the action is proposed, not dispatched

    assert report.outcome is CycleOutcome.ACTIONS
    assert titles(stack) == [
        "📋 1 issue(s) need a human",
        "⚠️ 1 issue(s) not addressed by the analysis need a human",
        "✅ 1 issue(s) need no action",
    ]
    [unaddressed] = posts(stack, "⚠️")
    assert DB_NGINX in text(unaddressed) and NGINX + "\n" not in text(unaddressed)
    [no_action] = posts(stack, "✅")
    assert SSH in text(no_action) and REASON in text(no_action)
    assert report.coverage[DB_NGINX] == "not addressed by the analysis"
    assert report.coverage[SSH] == f"no action needed: {REASON}"
    # the action was not dispatched, so its issue is not reported; the rest were seen
    assert reported(stack) == sorted([CRON, SSH, DB_NGINX])
    assert released(stack) == [NGINX]


# --- analysis unreadable --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("actions", "said"),
    [
        (42, "'actions' is a number, not a list"),
        ({"catalog_key": "restart_unit"}, "'actions' is an object, not a list"),
        ("restart everything", "'actions' is text that is not a JSON list"),
    ],
    ids=["number", "object", "unparseable-string"],
)
async def test_an_unreadable_answer_sends_every_issue_to_a_human(
    stack: Stack, proxy: PrometheusProxy, actions: Any, said: str
) -> None:
    failing(proxy, NGINX, CRON)
    answer(stack, actions=actions, manual_issues=[])

    report = await cycle(stack)

    assert report.outcome is CycleOutcome.ANALYSIS_UNAVAILABLE
    [message] = stack.discord.messages(CHANNEL_ID)
    assert message.embeds[0]["title"] == "⚠️ 2 issue(s) need a human"
    assert f"⚠️ Analysis unavailable: the answer could not be read ({said})" in text(message)
    assert sorted(report.reported) == reported(stack) == sorted([NGINX, CRON])


# --- an issue the answer does not mention ---------------------------------------------------
async def test_an_issue_the_answer_does_not_mention_is_posted_for_a_human(
    stack: Stack, proxy: PrometheusProxy
) -> None:
    failing(proxy, NGINX, CRON)
    answer(stack, actions=[], manual_issues=[manual("web-02", NGINX)])

    report = await cycle(stack)

    assert report.outcome is CycleOutcome.MANUAL_ONLY
    assert titles(stack) == [
        "📋 1 issue(s) need a human",
        "⚠️ 1 issue(s) not addressed by the analysis need a human",
    ]
    [unaddressed] = posts(stack, "⚠️")
    assert CRON in text(unaddressed) and NGINX not in text(unaddressed)
    assert "1 issue(s) not addressed by the analysis: posted for a human" in report.notices
    assert sorted(report.reported) == reported(stack) == sorted([NGINX, CRON])


async def test_an_empty_answer_is_not_no_action_needed(
    stack: Stack, proxy: PrometheusProxy
) -> None:
    """`actions: []` and `manual_issues: []` with nothing named: no longer silence."""
    failing(proxy, NGINX)
    answer(stack, actions=[], manual_issues=[])

    report = await cycle(stack)

    assert report.outcome is CycleOutcome.MANUAL_ONLY
    [message] = stack.discord.messages(CHANNEL_ID)
    assert message.embeds[0]["title"] == "⚠️ 1 issue(s) not addressed by the analysis need a human"
    assert NGINX in text(message)
    assert report.reported == reported(stack) == [NGINX]
