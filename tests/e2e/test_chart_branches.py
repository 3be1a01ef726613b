"""One end-to-end test per branch of the seed chart (`seed/remediation-workflow.mmd`; the
README's "How it works" links each branch to its test here).

The path users take: the cycle runs as a flow over the real Prometheus and the sandbox
Loki, Claude, Discord and AWX, and dispatches each action as a run of the
`remediate-action` deployment, picked up by one real `serve` process for the module. Two
single-action branches (7, 10) take the local path instead — `remediation-cycle` runs the
action as an in-process subflow — which covers that dispatch mode and saves two flow-run
processes. People decide by reacting in Discord (read by the real approval listener) or
by resuming in the Prefect UI (the API call the UI makes). Each test asserts what the
sandbox servers received, the flow-run states in Prefect and the ledger rows.

Claude's analysis is the sandbox model's (restart_unit, a real playbook) or, where the job
content does not matter, scripted to propose entries that run AWX's scripted templates.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from prefect.client.schemas.objects import StateType

from core.checks import build_queries
from core.policy import load_policy
from core.records import ActionStatus
from core.report import CycleOutcome, CycleReport
from sandbox.anthropic import tool_answer
from tests.e2e.branches_helpers import (
    FAILING,
    PROBE_SECONDS,
    SCRIPTED,
    SETTINGS,
    STUCK,
    action_runs,
    add_scripted_templates,
    all_ended,
    attempts,
    awaiting_approval,
    claude_proposes,
    cycle_row,
    end_leftover_runs,
    episodes,
    events,
    fail_units,
    fields,
    flow_run,
    fp,
    listening,
    messages,
    parent_flow_run_id,
    proposed,
    react,
    record,
    records,
    request_of,
    rerun_time,
    rows,
    run_cycle,
    scripted_policy,
    title,
    titled,
    titles,
    waited_suspended,
    waiting,
)
from tests.fixtures.loki_discord import ALICE_ID, BOT_USER_ID
from tests.fixtures.serve import ServedDeployment
from tests.fixtures.stack import FAST_POLICY, Stack
from tests.flows.actions import resume
from tests.flows.helpers import eventually

pytestmark = pytest.mark.slow

RESTART_UNIT = 10  # the real playbook (AWX sandbox template)
LOKI_QUERY = "/loki/api/v1/query_range"
# Approval branches whose path the wait mode changes run with either wait (7: the fallback
# to pause; 8: deadline defaults; 11: UI resume and re-gate); a suspended run's re-runs
# take longer.
WAITS = ["pause", pytest.param("suspend", marks=pytest.mark.timeout(600))]
WORKFLOW_COMPLETE = "🏁 Workflow complete: {n} action(s) of this cycle ended"


@pytest.fixture(scope="module")
async def served(
    prefect_harness: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServedDeployment]:
    """The `remediate-action` deployment served by a real process, once for the module
    (started with the first test, awaited by the first that dispatches)."""
    server = ServedDeployment(prefect_harness, tmp_path_factory.mktemp("serve") / "serve.log")
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(autouse=True)
async def branch(stack: Stack, served: ServedDeployment) -> AsyncIterator[None]:
    yield
    await end_leftover_runs()  # a failed test leaves no paused run to the next one
    print(f"--- serve log (tail) ---\n{served.tail()}")  # shown only when the test failed


async def breaching(stack: Stack, check: str) -> None:
    """Wait until the real Prometheus answers the check's FAST_POLICY rule."""
    await stack.scraped(build_queries(load_policy(FAST_POLICY).detection)[check])


@pytest.fixture
async def low_memory(stack: Stack) -> str:
    """db-01 with 5 % memory available: an issue the sandbox model leaves to a human."""
    stack.fleet.patch("db-01", {"mem_available_pct": 5})
    await breaching(stack, "memory")
    return "db-01|memory|-"


@pytest.fixture
async def reported_earlier(stack: Stack, low_memory: str) -> CycleReport:
    """An earlier cycle reported the low-memory issue (posted it as a manual issue)."""
    earlier = await run_cycle(stack)
    assert earlier.outcome is CycleOutcome.MANUAL_ONLY and earlier.reported == [low_memory]
    return earlier


