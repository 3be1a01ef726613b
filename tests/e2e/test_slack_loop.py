"""The whole loop in Slack: a cycle over the real Prometheus asks in the sandbox Slack,
the real listener reads an approver's ✅ there, AWX runs the real playbook, and the
result goes in the request's thread — with the model's text full of Slack mentions, none
of which may ping anyone.

Slack alone is named (`BlockNames.discord` is None): nothing reaches the sandbox Discord.
The action runs as an in-process subflow of the cycle (the `remediation-cycle` path), so
no served deployment is needed.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from core.records import ActionStatus
from core.report import CycleOutcome
from tests.e2e.branches_helpers import (
    attempts,
    awaiting_approval,
    claude_proposes,
    fail_units,
    fp,
    listening,
    proposed,
    record,
    run_cycle,
)
from tests.fixtures.chat import chat_stack
from tests.fixtures.slack import BOT_USER_ID, CHANNEL_ID, header
from tests.fixtures.stack import Stack

pytestmark = pytest.mark.slow

RESTART_UNIT = 10  # the real playbook (AWX sandbox template)
HOSTILE = "ping <!channel> <!here> <!everyone> <@U0ALICE> <!subteam^S0APPROVERS|@approvers> & co"


async def test_approved_in_slack_runs_once_reports_in_the_thread_and_pings_nobody(
    stack: Stack,
) -> None:
    slack_stack, slack = chat_stack(stack, "slack")
    await fail_units(stack, "web-02", "db-01")
    claude_proposes(
        stack,
        {**proposed("restart_unit", "web-02"), "reason": HOSTILE, "expected_outcome": HOSTILE},
        manual=[{"host": "db-01", "problem": HOSTILE, "recommendation": HOSTILE}],
    )
    async with listening(slack_stack):
        cycle = asyncio.create_task(run_cycle(slack_stack, dispatch="inline"))
        [rec] = (await awaiting_approval(slack_stack, 1)).values()
        slack.react(rec, "✅", "alice")
        report = await asyncio.wait_for(cycle, timeout=120)
    [action] = report.actions
    assert report.outcome is CycleOutcome.ACTIONS and action.action_id == rec.proposal.action_id

    # AWX: one launch of the real playbook, limited to the host
    [job] = stack.awx.jobs()
    assert (job.template.id, job.limit, job.status) == (RESTART_UNIT, "web-02", "successful")

    # Slack: the manual issue and the request at the top, the result in the request's
    # thread, then the cycle's summary; the request edited to say who decided
    assert rec.request is not None and rec.request.message_id is not None
    ts = rec.request.message_id
    posted = stack.slack.messages(CHANNEL_ID)
    top = [m for m in posted if not m["thread_ts"]]
    thread = [m for m in posted if m["thread_ts"] == ts]
    assert [header(m) for m in thread][-1] == "✅ EFFECTIVE: restart_unit on web-02"
    assert any(header(m).startswith("🏁 Workflow complete") for m in top)
    assert not any(header(m).startswith("✅ EFFECTIVE") for m in top)  # only in the thread
    assert any("db-01" in json.dumps(m["blocks"]) for m in top)  # the manual issue
    request = stack.slack.message(CHANNEL_ID, ts)
    assert request["text"] == "✅ Approved by alice"
    assert request["reactions"]["white_check_mark"] == [BOT_USER_ID, "U0ALICE"]
    assert stack.discord.received() == []  # Slack alone was named

    # The model's mentions were shown escaped, and nothing anywhere could ping.
    everything = json.dumps(posted)
    assert "&lt;!channel&gt;" in everything and "<!channel>" not in everything
    assert stack.slack.pings() == []

    # the ledger
    done = await record(stack, action.action_id)
    assert done is not None and done.status is ActionStatus.FINISHED
    assert done.decision is not None
    assert (done.decision.decision, done.decision.decider, done.decision.via) == (
        "approve",
        "alice",
        "slack",
    )
    assert await attempts(stack) == [(fp("web-02"), "effective", False)]
