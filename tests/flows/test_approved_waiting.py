"""An approved action that waits for its host (another job holds it) is `approved` in
the ledger, not `awaiting_approval`: the self-metric and the dead-man's switch count
only undecided requests, approval capacity still counts its live run, and it launches
once the host frees. Approved by a Discord vote, a Prefect UI resume, or a deadline
default of run — each through the real `remediate_action` flow and listener."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prefect import flow
from prometheus_client.parser import text_string_to_metric_families

from core.policy import Policy
from core.records import ActionStatus
from core.selfmetrics import build_metrics, render_text
from core.vetting import ProposedAction
from flows.remediate_action import _on_failure, remediate_action
from flows.watchdog import remediation_watchdog
from sandbox.jobs import JobTemplate, Script
from tests.fixtures.loki_discord import CHANNEL_ID
from tests.fixtures.stack import Stack
from tests.flows.actions import SCRIPTED_TEMPLATE, paused_runs, policy_with, proposal, resume
from tests.flows.helpers import eventually, listener
from tests.flows.launch_support import (
    SETTINGS,
    approve,
    audit_events,
    embeds,
    parameters,
    record,
    text_of,
)

LISTENER_SILENT = "💀 Approval listener silent"


def _policy(via: str) -> dict[str, Any]:
    if via != "deadline":
        return policy_with()
    risk = Policy().risk.model_dump(mode="json")
    risk["low"]["deadline_seconds"] = 5  # the register's default (run) applies soon
    return policy_with(risk=risk)


def _start(stack: Stack, action: ProposedAction, policy: dict[str, Any]) -> asyncio.Task:
    return asyncio.create_task(
        remediate_action(**parameters(stack, action, policy, SETTINGS), return_state=True)
    )


async def _hold_host(stack: Stack, holder: ProposedAction) -> None:
    """Another approved action's job holds the host's launch slot."""
    await approve(stack, holder)
    async with stack.ledger() as ledger:
        claimed = await ledger.jobs.claim_launch(
            action_id=holder.action_id,
            host=holder.host,
            runner="awx",
            template=str(SCRIPTED_TEMPLATE),
            marker=holder.action_id,
            max_running=5,
            now=datetime.now(UTC),
        )
    assert claimed == "claimed"


def _pending_metric(facts: Any) -> float:
    text = render_text(build_metrics(None, facts, now=datetime.now(UTC), kill_switch=False))
    [sample] = [
        s
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "remediation_approvals_pending"
    ]
    return sample.value


@pytest.mark.parametrize("via", ["discord", "ui", "deadline"])
async def test_an_approved_action_waiting_for_its_host_is_approved_not_pending(
    stack: Stack, via: str
) -> None:
    policy = _policy(via)
    stack.awx.add_template(JobTemplate(SCRIPTED_TEMPLATE, "scripted", script=Script.succeed()))
    holder = proposal(policy, host="web-02", unit="cron.service", cycle_id="c-hold")
    waiting = proposal(policy, host="web-02", unit="nginx.service", cycle_id="c-wait")
    undecided = proposal(policy, host="web-03", risk="high", cycle_id="c-open")
    await _hold_host(stack, holder)
    runs = {a.action_id: _start(stack, a, policy) for a in (waiting, undecided)}
    try:
        paused = {}
        for a in (waiting, undecided):
            [paused[a.action_id]] = await eventually(
                lambda a=a: paused_runs(a.action_id), what="a paused run"
            )
        deciding = listener(stack, policy=policy) if via != "ui" else contextlib.nullcontext()
        async with deciding:
            if via == "ui":
                assert await resume(paused[waiting.action_id].id, "approve") == "ACCEPT"
            elif via == "discord":
                request = (await record(stack, waiting.action_id)).request
                stack.discord.react(CHANNEL_ID, request.message_id, "✅", "alice")
            # "deadline": nobody answers; the listener applies the default (run)
            await eventually(
                lambda: embeds(stack, "⏳ Waiting: noop_fix on web-02"), what="the wait notice"
            )
        approved = await record(stack, waiting.action_id)
        assert approved.status is ActionStatus.APPROVED
        assert (approved.decision.decision, approved.decision.via) == ("approve", via)
        assert approved.job is None  # not launched: web-02 is busy
        assert (await record(stack, undecided.action_id)).status is ActionStatus.AWAITING_APPROVAL

        async with stack.ledger() as ledger:
            facts = await ledger.operations.metric_facts(
                now=datetime.now(UTC), window=timedelta(hours=1)
            )
            capacity = await ledger.operations.pending_approvals()
            queue = await ledger.actions.actions_with_status(ActionStatus.AWAITING_APPROVAL)
        assert facts.pending_approvals == 1 and _pending_metric(facts) == 1  # undecided only
        assert capacity == 2  # both still hold a live run before any launch
        assert [r.proposal.action_id for r in queue] == [undecided.action_id]
        watchdog = await remediation_watchdog(blocks=stack.names, listener_stale_seconds=0.001)
        assert watchdog["listener"] is True
        [silent] = embeds(stack, LISTENER_SILENT)
        assert "while 1 approval(s) wait" in text_of(silent)

        async with stack.ledger() as ledger:  # the other job ends: web-02 is free
            await ledger.jobs.record_job_state(
                holder.action_id, state="successful", finished=True, now=datetime.now(UTC)
            )
        state = await asyncio.wait_for(runs[waiting.action_id], timeout=120)
        assert state.is_completed(), state
        done = await record(stack, waiting.action_id)
        assert done.status is ActionStatus.FINISHED
        assert done.job is not None and done.job.state == "successful"
        assert stack.awx.launches(SCRIPTED_TEMPLATE) == 1
    finally:
        if undecided.action_id in paused:
            await resume(paused[undecided.action_id].id, "reject")
        for run in runs.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(run, timeout=60)


@flow(name="remediate-action-failing", on_failure=[_on_failure], retries=0)
async def _fails_after_approval(
    action: dict[str, Any], policy: dict[str, Any], blocks: Any, settings: dict[str, Any]
) -> None:
    """A run with `remediate_action`'s parameters and failure hook that fails where an
    approved run waits for its host (e.g. its worker lost the Prefect API)."""
    raise RuntimeError("worker lost its API token")


async def test_a_run_failing_after_approval_before_its_launch_ends_not_run(
    stack: Stack,
) -> None:
    policy = policy_with()
    action = proposal(policy)
    await approve(stack, action)  # approved; its run then fails before claiming a launch

    state = await _fails_after_approval(
        **parameters(stack, action, policy, SETTINGS), return_state=True
    )

    assert state.is_failed()
    done = await record(stack, action.action_id)
    assert done.status is ActionStatus.NOT_RUN  # ended: its issue is no longer in flight
    assert done.job is None
    [notice] = embeds(stack, "⚠️ Not run: noop_fix on web-02")
    assert "worker lost its API token" in text_of(notice)
    assert "Nothing was launched" in text_of(notice)
    assert embeds(stack, "⏱️ Expired") == []  # it was decided: not "nobody decided"
    assert "action_run_failed" in await audit_events(stack, action.action_id)