async def assert_deployment_runs_of(
    report: CycleReport, served: ServedDeployment, wait: str = "pause"
) -> None:
    """Every action ran as a run of the served deployment, linked as a subflow of the
    cycle — or, waiting suspended, as a top-level run (Prefect suspends no subflow) that
    did wait suspended — and the cycle completed without waiting for any of them."""
    cycle = await flow_run(report.cycle_id)
    assert cycle.state.type is StateType.COMPLETED
    deployment_id = await served.ready()
    for a in report.actions:
        run = await flow_run(a.flow_run_id)
        assert run.deployment_id == deployment_id, run
        suspended = wait == "suspend"
        parent = None if suspended else report.cycle_id
        assert await parent_flow_run_id(run) == parent
        assert await waited_suspended(run.id) is suspended
        assert run.state.type is StateType.COMPLETED, (a.host, run.state)
        assert run.end_time > cycle.end_time  # the cycle did not wait for it


async def assert_inline_runs_of(report: CycleReport) -> None:
    """Every action ran as an in-process subflow of the cycle, which ended after them."""
    cycle = await flow_run(report.cycle_id)
    assert cycle.state.type is StateType.COMPLETED
    for a in report.actions:
        run = await flow_run(a.flow_run_id)
        assert run.deployment_id is None and await parent_flow_run_id(run) == report.cycle_id
        assert run.state.type is StateType.COMPLETED, (a.host, run.state)
        assert run.end_time <= cycle.end_time


def bot_and(*users: str) -> list[str]:
    return [BOT_USER_ID, *users]


# --- 1-4: the cycle ends without actions ---------------------------------------------------
async def test_1_no_issues_ends_the_cycle_with_no_issues(stack: Stack) -> None:
    report = await run_cycle(stack)
    assert report.outcome is CycleOutcome.NO_ISSUES and report.issues == []
    assert (await flow_run(report.cycle_id)).state.type is StateType.COMPLETED
    # nothing asked, posted or launched; no logs fetched
    assert stack.anthropic.message_bodies() == []
    assert messages(stack) == []
    assert stack.loki.received("GET", LOKI_QUERY) == []
    assert stack.awx.jobs() == []
    cycle = await cycle_row(stack, report.cycle_id)
    assert cycle["finished_at"] is not None and cycle["actions_dispatched"] == 0
    assert json.loads(cycle["report"])["outcome"] == CycleOutcome.NO_ISSUES.value
    assert await rows(stack, "issue_episodes") == [] and await rows(stack, "actions") == []


async def test_2_issues_all_cached_are_neither_analysed_nor_posted(
    stack: Stack, low_memory: str, reported_earlier: CycleReport
) -> None:
    asked, posted = len(stack.anthropic.message_bodies()), len(messages(stack))
    [episode] = await rows(stack, "issue_episodes")
    report = await run_cycle(stack)
    assert report.outcome is CycleOutcome.ALL_CACHED
    assert [i.fingerprint for i in report.issues] == [low_memory] and report.new_issues == []
    assert report.dropped == {"reported within TTL": 1}
    assert len(stack.anthropic.message_bodies()) == asked == 1  # no analysis
    assert len(messages(stack)) == posted == 1  # no message
    assert (await flow_run(report.cycle_id)).state.type is StateType.COMPLETED
    # the ledger: the same episode, still as the earlier cycle reported it
    [after] = await rows(stack, "issue_episodes")
    assert {**after, "last_seen_at": 0} == {**episode, "last_seen_at": 0}
    assert episode["reported_at"] is not None and episode["claimed_by"] == reported_earlier.cycle_id
    assert await rows(stack, "actions") == []
    cycle = await cycle_row(stack, report.cycle_id)
    assert json.loads(cycle["report"])["outcome"] == CycleOutcome.ALL_CACHED.value


