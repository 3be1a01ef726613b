"""Stage 5 end to end over the real Prometheus and the sandbox fleet: verification after
the job, the result in Discord, attempts and relapses, the action report, escalation
once attempts run out, and the cycle's closing summary."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.runtime import flow_run

from blocks import PrometheusConnection
from core.analysis import ModelAction
from core.checks import DetectionSettings
from core.models import CheckName, Issue, Severity
from core.policy import load_policy
from core.report import CycleOutcome, CycleReport
from core.settings import ActionSettings
from core.verify import evaluate_recheck, recheck_queries
from flows.remediate_action import remediate_action
from flows.remediation_cycle import remediation_cycle
from sandbox.anthropic_wire import tool_answer
from sandbox.jobs import JobTemplate, Phase, Script
from tasks.connections import open_connections
from tasks.verification import Verifier
from tests.core.factories import vet
from tests.fixtures.loki_discord import CHANNEL_ID
from tests.fixtures.stack import FAST_POLICY, FAST_SETTINGS, Stack
from tests.flows.helpers import approval_messages, eventually, listener

FP01 = "web-01|failed_unit|nginx.service"
FP02 = "web-02|failed_unit|nginx.service"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
GREEN, RED, YELLOW = 0x2ECC71, 0xE74C3C, 0xF1C40F
RESTART_UNIT = 10
DEAD_URL = "http://127.0.0.1:9"  # the discard port: nothing listens


# --- helpers ------------------------------------------------------------------------------
async def break_unit(stack: Stack, host: str, *, fixable: bool = True) -> None:
    stack.fleet.patch(
        host, {"units": {"nginx.service": {"state": "failed", "restart_fixes": fixable}}}
    )
    await stack.scraped(
        f'node_systemd_unit_state{{instance="{host}",name="nginx.service",state="failed"}} == 1'
    )


async def run_cycle(
    stack: Stack,
    *,
    requests: int = 0,
    policy: dict[str, Any] = FAST_POLICY,
    settings: dict[str, Any] = FAST_SETTINGS,
    before_approval: Callable[[], Awaitable[None] | None] | None = None,
    after_approval: Callable[[], Awaitable[None]] | None = None,
) -> CycleReport:
    """One cycle. With `requests`, actions are dispatched inline and each approval request
    is approved by alice in Discord; without, nothing is dispatched."""
    if not requests:
        return await remediation_cycle(policy=policy, blocks=stack.names, dispatch="none")
    seen = {m.id for m in approval_messages(stack)}
    async with listener(stack, policy=policy):
        cycle = asyncio.create_task(
            remediation_cycle(
                policy=policy,
                blocks=stack.names,
                dispatch="inline",
                dispatch_options={"settings": settings},
            )
        )
        asked = await eventually(
            lambda: (
                (new := [m for m in approval_messages(stack) if m.id not in seen])
                and len(new) >= requests
                and new
            ),
            what=f"{requests} approval request(s)",
        )
        if before_approval is not None:
            done = before_approval()
            if done is not None:
                await done
        for message in asked:
            stack.discord.react(CHANNEL_ID, message.id, "✅", "alice")
        if after_approval is not None:
            await after_approval()
        return await asyncio.wait_for(cycle, timeout=120)


def embeds_titled(stack: Stack, prefix: str) -> list[dict[str, Any]]:
    return [
        m.embeds[0]
        for m in stack.discord.messages(CHANNEL_ID)
        if m.embeds and (m.embeds[0].get("title") or "").startswith(prefix)
    ]


def result(stack: Stack, prefix: str) -> tuple[dict[str, Any], dict[str, str]]:
    [embed] = embeds_titled(stack, prefix)
    return embed, {f["name"]: f["value"] for f in embed["fields"]}


async def attempts(stack: Stack, *fps: str) -> list[Any]:
    async with stack.ledger() as ledger:
        return await ledger.episodes.attempt_details(fps, since=EPOCH)


async def open_episodes(stack: Stack) -> dict[str, dict[str, Any]]:
    async with stack.ledger() as ledger:
        return {e["fingerprint"]: e for e in await ledger.episodes.open_episodes()}


async def artifact(key: str, flow_run_id: str) -> str:
    async with get_client() as client:
        [found] = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]),
            )
        )
    return found.data


def verdict_requests(stack: Stack) -> list[str]:
    """The user text of every verification prompt Claude received."""
    return [
        body["messages"][0]["content"][0]["text"]
        for body in stack.anthropic.message_bodies()
        if (body.get("tool_choice") or {}).get("name") == "submit_verdict"
    ]


# --- the re-check queries against the real Prometheus --------------------------------------
async def test_recheck_queries_read_real_data_for_every_check(stack: Stack) -> None:
    """Every check's re-check is valid PromQL with data for a healthy host: cleared, with
    the scrapes of the window counted (0.5 s scrapes over 3 s)."""
    settings = load_policy(FAST_POLICY).detection
    subjects = {"disk": "/var", "failed_unit": "nginx.service", "inactive_unit": "nginx.service"}
    for check in CheckName:
        issue = Issue(
            host="web-02",
            check=check,
            subject=subjects.get(check.value, "-"),
            severity=Severity.CRITICAL,
            value=1.0,
            observed_at=datetime.now(UTC),
        )
        queries = recheck_queries(issue, settings, window_s=3.0)
        answers = {name: await stack.query(expr) for name, expr in queries.items()}
        r = evaluate_recheck(issue, settings, answers)
        assert r.still_breaching is False, (check, r.detail, queries)
        # about 6; a scrape the busy test process answers late is skipped by Prometheus
        # (it never overlaps scrapes of one target), so fewer, never none
        assert 2 <= r.data_points <= 8, (check, r.data_points)


async def test_recheck_of_a_host_that_went_down_has_no_data(stack: Stack) -> None:
    settings: DetectionSettings = load_policy(FAST_POLICY).detection
    unit = Issue(
        host="web-01",
        check=CheckName.FAILED_UNIT,
        subject="nginx.service",
        severity=Severity.CRITICAL,
        value=1.0,
        observed_at=datetime.now(UTC),
    )
    stack.fleet.patch("web-01", {"down": True})
    await stack.scraped('up{instance="web-01"} == 0')
    queries = recheck_queries(unit, settings, window_s=3.0)
    r = evaluate_recheck(unit, settings, {n: await stack.query(q) for n, q in queries.items()})
    assert r.still_breaching is None and "down now" in r.detail
    down = unit.model_copy(update={"check": CheckName.HOST_DOWN, "subject": "-", "value": 0.0})
    queries = recheck_queries(down, settings, window_s=3.0)
    r = evaluate_recheck(down, settings, {n: await stack.query(q) for n, q in queries.items()})
    assert r.still_breaching is True and r.value == 0


# --- whole loops ----------------------------------------------------------------------------
async def test_effective_and_ineffective_results_summary_and_then_a_relapse(stack: Stack) -> None:
    await break_unit(stack, "web-02")  # a restart fixes it
    await break_unit(stack, "web-01", fixable=False)  # a restart changes nothing
    report = await run_cycle(stack, requests=2)
    runs = {a.host: a.flow_run_id for a in report.actions}
    assert all(a.dispatched for a in report.actions) and len(runs) == 2
    assert stack.awx.launches(RESTART_UNIT) == 2
    async with stack.ledger() as ledger:
        rec = {a.host: await ledger.actions.get_action(a.action_id) for a in report.actions}

    # the results in Discord: one structured embed per action, coloured by verdict
    good, fields = result(stack, "✅ EFFECTIVE: restart_unit on web-02")
    job = rec["web-02"].job
    assert good["color"] == GREEN
    assert fields["Action"] == '`restart_unit` `{"unit": "nginx.service"}`'
    assert fields["Host"] == "`web-02`"
    assert fields["Approved"] == "alice (in Discord)"
    assert fields["Job"] == f"`{job.job_id}` ([open]({job.job_url}))" and job.job_url
    assert fields["Job state"] == "successful"
    assert re.fullmatch(r"\d+\.\d s", fields["Duration"]), fields["Duration"]
    assert fields["Metric before → after"] == "failed_unit nginx.service: 1 → 0"
    assert "sandbox model (simulation): the recheck cleared" in fields["Verdict: effective"]
    assert (
        "RESULT web-02 restart_unit nginx.service: nginx.service restarted and is active"
        in (fields["Last output lines"])
    )
    bad, fields = result(stack, "❌ INEFFECTIVE: restart_unit on web-01")
    assert bad["color"] == RED and fields["Job state"] == "successful"
    assert fields["Metric before → after"] == "failed_unit nginx.service: 1 → 1"
    assert "failed to start again after restart" in fields["Last output lines"]

    # attempts: the ineffective one counts and releases its issue; the effective one
    # closes its episode (so a return is new, and soon after, a relapse)
    outcomes = {
        a.action_id.split(":")[0]: (a.outcome, a.counts) for a in await attempts(stack, FP01, FP02)
    }
    assert outcomes == {
        rec["web-02"].proposal.action_id: ("effective", False),
        rec["web-01"].proposal.action_id: ("ineffective", True),
    }
    episodes = await open_episodes(stack)
    assert FP02 not in episodes
    assert episodes[FP01]["reported_at"] is None and episodes[FP01]["claimed_by"] is None

    # the verification logs: Loki, for the host and unit, from the job's end onward
    [logs] = [
        r
        for r in stack.loki.received("GET", "/loki/api/v1/query_range")
        if 'host="web-02"' in r.arg("query")
        and "nginx" in r.arg("query")
        and int(r.arg("start")) > job.launched_at.timestamp() * 1e9
    ]
    start, end = int(logs.arg("start")) / 1e9, int(logs.arg("end")) / 1e9
    assert job.launched_at.timestamp() < start <= job.finished_at.timestamp()
    assert end - start >= FAST_SETTINGS["settle_seconds"] * 0.9

    # the cycle summary: posted once, after the last result, and on the cycle's run
    titles = [(m.embeds[0].get("title") or "") for m in stack.discord.messages(CHANNEL_ID)]
    assert titles[-1] == "🏁 Workflow complete: 2 action(s) of this cycle ended", titles
    assert sum(t.startswith("🏁") for t in titles) == 1
    summary = stack.discord.messages(CHANNEL_ID)[-1].embeds[0]
    assert summary["description"] == "Verdicts: 1 effective, 1 ineffective."
    summary_md = await artifact("remediation-cycle-summary", report.cycle_id)
    assert (
        "| `restart_unit` | web-02 | finished | approve by alice (discord) | successful | "
        "effective |" in summary_md
    )
    assert (
        "| `restart_unit` | web-01 | finished | approve by alice (discord) | successful | "
        "ineffective |" in summary_md
    )

    # the action report: the whole story, on the action's own flow run
    story = await artifact("remediation-action-report", runs["web-02"])
    a = rec["web-02"].proposal
    for part in [
        "# `restart_unit` on `web-02`: effective",
        f"- action id: `{a.action_id}` · cycle `{report.cycle_id}`",
        '- parameters: `{"unit": "nginx.service"}`',
        f"- outcome: allowed under policy `{a.policy_hash}`",
        "- approve by alice (in Discord)",
        f"- job id: `{job.job_id}` ({job.job_url})",
        "- final state: **successful**",
        "- verdict: **effective** — sandbox model (simulation)",
        "- metric: failed_unit nginx.service: 1 → 0",
        "- attempt recorded as **effective**",
        "| decided | ",
        "| job ended | ",
        "| verified | ",
        "nginx.service restarted and is active",
    ]:
        assert part in story, (part, story)

    # web-02 breaks again soon after: a relapse, counted as an ineffective attempt — but
    # only within relapse_seconds, and web-01 (last attempt ineffective) is no relapse
    await break_unit(stack, "web-02")
    late = await run_cycle(stack, policy={**FAST_POLICY, "relapse_seconds": 0})
    assert not any("relapse" in n for n in late.notices)
    assert len(await attempts(stack, FP01, FP02)) == 2
    again = await run_cycle(stack)
    assert any(n.startswith(f"relapse: {FP02} returned within") for n in again.notices)
    relapses = [a for a in await attempts(stack, FP01, FP02) if a.outcome == "relapse"]
    assert [(r.action_id, r.counts) for r in relapses] == [
        (f"{rec['web-02'].proposal.action_id}:relapse", True)
    ]


async def test_claude_effective_while_breaching_then_attempts_run_out_once(stack: Stack) -> None:
    policy = {**FAST_POLICY, "attempts_per_window": 1}
    await break_unit(stack, "web-01", fixable=False)

    def claude_says_effective() -> None:  # the analysis is done: this answers verification
        stack.anthropic.enqueue(
            tool_answer("submit_verdict", {"verdict": "effective", "explanation": "looks fixed"})
        )

    await run_cycle(stack, requests=1, policy=policy, before_approval=claude_says_effective)
    assert stack.anthropic.pending() == []  # Claude was asked
    _, fields = result(stack, "❌ INEFFECTIVE: restart_unit on web-01")
    assert fields["Verdict: ineffective"].startswith(
        "Claude said effective, but the condition still breaches. looks fixed\nRe-check: now 1"
    )
    assert [(a.outcome, a.counts) for a in await attempts(stack, FP01)] == [("ineffective", True)]

    # out of attempts: escalated once as a manual issue with the history, not analysed
    asked = len(stack.anthropic.message_bodies())
    report = await run_cycle(stack, policy=policy)
    assert report.outcome is CycleOutcome.MANUAL_ONLY
    assert len(stack.anthropic.message_bodies()) == asked
    [escalation] = embeds_titled(stack, "🆘 Manual issue")
    assert escalation["title"] == (
        "🆘 Manual issue: failed_unit nginx.service on web-01 — out of attempts"
    )
    history = {f["name"]: f["value"] for f in escalation["fields"]}["Attempt history"]
    assert "restart_unit     ineffective  Claude said effective, but the condition" in history

    # the unit recovers by itself and fails again: still out of attempts, not re-posted
    stack.fleet.patch("web-01", {"units": {"nginx.service": {"state": "active"}}})
    await stack.scraped(
        'node_systemd_unit_state{instance="web-01",name="nginx.service",state="active"} == 1'
    )
    await run_cycle(stack, policy=policy)
    assert FP01 not in await open_episodes(stack)  # seen cleared
    await break_unit(stack, "web-01", fixable=False)
    again = await run_cycle(stack, policy=policy)
    assert FP01 in again.new_issues and FP01 in again.reported
    assert len(embeds_titled(stack, "🆘 Manual issue")) == 1
    assert approval_messages(stack) != [] and len(approval_messages(stack)) == 1
    assert len(stack.anthropic.message_bodies()) == asked


async def test_claude_unavailable_leaves_the_deterministic_verdict_with_a_note(
    stack: Stack,
) -> None:
    await break_unit(stack, "web-02")

    def claude_down() -> None:
        stack.anthropic.overloaded(times=20, retry_after_ms=10)

    await run_cycle(stack, requests=1, before_approval=claude_down)
    _, fields = result(stack, "✅ EFFECTIVE: restart_unit on web-02")
    assert fields["Verdict: effective"].startswith(
        "Claude unavailable (ClaudeError): the deterministic re-check stands. now 0 (== 1 cleared"
    ), fields["Verdict: effective"]
    assert verdict_requests(stack) != []  # it was asked, and answered 529


async def test_host_down_after_the_job_is_inconclusive(stack: Stack) -> None:
    await break_unit(stack, "web-02")

    async def host_goes_down_after_the_job() -> None:
        await eventually(
            lambda: stack.awx.jobs(RESTART_UNIT) and stack.awx.jobs(RESTART_UNIT)[0].terminal,
            what="the job's end",
            interval=0.05,
        )
        stack.fleet.patch("web-02", {"down": True})

    await run_cycle(
        stack,
        requests=1,
        settings={**FAST_SETTINGS, "settle_seconds": 4.0},
        after_approval=host_goes_down_after_the_job,
    )
    assert stack.fleet.state("web-02").units["nginx.service"].state == "active"  # unknowable
    embed, fields = result(stack, "❔ INCONCLUSIVE: restart_unit on web-02")
    assert embed["color"] == YELLOW
    assert fields["Metric before → after"] == "failed_unit nginx.service: 1 → no data"
    assert "the host is down now (up == 0): no fresh data" in fields["Verdict: inconclusive"]
    assert [(a.outcome, a.counts) for a in await attempts(stack, FP02)] == [("inconclusive", False)]


async def test_failed_job_is_reported_failed_and_still_verified(stack: Stack) -> None:
    stack.awx.add_template(
        JobTemplate(
            RESTART_UNIT,
            "restart_unit",
            script=Script.ending(
                Phase.FAILED, output=["TASK [Restart the unit] ***", "fatal: [web-02]: FAILED!"]
            ),
        )
    )
    await break_unit(stack, "web-02")
    await run_cycle(stack, requests=1)
    _, fields = result(stack, "❌ INEFFECTIVE: restart_unit on web-02 (job failed)")
    assert fields["Job state"] == "**failed**"
    assert "fatal: [web-02]: FAILED!" in fields["Last output lines"]
    assert fields["Metric before → after"] == "failed_unit nginx.service: 1 → 1"
    [prompt] = verdict_requests(stack)  # still verified
    assert '{"state": "failed"}' in prompt and '"still_breaching": true' in prompt
    assert [(a.outcome, a.counts) for a in await attempts(stack, FP02)] == [("failed", True)]
    assert (await open_episodes(stack))[FP02]["reported_at"] is None  # released


# --- pieces of the loop on their own ---------------------------------------------------------
def vetted(cycle_id: str, host: str = "web-02") -> Any:
    policy = load_policy(FAST_POLICY)
    unit = Issue(
        host=host,
        check=CheckName.FAILED_UNIT,
        subject="nginx.service",
        severity=Severity.CRITICAL,
        value=1.0,
        observed_at=datetime.now(UTC),
    )
    model = ModelAction(
        catalog_key="restart_unit",
        host=host,
        parameters={"unit": "nginx.service"},
        risk="low",
        reason="unit failed",
        expected_outcome="unit active",
    )
    [action] = vet([model], [unit], policy, cycle_id=cycle_id, now=datetime.now(UTC)).approved
    return action


async def test_failing_recheck_query_is_inconclusive(stack: Stack) -> None:
    """Prometheus unreachable at verification: the re-check fails, so no verdict."""

    @flow
    async def verify_without_prometheus() -> Any:
        conns = await open_connections(stack.names, ("loki", "claude", "ledger"))
        conns.blocks["prometheus"] = PrometheusConnection(url=DEAD_URL, timeout_seconds=2)
        async with conns:
            verifier = Verifier(
                conns, load_policy(FAST_POLICY), vetted("c-dead"), ActionSettings(settle_seconds=0)
            )
            return await verifier.verify("successful", "ok", datetime.now(UTC))

    v = await verify_without_prometheus()
    assert v.verdict == "inconclusive" and v.recheck.still_breaching is None
    assert v.recheck.detail.startswith("re-check query failed: "), v.recheck.detail
    assert v.claude_verdict == "inconclusive"  # the sandbox model saw no data either


async def test_a_restart_is_verified_on_its_own_unit_not_on_the_hosts_other_unit(
    stack: Stack,
) -> None:
    """The case seen in production, over the real Prometheus: web-02 has nginx.service
    failed and cron.service inactive; a restart of nginx proposed without fingerprints
    fixes nginx. Its verification reads nginx alone, so cron still being down does not
    make it ineffective."""
    stack.fleet.patch(
        "web-02",
        {"units": {"nginx.service": {"state": "failed"}, "cron.service": {"state": "inactive"}}},
    )
    await stack.scraped(
        'node_systemd_unit_state{instance="web-02",name="cron.service",state="inactive"} == 1'
    )
    await stack.scraped(
        'node_systemd_unit_state{instance="web-02",name="nginx.service",state="failed"} == 1'
    )
    policy = load_policy(FAST_POLICY)
    issues = [
        Issue(
            host="web-02",
            check=check,
            subject=unit,
            severity=Severity.CRITICAL,
            value=1.0,
            observed_at=datetime.now(UTC),
        )
        for check, unit in (
            (CheckName.FAILED_UNIT, "nginx.service"),
            (CheckName.INACTIVE_UNIT, "cron.service"),
        )
    ]
    model = ModelAction(
        catalog_key="restart_unit",
        host="web-02",
        parameters={"unit": "nginx.service"},
        risk="low",
        reason="nginx failed",
        expected_outcome="nginx active",
    )
    [restart] = vet([model], issues, policy, cycle_id="c-two-units", now=datetime.now(UTC)).approved
    job_end = datetime.now(UTC)
    stack.fleet.patch("web-02", {"units": {"nginx.service": {"state": "active"}}})
    await stack.scraped(
        'node_systemd_unit_state{instance="web-02",name="nginx.service",state="active"} == 1'
    )

    @flow
    async def verify_the_restart() -> Any:
        conns = await open_connections(stack.names, ("prometheus", "loki", "claude", "ledger"))
        async with conns:
            verifier = Verifier(conns, policy, restart, ActionSettings(settle_seconds=0))
            return await verifier.verify("successful", "ok", job_end)

    v = await verify_the_restart()
    assert (v.recheck.fingerprint, v.recheck.parts) == (FP02, ())
    assert v.recheck.metric_lines() == ["failed_unit nginx.service: 1 → 0"]
    assert v.verdict == "effective", v.recheck.detail
    [prompt] = verdict_requests(stack)
    recheck = json.loads(prompt.split("<recheck>\n")[1].split("\n</recheck>")[0])
    assert recheck["fingerprint"] == FP02 and "cron.service" not in json.dumps(recheck)


async def test_a_cycle_that_ended_first_is_summed_up_by_its_last_action(stack: Stack) -> None:
    """Dispatched as deployments, the cycle ends in seconds; its last action to end —
    here one rejected in Discord — posts the summary and writes it on the cycle's run."""

    @flow
    async def cycle_that_dispatched_one_action() -> tuple[str, Any]:
        cycle_id = str(flow_run.get_id())
        action = vetted(cycle_id)
        now = datetime.now(UTC)
        async with stack.ledger() as ledger:
            await ledger.operations.record_cycle_start(cycle_id, flow_run_id=cycle_id, now=now)
            await ledger.actions.record_actions([action], now=now)
            await ledger.operations.record_cycle_end(
                cycle_id, actions_dispatched=1, report={}, now=now
            )
        return cycle_id, action

    cycle_id, action = await cycle_that_dispatched_one_action()
    async with listener(stack):
        run = asyncio.create_task(
            remediate_action(
                action=action.model_dump(mode="json"),
                policy=FAST_POLICY,
                blocks=stack.names,
                settings=FAST_SETTINGS,
            )
        )
        [request] = await eventually(lambda: approval_messages(stack), what="approval request")
        stack.discord.react(CHANNEL_ID, request.id, "❌", "alice")
        assert (await asyncio.wait_for(run, timeout=60)).status == "rejected"
    [summary] = embeds_titled(stack, "🏁 Workflow complete: 1 action(s)")
    assert summary["footer"]["text"] == f"cycle {cycle_id}"
    assert summary["fields"][0]["value"].startswith("reject by alice (discord); job not launched")
    markdown = await artifact("remediation-cycle-summary", cycle_id)
    assert "| `restart_unit` | web-02 | rejected | reject by alice (discord) | not launched |" in (
        markdown
    )