async def test_3_analysis_with_nothing_to_do_ends_with_no_action_needed(stack: Stack) -> None:
    await fail_units(stack, "web-02")
    # Nothing to do is said by naming the issue with a reason; an answer that names no
    # issue at all is not "nothing to do" (tests/flows/test_cycle_coverage.py).
    reason = "a planned restart of nginx; it comes back by itself"
    stack.anthropic.enqueue(
        tool_answer(
            "submit_analysis",
            {"summary": "scripted analysis", "actions": [], "manual_issues": [],
             "no_action_needed": [{"fingerprints": [fp("web-02")], "reason": reason}]},
        )
    )  # fmt: skip
    report = await run_cycle(stack)
    assert report.outcome is CycleOutcome.NO_ACTION_NEEDED
    assert report.new_issues == [fp("web-02")] and report.actions == []
    [analysis] = stack.anthropic.message_bodies()
    prompt = analysis["messages"][0]["content"][1]["text"]
    assert fp("web-02") in prompt and "<logs" in prompt  # enriched with Loki logs
    assert stack.loki.received("GET", LOKI_QUERY) != []
    # one message names the issue with the model's reason; nothing is launched
    [message] = messages(stack)
    assert title(message) == "✅ 1 issue(s) need no action"
    assert fp("web-02") in json.dumps(message.embeds) and reason in json.dumps(message.embeds)
    assert stack.awx.jobs() == []
    assert (await flow_run(report.cycle_id)).state.type is StateType.COMPLETED
    # the issue is reported (not asked about again within the TTL); no action recorded
    assert (await episodes(stack))[fp("web-02")]["reported_at"] is not None
    assert await rows(stack, "actions") == []
    cycle = await cycle_row(stack, report.cycle_id)
    assert json.loads(cycle["report"])["outcome"] == CycleOutcome.NO_ACTION_NEEDED.value


async def test_4_manual_issues_only_post_one_message_and_start_no_action_run(
    stack: Stack, low_memory: str
) -> None:
    runs_before = len(await action_runs())
    report = await run_cycle(stack)  # the sandbox model: memory is a manual issue
    assert report.outcome is CycleOutcome.MANUAL_ONLY
    assert report.manual_issues == 1 and report.actions == []
    [message] = messages(stack)
    assert title(message) == "📋 1 issue(s) need a human"
    assert "db-01" in json.dumps(message.embeds) and message.history == []  # never edited
    assert len(await action_runs()) == runs_before  # no remediate-action run
    assert stack.awx.jobs() == []
    assert (await flow_run(report.cycle_id)).state.type is StateType.COMPLETED
    assert (await episodes(stack))[low_memory]["reported_at"] is not None
    assert await rows(stack, "actions") == []
    assert (await cycle_row(stack, report.cycle_id))["actions_dispatched"] == 0


# --- 5-6: actions approved in Discord, run, verified, reported ---------------------------------
# Test 5 runs paused only: a suspended run's path from a listener's resume to its launch,
# verification and result (it re-runs from the top) is test 8's low-risk action, resumed
# by the same listener call; a UI resume and a re-gate under suspend are test 11's; Discord
# votes on suspended runs, across a listener restart, are tests/flows/test_listener.py's.
async def test_5_one_action_no_summary_approved_job_ok_verified_effective_result_posted(
    stack: Stack, served: ServedDeployment
) -> None:
    await served.ready()
    await fail_units(stack, "web-02")
    async with listening(stack):
        report = await run_cycle(stack)
        [action] = report.actions
        assert report.outcome is CycleOutcome.ACTIONS and action.dispatched
        [rec] = (await awaiting_approval(stack, 1)).values()
        assert titles(stack) == ["🟢 Approve restart_unit on web-02? React ✅ or ❌"]  # no summary
        react(stack, rec, "✅", "alice")
        await all_ended(report)
    await assert_deployment_runs_of(report, served)

    # AWX: one launch of the real playbook, limited to the host
    [job] = stack.awx.jobs()
    assert (job.template.id, job.limit, job.status) == (RESTART_UNIT, "web-02", "successful")
    assert job.extra_vars["unit"] == "nginx.service"
    assert job.extra_vars["remediation_action_id"] == action.action_id
    assert stack.fleet.state("web-02").units["nginx.service"].state == "active"

    # Discord: the request (reacted, then edited), the result, the cycle summary
    assert titles(stack) == [
        "🟢 Approve restart_unit on web-02? React ✅ or ❌",
        "✅ EFFECTIVE: restart_unit on web-02",
        WORKFLOW_COMPLETE.format(n=1),
    ]
    request = request_of(stack, rec)
    assert stack.discord.reactions(request.channel_id, request.id) == {
        "✅": bot_and(ALICE_ID),
        "❌": bot_and(),
    }
    assert request.content == "✅ Approved by alice" and len(request.history) == 1
    result = fields(messages(stack)[1])
    assert result["Approved"] == "alice (in Discord)" and result["Job state"] == "successful"
    assert result["Metric before → after"] == "failed_unit nginx.service: 1 → 0"

    # the ledger
    rec = await record(stack, action.action_id)
    assert rec.status is ActionStatus.FINISHED
    assert (rec.decision.decision, rec.decision.decider, rec.decision.via) == (
        "approve",
        "alice",
        "discord",
    )
    assert (rec.job.job_id, rec.job.state) == (str(job.id), "successful")
    assert await attempts(stack) == [(fp("web-02"), "effective", False)]
    assert fp("web-02") not in await episodes(stack)  # closed as remediated
    trail = await events(stack, action.action_id)
    assert trail[0] == "approval_requested" and trail[-1] == "finished"
    assert "decision" in trail
    cycle = await cycle_row(stack, report.cycle_id)
    assert cycle["actions_dispatched"] == 1 and cycle["summary_posted_at"] is not None


async def test_6_several_actions_summary_first_approvals_at_once_results_then_cycle_summary(
    stack: Stack, served: ServedDeployment
) -> None:
    hosts = ["web-01", "web-02", "db-01"]
    policy = scripted_policy()
    await served.ready()
    await fail_units(stack, *hosts)
    claude_proposes(stack, *(proposed("scripted_fix", h) for h in hosts))
    async with listening(stack, policy):
        report = await run_cycle(stack, policy)
        assert report.outcome is CycleOutcome.ACTIONS
        assert [a.host for a in report.actions] == hosts
        assert all(a.dispatched for a in report.actions)
        # every approval is open at once: three runs PAUSED, three requests, no answer yet
        recs = await awaiting_approval(stack, 3)
        assert titles(stack)[0] == "📊 3 remediation actions proposed"  # the summary first
        assert sorted(titles(stack)[1:]) == sorted(
            f"🟢 Approve scripted_fix on {h}? React ✅ or ❌" for h in hosts
        )
        for rec in recs.values():
            react(stack, rec, "✅", "alice")
        await all_ended(report)
    await assert_deployment_runs_of(report, served)

    assert sorted(j.limit for j in stack.awx.jobs(SCRIPTED)) == sorted(hosts)
    assert len(stack.awx.jobs()) == 3
    # Discord: summary, the three requests, a result for each, the cycle summary last
    said = titles(stack)
    assert said[0].startswith("📊") and all(t.startswith("🟢 Approve") for t in said[1:4])
    assert sorted(said[4:7]) == sorted(  # the scripted job changes nothing on the host
        f"❌ INEFFECTIVE: scripted_fix on {h}" for h in hosts
    )
    assert said[7:] == [WORKFLOW_COMPLETE.format(n=3)]
    assert messages(stack)[-1].embeds[0]["description"] == "Verdicts: 3 ineffective."
    for rec in recs.values():
        request = request_of(stack, rec)
        assert request.content == "✅ Approved by alice"
        assert stack.discord.reactions(request.channel_id, request.id) == {
            "✅": bot_and(ALICE_ID),
            "❌": bot_and(),
        }
    # the ledger
    recs = await records(stack, report)
    assert {h: (r.status, r.decision.decider, r.job.state) for h, r in recs.items()} == {
        h: (ActionStatus.FINISHED, "alice", "successful") for h in hosts
    }
    assert sorted(await attempts(stack)) == sorted((fp(h), "ineffective", True) for h in hosts)
    cycle = await cycle_row(stack, report.cycle_id)
    assert cycle["actions_dispatched"] == 3 and cycle["summary_posted_at"] is not None


# --- 7-8: nothing runs without a yes -----------------------------------------------------------
@pytest.mark.parametrize("wait", WAITS)
async def test_7_rejected_in_discord_posts_the_rejection_and_launches_nothing(
    stack: Stack, wait: str
) -> None:
    """Through the local path (`remediation-cycle`: the action is an in-process subflow,
    which Prefect cannot suspend: a level that waits suspended waits paused, and the
    ledger says why)."""
    policy = waiting(FAST_POLICY, wait)
    await fail_units(stack, "web-02")
    async with listening(stack, policy):
        cycle = asyncio.create_task(run_cycle(stack, policy, dispatch="inline"))
        [rec] = (await awaiting_approval(stack, 1)).values()
        react(stack, rec, "❌", "alice")
        report = await asyncio.wait_for(cycle, timeout=120)
    [action] = report.actions
    assert report.outcome is CycleOutcome.ACTIONS and action.action_id == rec.proposal.action_id
    await assert_inline_runs_of(report)
    assert stack.awx.jobs() == [] and stack.awx.received("POST") == []  # nothing launched
    assert titles(stack) == [
        "🟢 Approve restart_unit on web-02? React ✅ or ❌",
        "❌ Rejected: restart_unit on web-02",
        WORKFLOW_COMPLETE.format(n=1),
    ]
    assert messages(stack)[1].embeds[0]["description"] == (
        "Rejected by alice (discord). Nothing was launched."
    )
    request = request_of(stack, rec)
    assert request.content == "❌ Rejected by alice"
    assert stack.discord.reactions(request.channel_id, request.id)["❌"] == bot_and(ALICE_ID)
    rec = await record(stack, action.action_id)
    assert rec.status is ActionStatus.REJECTED and rec.job is None
    assert (rec.decision.decision, rec.decision.decider, rec.decision.via) == (
        "reject",
        "alice",
        "discord",
    )
    assert await rows(stack, "jobs") == [] and await attempts(stack) == []
    trail = await events(stack, action.action_id)
    assert "finished" not in trail
    assert ("suspend_unavailable" in trail) is (wait == "suspend")
    assert not await waited_suspended(action.flow_run_id)


@pytest.mark.parametrize("wait", WAITS)
async def test_8_deadline_default_runs_a_low_risk_action_and_not_a_high_risk_one(
    stack: Stack, served: ServedDeployment, wait: str
) -> None:
    # Long enough for both runs to be asking at once: the served process may pick the
    # second run up one poll after the first (17 s apart was seen on a loaded machine).
    policy = waiting(scripted_policy(deadline_seconds=30), wait)
    await served.ready()
    await fail_units(stack, "web-01", "web-02")
    claude_proposes(
        stack, proposed("scripted_fix", "web-01", "low"), proposed("scripted_fix", "web-02", "high")
    )
    async with listening(stack, policy):
        report = await run_cycle(stack, policy)
        recs = await awaiting_approval(stack, 2)  # and nobody answers
        await all_ended(report, timeout=rerun_time(wait, 90))
    await assert_deployment_runs_of(report, served, wait)
    low, high = (await records(stack, report)).values()
    assert (low.proposal.host, high.proposal.host) == ("web-01", "web-02")

    # the low-risk action ran at its deadline, the high-risk one did not
    [job] = stack.awx.jobs()
    assert (job.template.id, job.limit, job.status) == (SCRIPTED, "web-01", "successful")
    for rec, decided, status in [
        (low, "approve", ActionStatus.FINISHED),
        (high, "reject", ActionStatus.REJECTED),
    ]:
        d = rec.decision
        assert (d.decision, d.via, d.decider) == (decided, "deadline", "deadline default")
        assert d.applied_at >= rec.request.deadline
        assert rec.status is status
    assert high.job is None and low.job.state == "successful"

    # Discord: nobody reacted; both requests edited to say what the deadline did
    for host, shown in [
        ("web-01", "⏰ Deadline passed with no decision: ran by deadline default"),
        ("web-02", "⏰ Deadline passed with no decision: will not run"),
    ]:
        request = request_of(stack, recs[host])
        assert request.content == shown
        assert stack.discord.reactions(request.channel_id, request.id) == {
            "✅": bot_and(),
            "❌": bot_and(),
        }
    said = titles(stack)
    assert said[0] == "📊 2 remediation actions proposed"
    assert sorted(said[1:3]) == [  # posted by two runs at once, in either order
        "🔴 Approve scripted_fix on web-02? React ✅ or ❌",
        "🟢 Approve scripted_fix on web-01? React ✅ or ❌",
    ]
    reminders = [t for t in said if t.startswith("⏳ Reminder")]
    assert len(reminders) == len(set(reminders))  # at most one per request
    assert sorted(t for t in said[3:-1] if t not in reminders) == [
        "❌ INEFFECTIVE: scripted_fix on web-01",  # the scripted job changes nothing
        "❌ Rejected: scripted_fix on web-02",
    ]
    assert said[-1] == WORKFLOW_COMPLETE.format(n=2)
    assert await attempts(stack) == [(fp("web-01"), "ineffective", True)]


# --- 9-10: the job or its verification goes wrong ---------------------------------------------
async def test_9_job_failed_and_job_timeout_with_cancel(
    stack: Stack, served: ServedDeployment
) -> None:
    policy = scripted_policy()
    add_scripted_templates(stack)
    await served.ready()
    await fail_units(stack, "web-01", "web-02")
    claude_proposes(stack, proposed("failing_fix", "web-01"), proposed("stuck_fix", "web-02"))
    async with listening(stack, policy):
        report = await run_cycle(stack, policy)
        recs = await awaiting_approval(stack, 2)
        for rec in recs.values():
            react(stack, rec, "✅", "alice")
        await all_ended(report, timeout=120)
    await assert_deployment_runs_of(report, served)
    recs = await records(stack, report)

    # AWX: each launched once; the stuck one cancelled at the entry's 10 s maximum
    [failed] = stack.awx.jobs(FAILING)
    [stuck] = stack.awx.jobs(STUCK)
    assert (failed.limit, failed.status) == ("web-01", "failed")
    assert (stuck.limit, stuck.status) == ("web-02", "canceled")
    assert stack.awx.cancel_requests == [stuck.id]
    timed = recs["web-02"].job
    assert (timed.finished_at - timed.launched_at).total_seconds() >= 10

    # Discord: the failed job's result; the timeout, then its result
    [failed_result] = titled(stack, "❌ INEFFECTIVE: failing_fix on web-01 (job failed)")
    assert fields(failed_result)["Job state"] == "**failed**"
    assert "scripted failure" in fields(failed_result)["Last output lines"]
    [timeout] = titled(stack, "⏱️ Job timeout: stuck_fix on web-02")
    assert (
        f"Job `{stuck.id}` did not finish within 10 s and was cancelled"
        in (timeout.embeds[0]["description"])
    )
    said = titles(stack)
    [timeout_result] = [t for t in said if t.endswith("stuck_fix on web-02 (job timeout)")]
    assert said.index(title(timeout)) < said.index(timeout_result)
    assert said[-1] == WORKFLOW_COMPLETE.format(n=2)

    # the ledger: job states, counted failed attempts, the issues released for the next cycle
    assert {h: (r.status, r.job.state) for h, r in recs.items()} == {
        "web-01": (ActionStatus.FINISHED, "failed"),
        "web-02": (ActionStatus.FINISHED, "timeout"),
    }
    assert sorted(await attempts(stack)) == [
        (fp("web-01"), "failed", True),
        (fp("web-02"), "failed", True),
    ]
    open_now = await episodes(stack)
    assert all(open_now[fp(h)]["reported_at"] is None for h in ("web-01", "web-02"))


async def test_10_verification_inconclusive_when_the_host_goes_dark_after_the_job(
    stack: Stack,
) -> None:
    """Through the local path (`remediation-cycle`: the action is an in-process subflow)."""
    policy = scripted_policy()
    await fail_units(stack, "web-02")
    claude_proposes(stack, proposed("scripted_fix", "web-02"))
    settings = {**SETTINGS, "settle_seconds": 4.0}  # the host is down well before
    async with listening(stack, policy):
        cycle = asyncio.create_task(run_cycle(stack, policy, settings, dispatch="inline"))
        [rec] = (await awaiting_approval(stack, 1)).values()
        react(stack, rec, "✅", "alice")
        [job] = await eventually(
            lambda: [j for j in stack.awx.jobs(SCRIPTED) if j.terminal],
            interval=0.05,
            what="the job's end",
        )
        stack.fleet.patch("web-02", {"down": True})  # before verification's re-check
        report = await asyncio.wait_for(cycle, timeout=120)
    [action] = report.actions
    await assert_inline_runs_of(report)
    assert (job.limit, job.status) == ("web-02", "successful")
    [result] = titled(stack, "❔ INCONCLUSIVE: scripted_fix on web-02")
    found = fields(result)
    assert found["Job state"] == "successful"
    assert found["Metric before → after"] == "failed_unit nginx.service: 1 → no data"
    assert "the host is down now (up == 0): no fresh data" in found["Verdict: inconclusive"]
    assert titles(stack)[-1] == WORKFLOW_COMPLETE.format(n=1)
    rec = await record(stack, action.action_id)
    assert rec.status is ActionStatus.FINISHED and rec.job.state == "successful"
    assert await attempts(stack) == [(fp("web-02"), "inconclusive", False)]  # not counted


# --- 11: the Prefect UI path ----------------------------------------------------------------
@pytest.mark.parametrize("wait", WAITS)
async def test_11_prefect_ui_approval_runs_medium_and_is_refused_for_high(
    stack: Stack, served: ServedDeployment, wait: str
) -> None:
    policy = waiting(scripted_policy(), wait)
    await served.ready()
    await fail_units(stack, "web-01", "web-02")
    claude_proposes(
        stack,
        proposed("scripted_fix", "web-01", "medium"),
        proposed("scripted_fix", "web-02", "high"),
    )
    async with listening(stack, policy):
        report = await run_cycle(stack, policy)
        recs = await awaiting_approval(stack, 2)
        medium, high = recs["web-01"], recs["web-02"]
        assert await resume(medium.request.flow_run_id, "approve", "looks fine") == "ACCEPT"
        assert await resume(high.request.flow_run_id, "approve") == "ACCEPT"
        # high: refused, said so, and the same run pauses again for the Discord quorum
        await eventually(
            lambda: titled(stack, "🔒 Still gated: scripted_fix on web-02"),
            timeout=rerun_time(wait, 60),
            what="the refusal",
        )
        regated = await eventually(
            lambda: _paused_with_key(high.request.flow_run_id, "regate"),
            timeout=rerun_time(wait, 60),
            interval=PROBE_SECONDS,
            what="re-gated pause",
        )
        assert (await record(stack, high.proposal.action_id)).decision is None
        assert "web-02" not in [j.limit for j in stack.awx.jobs()]  # high: nothing launched
        # a reject from the UI is always honoured
        assert await resume(regated.id, "reject", "not without two approvers") == "ACCEPT"
        await all_ended(report, timeout=rerun_time(wait, 120))
        for rec, shown in [
            (medium, "✅ Approved — decided in the Prefect UI — looks fine"),
            (high, "❌ Rejected — decided in the Prefect UI — not without two approvers"),
        ]:  # the listener edits each request to show the UI's decision
            await eventually(
                lambda rec=rec, shown=shown: request_of(stack, rec).content == shown, what=shown
            )
    await assert_deployment_runs_of(report, served, wait)

    [job] = stack.awx.jobs()
    assert (job.template.id, job.limit, job.status) == (SCRIPTED, "web-01", "successful")
    said = titles(stack)
    assert said[0] == "📊 2 remediation actions proposed"
    assert sorted(said[1:3]) == [
        "🔴 Approve scripted_fix on web-02? React ✅ or ❌",
        "🟡 Approve scripted_fix on web-01? React ✅ or ❌",
    ]
    assert "❌ Rejected: scripted_fix on web-02" in said
    assert said[-1] == WORKFLOW_COMPLETE.format(n=2)
    for rec in (medium, high):  # nobody reacted in Discord
        request = request_of(stack, rec)
        assert stack.discord.reactions(request.channel_id, request.id) == {
            "✅": bot_and(),
            "❌": bot_and(),
        }
    medium, high = (await records(stack, report)).values()
    assert (medium.status, medium.decision.decision, medium.decision.via) == (
        ActionStatus.FINISHED,
        "approve",
        "ui",
    )
    assert (high.status, high.decision.decision, high.decision.via) == (
        ActionStatus.REJECTED,
        "reject",
        "ui",
    )
    assert medium.decision.decider == high.decision.decider == "Prefect UI"
    assert high.job is None and medium.job.state == "successful"
    assert "ui_approve_refused" in await events(stack, high.proposal.action_id)


async def _paused_with_key(run_id: str, fragment: str):
    run = await flow_run(run_id)
    details = run.state.state_details if run.state else None
    paused = run.state and run.state.type is StateType.PAUSED
    return run if paused and fragment in (details.pause_key or "") else None
