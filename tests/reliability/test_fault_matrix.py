"""The fault matrix: every external system failing in the ways it really fails, each case
asserting the end state, what a human sees, the ledger rows, and recovery on the next
cycle where there is one. `docs/reliability.md` lists every row and its documented
outcome (rows proven by older tests point at them)."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from blocks import (
    AwxConnection,
    ClaudeCredentials,
    LedgerDatabase,
    SemaphoreConnection,
)
from channels import discord_listings as render
from clients.claude import DEFAULT_MODEL, ClaudeClient
from clients.ledger import Ledger
from clients.loki import LokiClient
from core.analysis import AnalysisUnreadable, read_analysis
from core.catalog import UNIT, Runner
from core.logs import LogContext
from core.policy import RiskRegister, load_policy
from core.prompt import build_analysis_request
from core.records import ActionStatus, Decision
from core.report import CycleOutcome
from core.vetting import ProposedAction
from core.words import NO_TARGETS
from flows.reconciler import reconcile
from flows.remediate_action import remediate_action
from flows.remediation_cycle import remediation_cycle
from sandbox.anthropic import (
    AnthropicServer,
    fenced_json_answer,
    malformed_json_answer,
    prose_json_answer,
    text_answer,
    tool_answer,
    trailing_comma_answer,
    truncated,
)
from sandbox.awx import AwxServer
from sandbox.jobs import JobTemplate, Phase, Script
from sandbox.loki import LokiServer
from sandbox.semaphore import SemaphoreServer
from tasks.connections import open_connections
from tasks.detection import fetch_log_context
from tests.core.factories import vet
from tests.fixtures.anthropic import ANTHROPIC_TEST_KEY
from tests.fixtures.jobs import AWX_TOKEN, SEMAPHORE_PROJECT, SEMAPHORE_TOKEN, job_templates
from tests.fixtures.loki_discord import CHANNEL_ID
from tests.fixtures.stack import FAST_POLICY, FAST_SETTINGS, Stack
from tests.flows.actions import failed_unit, paused_runs, policy_with, proposal, resume
from tests.flows.helpers import approval_messages, eventually, listener
from tests.flows.launch_support import approve
from tests.reliability.stand_ins import (
    FAILED_UNIT_QUERY,
    PrometheusProxy,
    failed_units,
    prom_error,
    vector,
)
from tests.reliability.support import (
    NGINX,
    cycle,
    cycle_report_artifact,
    db_path,
    fresh_stack,
    open_fingerprints,
    posts,
    proxied_prometheus,
    rows,
    seed_reported_episode,
    text,
)

# --- Prometheus ---------------------------------------------------------------------------
# Unreachable (connection refused) is proven by
# tests/flows/test_detection_stage.py::test_dead_prometheus_alerts_once_and_recovers.
EVERY_QUERY = {
    "5xx": ({"status": 503, "body": "Service Unavailable"}, "HTTP 503"),
    "timeout": ({"mode": "delay", "delay": 2.0}, "no answer within 1 s"),
    "status-error": (
        {"status": 422, "body": prom_error("execution", "query would load too many samples")},
        "execution: query would load too many samples",
    ),
}


@pytest.fixture
async def proxy(stack: Stack) -> Any:
    """A Prometheus in front of the real one, saved as the stack's Prometheus block."""
    async with proxied_prometheus(stack) as server:
        yield server


@pytest.mark.parametrize("fault", list(EVERY_QUERY))
async def test_prometheus_failing_every_query_alerts_once_and_recovers(
    stack: Stack, proxy: PrometheusProxy, fault: str
) -> None:
    spec, says = EVERY_QUERY[fault]
    proxy.inject(path="/api/v1/query", times=-1, **spec)

    report = await cycle(stack)

    assert report.outcome is CycleOutcome.PROMETHEUS_UNREACHABLE
    assert len(report.check_errors) == 10 and all(says in e for e in report.check_errors.values())
    [notice] = posts(stack, "⚠️ Prometheus unreachable")
    assert "Every check failed" in text(notice) and says in text(notice)
    assert stack.anthropic.message_bodies() == []  # nothing analysed on no data
    [alert] = rows(stack.ledger_url, "alert_states")
    assert (alert["name"], alert["firing"]) == ("prometheus-unreachable", 1)
    [row] = rows(stack.ledger_url, "cycles")
    assert row["finished_at"] and "Prometheus unreachable" in row["report"]

    proxy.clear_faults()
    recovered = await cycle(stack)

    assert recovered.outcome is CycleOutcome.NO_ISSUES and recovered.check_errors == {}
    assert len(posts(stack, "⚠️ Prometheus unreachable")) == 1  # said once
    assert len(posts(stack, "✅ Prometheus reachable again")) == 1
    assert rows(stack.ledger_url, "alert_states")[0]["firing"] == 0


NAN = vector(
    [
        {
            "metric": {"instance": "web-02", "name": "nginx.service", "state": "failed"},
            "value": [1.0, "NaN"],
        }
    ]
)
PARTIAL = {
    # one of the checks errs; the others answer from the real Prometheus
    "one-query-fails": (
        FAILED_UNIT_QUERY,
        422,
        prom_error("execution", "many-to-many matching not allowed"),
        {"failed_unit"},
    ),
    # every query answers an empty vector: nothing breaches, and no host is known up
    "empty-results": (".", 200, vector([]), set()),
    "nan": (FAILED_UNIT_QUERY, 200, NAN, {"failed_unit"}),
}


@pytest.mark.parametrize("fault", list(PARTIAL))
async def test_partial_prometheus_answers_clear_nothing_and_the_next_cycle_does(
    stack: Stack, proxy: PrometheusProxy, fault: str
) -> None:
    # An earlier cycle reported nginx failed on web-02; it is active again by now.
    await seed_reported_episode(stack, failed_unit())
    pattern, status, body, failing = PARTIAL[fault]
    proxy.override(pattern, status, body)

    report = await cycle(stack)

    assert report.outcome is CycleOutcome.NO_ISSUES
    assert set(report.check_errors) == failing
    markdown = await cycle_report_artifact(report.cycle_id)  # what a person reads
    if failing:
        assert "## Checks that failed" in markdown and "`failed_unit`" in markdown
    if fault == "nan":
        assert "NaN value for host 'web-02'" in report.check_errors["failed_unit"]
    if fault == "empty-results":  # an empty answer everywhere is not "all clear"
        assert report.notices == [NO_TARGETS] and NO_TARGETS in markdown
    else:
        assert report.notices == []
    assert report.cleared == []  # a check without a usable answer clears nothing
    assert await open_fingerprints(stack) == [NGINX]
    assert posts(stack) == []  # a partial answer is no outage: no alert
    [row] = rows(stack.ledger_url, "cycles")
    assert row["finished_at"] is not None

    proxy.overrides.clear()
    recovered = await cycle(stack)

    assert recovered.check_errors == {} and recovered.cleared == [NGINX]
    assert await open_fingerprints(stack) == []


# --- Loki ---------------------------------------------------------------------------------
# The whole cycle with Loki down (notice, analysis without logs) is proven by
# tests/flows/test_detection_stage.py::test_dead_loki_gives_explicit_unavailable_context;
# here every failure shape reaches the same context and prompt, through the sandbox Loki.
HUGE = "x" * 20_000
LOKI_FAULTS = {
    "unreachable": ({}, "unavailable", "cannot connect"),
    "400": (
        {"status": 400, "body": "parse error at line 1, col 9: syntax error: unexpected ="},
        "unavailable",
        "(HTTP 400): parse error at line 1, col 9",
    ),
    "slow": ({"mode": "delay", "delay": 2.0}, "unavailable", "no answer within 1 s"),
    "huge-lines": (None, "ok", "…[truncated:"),
}


@pytest.mark.parametrize("fault", list(LOKI_FAULTS))
async def test_loki_faults_give_a_marked_bounded_log_context(
    prefect_harness: str, loki: LokiServer, fault: str
) -> None:
    spec, status, says = LOKI_FAULTS[fault]
    now = datetime.now(UTC)
    lines = [HUGE + f" line {i}" for i in range(25)] if fault == "huge-lines" else ["ok"]
    loki.push({"host": "web-02", "unit": "nginx.service"}, [(now - timedelta(seconds=5), x)
                                                         for x in lines])  # fmt: skip
    if spec:
        loki.inject(path="/loki/api/v1/query_range", **spec)
    url = "http://127.0.0.1:1" if fault == "unreachable" else loki.url
    settings = load_policy(FAST_POLICY).logs
    async with LokiClient(url, timeout=1.0) as client:
        context = await fetch_log_context(client, [failed_unit()], settings, now)

    assert context.status == status and says in context.text
    assert len(context.text) <= settings.max_chars
    request = build_analysis_request([failed_unit()], policy=load_policy(FAST_POLICY), logs=context)
    prompt = request.messages[0]["content"][1]["text"]
    logs = prompt.split("<logs", 1)[1]
    assert logs.startswith(f' status="{status}">') and says in logs
    assert len(logs) < settings.max_chars + 200  # the fence and its warning, nothing more


# --- Claude ---------------------------------------------------------------------------------
def _slow_claude(seconds: float) -> dict[str, Any]:
    return {"timeout_seconds": 1, "fault": ("slow", {"delay": seconds, "times": 2})}


CLAUDE_FAULTS: dict[str, dict[str, Any]] = {
    "429-retry-after": {"fault": ("rate_limit", {"retry_after": 1, "times": 1})},
    "529": {"fault": ("overloaded", {"retry_after_ms": 20, "times": 2})},
    "500": {"fault": ("api_error", {"retry_after_ms": 20, "times": 2})},
    "timeout": _slow_claude(3.0),
    "unreadable-answer": {"answer": text_answer("I looked at the fleet and could not decide.")},
}
UNAVAILABLE = {
    "529": "Claude unreachable after retries: Claude create failed (HTTP 529): overloaded_error",
    "500": "Claude unreachable after retries: Claude create failed (HTTP 500): api_error",
    "timeout": "Claude unreachable after retries: Claude create failed",
    "unreadable-answer": "the answer could not be read (no JSON object could be read",
}


@pytest.mark.parametrize("fault", list(CLAUDE_FAULTS))
async def test_claude_faults_post_every_issue_for_a_human_once(
    stack: Stack, proxy: PrometheusProxy, fault: str
) -> None:
    case = CLAUDE_FAULTS[fault]
    await ClaudeCredentials(
        api_key=SecretStr(ANTHROPIC_TEST_KEY),
        base_url=stack.anthropic.url,
        timeout_seconds=case.get("timeout_seconds", 10),
        max_retries=1,
    ).asave(stack.names.claude, overwrite=True)
    if "fault" in case:
        helper, kwargs = case["fault"]
        getattr(stack.anthropic, helper)(**kwargs)
    if "answer" in case:
        stack.anthropic.enqueue(case["answer"])
    proxy.override(FAILED_UNIT_QUERY, 200, failed_units(("web-02", "nginx.service")))

    report = await cycle(stack)

    attempts = len(stack.anthropic.received("POST", "/v1/messages"))
    if fault == "429-retry-after":  # waited as told, then analysed normally
        assert attempts == 2 and report.outcome is CycleOutcome.ACTIONS
        assert [(a.catalog_key, a.policy) for a in report.actions] == [("restart_unit", "allowed")]
        gaps = [r.at for r in stack.anthropic.received("POST", "/v1/messages")]
        assert gaps[1] - gaps[0] >= 0.9
        assert posts(stack, "⚠️") == []
        return
    assert report.outcome is CycleOutcome.ANALYSIS_UNAVAILABLE
    assert attempts == (1 if fault == "unreadable-answer" else 2)  # bounded by the block
    [message] = posts(stack, "⚠️ 1 issue(s) need a human")
    assert f"⚠️ Analysis unavailable: {UNAVAILABLE[fault]}" in text(message)
    assert "Unit failed: nginx.service" in text(message)
    if fault == "unreadable-answer":
        assert "could not decide" in text(message)  # an excerpt, quoted
    assert any(UNAVAILABLE[fault] in n for n in report.notices)
    assert report.reported == [NGINX]
    [episode] = rows(stack.ledger_url, "issue_episodes")
    assert episode["reported_at"] is not None and rows(stack.ledger_url, "actions") == []

    again = await cycle(stack)  # reported: the next cycle neither re-asks nor re-posts

    assert again.outcome is CycleOutcome.ALL_CACHED
    assert len(stack.anthropic.received("POST", "/v1/messages")) == attempts
    assert len(posts(stack, "⚠️")) == 1


def _proposed(key: str, host: str, fps: list[str], risk: str = "low", **params: Any) -> dict:
    return {
        "catalog_key": key,
        "host": host,
        "parameters": params,
        "risk": risk,
        "reason": f"{key} should fix it",
        "expected_outcome": "fixed",
        "fingerprints": fps,
    }


CRON = "web-01|failed_unit|cron.service"
OUT_OF_POLICY = {
    "summary": "two units failed",
    "actions": [
        _proposed("run_shell", "web-02", [NGINX], command="systemctl restart nginx"),
        _proposed(
            "restart_unit", "web-09", ["web-09|failed_unit|nginx.service"], unit="nginx.service"
        ),
        _proposed("restart_unit", "web-02", [NGINX], unit="nginx.service; rm -rf /"),
        _proposed("reboot_host", "web-01", [CRON], risk="low"),  # the catalog floor is medium
    ],
    "manual_issues": [],
}


async def test_claude_proposals_outside_policy_become_manual_issues_and_risk_is_raised(
    stack: Stack, proxy: PrometheusProxy
) -> None:
    proxy.override(
        FAILED_UNIT_QUERY,
        200,
        failed_units(("web-02", "nginx.service"), ("web-01", "cron.service")),
    )
    stack.anthropic.enqueue(tool_answer("submit_analysis", OUT_OF_POLICY))

    async def reject_in_the_ui() -> None:
        [run] = await eventually(paused_runs, what="the reboot awaiting approval")
        assert await resume(run.id, "reject", "not today") == "ACCEPT"

    ui = asyncio.create_task(reject_in_the_ui())
    report = await cycle(stack, dispatch="inline", dispatch_options={"settings": FAST_SETTINGS})
    await asyncio.wait_for(ui, 30)

    policy = {(a.catalog_key, a.host): a.policy for a in report.actions}
    assert policy == {
        ("run_shell", "web-02"): "unknown catalog key 'run_shell'",
        ("restart_unit", "web-09"): "host 'web-09' has no current issue",
        ("restart_unit", "web-02"): "invalid parameters: unit does not match " + repr(UNIT.pattern),
        ("reboot_host", "web-01"): "allowed",
    }
    [manual] = posts(stack, "📋 3 issue(s) need a human")
    for reason in list(policy.values())[:3]:
        assert reason in text(manual)
    [request] = posts(stack, "🟡 Approve reboot_host on web-01?")  # medium, not low
    assert "risk raised from low to medium (catalog floor of reboot_host)" in text(request)
    assert "then it will not run" in text(request)
    assert posts(stack, "❌ Rejected: reboot_host on web-01")
    assert stack.awx.received("POST") == []  # nothing launched
    [action] = rows(stack.ledger_url, "actions")
    assert (action["catalog_key"], action["risk"], action["status"]) == (
        "reboot_host",
        "medium",
        "rejected",
    )
    assert sorted(report.reported) == sorted([CRON, NGINX])


GOOD_ANSWER = {
    "summary": "nginx failed on web-02",
    "actions": [_proposed("restart_unit", "web-02", [NGINX], unit="nginx.service")],
    "manual_issues": [
        {"host": "web-02", "problem": "check why", "severity": "warning", "recommendation": "-"}
    ],
}
_TEXT = json.dumps(GOOD_ANSWER)
MALFORMED: dict[str, tuple[Any, int | None]] = {
    # shape → (scripted answer, actions read; None: unreadable → every issue to a human)
    "single-quotes-unclosed": (malformed_json_answer(GOOD_ANSWER), None),
    "prose-around-json": (prose_json_answer(GOOD_ANSWER), 1),
    "fenced-json": (fenced_json_answer(GOOD_ANSWER), 1),
    "trailing-commas": (trailing_comma_answer(GOOD_ANSWER), 1),
    "text-cut-at-max-tokens": (truncated(text_answer(_TEXT), len(_TEXT) // 4 - 20), 1),
    "tool-cut-at-max-tokens": (truncated(tool_answer("submit_analysis", GOOD_ANSWER), 20), None),
    "schema-invalid-items": (
        tool_answer(
            "submit_analysis",
            {
                **GOOD_ANSWER,
                "actions": [
                    *GOOD_ANSWER["actions"],
                    {"host": "web-02"},
                    {**GOOD_ANSWER["actions"][0], "risk": "none"},
                ],
            },
        ),
        1,
    ),
    # never "nothing to do": the cycle used to route this as "no action needed", silently
    "actions-not-a-list": (
        tool_answer("submit_analysis", {**GOOD_ANSWER, "actions": "restart everything"}),
        None,
    ),
    "prose-only": (text_answer("I looked and could not decide."), None),
    "empty-tool-input": (tool_answer("submit_analysis", {}), None),
}


@pytest.mark.parametrize("shape", list(MALFORMED))
async def test_every_malformed_answer_is_read_item_by_item_or_handed_to_a_human(
    anthropic: AnthropicServer, shape: str
) -> None:
    """Through the wire (sandbox API → SDK → client), then the tolerant reader and policy:
    only complete, valid items survive, and nothing salvaged skips policy."""
    answer, expected = MALFORMED[shape]
    anthropic.enqueue(answer)
    policy = load_policy(FAST_POLICY)
    issue = failed_unit()
    request = build_analysis_request([issue], policy=policy, logs=LogContext(status="no_data"))
    async with ClaudeClient(
        ANTHROPIC_TEST_KEY, model=DEFAULT_MODEL, base_url=anthropic.url, max_retries=0
    ) as claude:
        reply = await claude.create(
            system=request.system,
            messages=request.messages,
            tools=request.tools,
            tool_choice=request.tool_choice,
        )
    if expected is None:
        with pytest.raises(AnalysisUnreadable) as caught:
            read_analysis(reply)
        [message] = render.analysis_unavailable_message(
            [issue], reason=caught.value.reason, excerpt=caught.value.excerpt, cycle_id="c"
        )
        assert "Analysis unavailable" in message.description
        assert message.fields[0].name == "web-02 · critical"
        return
    analysis = read_analysis(reply)
    assert len(analysis.actions) == expected
    vetting = vet(analysis.actions, [issue], policy, cycle_id="c", now=datetime.now(UTC))
    assert [(a.catalog_key, a.parameters) for a in vetting.approved] == [
        ("restart_unit", {"unit": "nginx.service"})
    ] * expected
    if shape != "prose-around-json" and shape != "fenced-json":
        assert analysis.notes or analysis.salvaged  # what was repaired is said


# --- Discord --------------------------------------------------------------------------------
# The client's 429 handling (bounded retries and total wait), deleted messages and unknown
# channels are proven in tests/clients/test_discord_client.py; here through the flows.
MESSAGES = rf"/channels/{CHANNEL_ID}/messages"
MANUAL_ONLY = {
    "summary": "a unit failed",
    "actions": [],
    "manual_issues": [
        {"host": "web-02", "problem": "nginx keeps failing", "severity": "critical",
         "recommendation": "look at its config"},
    ],
}  # fmt: skip


@pytest.mark.parametrize("fault", ["429", "5xx"])
async def test_a_failed_post_is_said_and_the_issue_is_reported_by_the_next_cycle(
    stack: Stack, proxy: PrometheusProxy, fault: str
) -> None:
    proxy.override(FAILED_UNIT_QUERY, 200, failed_units(("web-02", "nginx.service")))
    stack.anthropic.enqueue(*[tool_answer("submit_analysis", MANUAL_ONLY)] * 2)
    if fault == "429":
        stack.discord.rate_limit(MESSAGES, method="POST", retry_after=0.3, times=1)
    else:
        stack.discord.inject(method="POST", path=rf"/api/v10{MESSAGES}", status=502,
                             body="<html>502 Bad Gateway</html>")  # fmt: skip

    report = await cycle(stack)

    if fault == "429":  # waited as told, posted once
        assert len(stack.discord.received("POST", rf"/api/v10{MESSAGES}")) == 2
        assert len(posts(stack, "📋 1 issue(s) need a human")) == 1
        assert report.reported == [NGINX] and report.notices == []
        assert (await cycle(stack)).outcome is CycleOutcome.ALL_CACHED
        return
    assert posts(stack) == []
    assert report.reported == [] and report.outcome is CycleOutcome.MANUAL_ONLY
    [notice] = report.notices
    assert notice.startswith("Discord post of the manual issues failed: Discord create_message")
    assert "502 Bad Gateway" in notice
    [episode] = rows(stack.ledger_url, "issue_episodes")
    assert episode["reported_at"] is None and episode["claimed_by"] is None  # released

    again = await cycle(stack)  # Discord is back: the issue is reported now, once

    assert again.reported == [NGINX]
    assert len(posts(stack, "📋 1 issue(s) need a human")) == 1


def _register(**deadlines: int) -> dict[str, Any]:
    levels = RiskRegister().model_dump()
    return {k: {**v, "deadline_seconds": deadlines.get(k, v["deadline_seconds"])}
            for k, v in levels.items()}  # fmt: skip


async def test_discord_faults_while_approving(stack: Stack) -> None:
    """429 on a reaction and on the edit, the reactions endpoint failing for a while (one
    action, approved); an approval message deleted by a moderator while pending (another)."""
    policy = policy_with(min_risk="low", risk=_register(low=5, medium=120))
    faulty = proposal(policy, host="web-01", risk="medium", cycle_id="c-discord")
    deleted = proposal(policy, host="web-02", risk="low", cycle_id="c-discord")
    reactions = r"/api/v10/channels/\d+/messages/\d+/reactions/.*"
    stack.discord.rate_limit(r"/channels/\d+/messages/\d+/reactions/.*/@me", method="PUT",
                             retry_after=0.2, times=1)  # fmt: skip
    stack.discord.rate_limit(r"/channels/\d+/messages/\d+", method="PATCH", retry_after=0.2)
    runs = [
        asyncio.create_task(remediate_action(
            action=a.model_dump(mode="json"), policy=policy, blocks=stack.names,
            settings={**FAST_SETTINGS, "settle_seconds": 0}, return_state=True))
        for a in (faulty, deleted)
    ]  # fmt: skip
    try:
        await eventually(lambda: len(approval_messages(stack)) == 2, what="both requests")
        first, second = sorted(approval_messages(stack), key=lambda m: "web-02" in text(m))
        stack.discord.delete_message(CHANNEL_ID, second.id)  # a moderator tidies up
        stack.discord.inject(method="GET", path=reactions, status=500, body={"message": "x"},
                             times=4)  # fmt: skip
        stack.discord.react(CHANNEL_ID, first.id, "✅", "alice")
        async with listener(stack, policy=policy):
            states = await asyncio.wait_for(asyncio.gather(*runs), 90)
    finally:
        for run in runs:
            run.cancel()

    assert [s.is_completed() for s in states] == [True, True]
    assert [(await s.aresult()).status for s in states] == ["finished", "rejected"]
    assert {e for e, u in stack.discord.reactions(CHANNEL_ID, first.id).items() if u} == {
        "✅", "❌"}  # fmt: skip
    assert stack.discord.message(CHANNEL_ID, first.id).content == "✅ Approved by alice"
    assert len(stack.discord.received("PATCH", rf"/api/v10{MESSAGES}/{first.id}")) == 2
    assert len(approval_messages(stack)) == 1  # the deleted one was not re-posted
    [rejected] = posts(stack, "❌ Rejected: noop_fix on web-02")
    assert "deleted" in text(rejected)
    assert stack.awx.launches(30) == 1  # only the approved one ran, once
    async with stack.ledger() as ledger:
        faulty_record = await ledger.actions.get_action(faulty.action_id)
        deleted_record = await ledger.actions.get_action(deleted.action_id)
    assert faulty_record.decision.decider == "alice" and faulty_record.job.state == "successful"
    assert (deleted_record.decision.via, deleted_record.decision.decision) == (
        "deadline", "reject")  # fmt: skip


# --- AWX and Semaphore ----------------------------------------------------------------------
# Proven elsewhere (tests/flows/test_launching.py): AWX `failed`, a job never finishing
# (cancelled at the entry's maximum, last lines posted), `ignored_fields` (refused and
# cancelled at once), AWX dropping the connection after creating the job (found by its
# marker, never relaunched), a refused connection (retried: the request never left).
# Every case here runs at once (each on its own sandbox server and host), so the launch
# look-ups' back-off is paid once; each case then asserts what its run left behind.
AWX_LAUNCH = r"/api/v2/job_templates/30/launch/"
SEM_LAUNCH = r"/api/project/1/tasks"


@dataclass(frozen=True)
class JobCase:
    runner: str
    script: Script | None = None  # None: succeeds
    fault: dict[str, Any] | None = None
    drop_after_launch: bool = False


JOB_CASES: dict[str, JobCase] = {
    "awx-401": JobCase("awx", fault={
        "method": "POST", "path": AWX_LAUNCH, "status": 401,
        "body": {"detail": "Authentication credentials were not provided."}}),
    "awx-400": JobCase("awx", fault={
        "method": "POST", "path": AWX_LAUNCH, "status": 400,
        "body": {"variables_needed_to_start": ["'unit' value missing"]}}),
    "awx-5xx": JobCase("awx", fault={
        "method": "POST", "path": AWX_LAUNCH, "status": 500,
        "body": {"detail": "A server error has occurred."}}),
    "semaphore-401": JobCase("semaphore", fault={
        "method": "POST", "path": SEM_LAUNCH, "status": 401, "body": ""}),
    "semaphore-400": JobCase("semaphore", fault={
        "method": "POST", "path": SEM_LAUNCH, "status": 400,
        "body": {"error": "Invalid inventory"}}),
    "semaphore-5xx": JobCase("semaphore", fault={
        "method": "POST", "path": SEM_LAUNCH, "status": 502, "body": "Bad Gateway"}),
    "semaphore-dropped-after-create": JobCase("semaphore", drop_after_launch=True),
    "awx-error": JobCase("awx", Script.error(output=["ERROR! the runner lost its node"])),
    "awx-canceled": JobCase("awx", Script.ending(Phase.CANCELED, output=["canceled by admin"])),
    "semaphore-error": JobCase("semaphore", Script.fail(output=["fatal: [host]: FAILED!"])),
    "awx-output-missing": JobCase("awx", fault={
        "method": "GET", "path": r"/api/v2/jobs/\d+/stdout/", "status": 404,
        "body": {"detail": "Not found."}, "times": -1}),
}  # fmt: skip
NOT_LAUNCHED = {"awx-401", "awx-400", "awx-5xx", "semaphore-401", "semaphore-400",
                "semaphore-5xx"}  # fmt: skip


@dataclass
class JobEvidence:
    """What one case's run left behind, read before the next test resets the stack."""

    state: Any
    result: Any
    record: Any
    events: list[str]
    titles: list[str]
    texts: str
    launch_posts: int
    jobs: list[Any]
    attempts: list[dict[str, Any]]


async def _run_job_cases(stack: Stack) -> dict[str, JobEvidence]:
    policy = {**policy_with("noop_fix"), "max_running_jobs": 20}
    servers: dict[str, Any] = {}
    runs: dict[str, Any] = {}
    actions: dict[str, ProposedAction] = {}
    try:
        for i, (name, case) in enumerate(JOB_CASES.items()):
            templates = [t for t in job_templates() if t.id != 30]
            templates.append(JobTemplate(30, "scripted", script=case.script or Script.succeed()))
            if case.runner == "awx":
                server = AwxServer(templates, token=AWX_TOKEN).start()
                block: Any = AwxConnection(url=server.url, token=SecretStr(AWX_TOKEN),
                                           timeout_seconds=2)  # fmt: skip
            else:
                server = SemaphoreServer({SEMAPHORE_PROJECT: templates}, token=SEMAPHORE_TOKEN)
                server.start()
                block = SemaphoreConnection(
                    url=server.url, api_token=SecretStr(SEMAPHORE_TOKEN),
                    project_id=SEMAPHORE_PROJECT, timeout_seconds=2)  # fmt: skip
            server.fleet_url = stack.fleet.url
            servers[name] = server
            if case.fault:
                server.inject(**case.fault)
            if case.drop_after_launch:
                server.drop_after_launch()
            await block.asave(f"rel-job-{name}", overwrite=True)
            action = proposal(policy, host=f"app-{i:02d}", cycle_id=f"c-{name}")
            if case.runner == "semaphore":
                action = action.model_copy(update={"runner": Runner.SEMAPHORE})
            actions[name] = action
            await approve(stack, action)
            names = stack.names.model_copy(update={case.runner: f"rel-job-{name}"})
            runs[name] = remediate_action(
                action=action.model_dump(mode="json"), policy=policy, blocks=names,
                settings={**FAST_SETTINGS, "settle_seconds": 0}, return_state=True)  # fmt: skip
        states = await asyncio.wait_for(asyncio.gather(*runs.values()), 120)
        out = {}
        for (name, action), state in zip(actions.items(), states, strict=True):
            async with stack.ledger() as ledger:
                record = await ledger.actions.get_action(action.action_id)
                trail = await ledger.operations.audit_trail(action_id=action.action_id)
            mine = [m for m in stack.discord.messages(CHANNEL_ID) if f"on {action.host}" in text(m)
                    or action.action_id in text(m)]  # fmt: skip
            server = servers[name]
            out[name] = JobEvidence(
                state=state,
                result=await state.aresult() if state.is_completed() else None,
                record=record,
                events=[e["event"] for e in trail],
                titles=[m.embeds[0].get("title") or "" for m in mine if m.embeds],
                texts="\n".join(text(m) for m in mine),
                launch_posts=len(server.received("POST", server.launch_path)),
                jobs=server.jobs(30),
                attempts=[
                    a
                    for a in rows(stack.ledger_url, "attempts")
                    if a["action_id"] == action.action_id
                ],
            )
        return out
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(scope="module")
async def job_runs(
    prefect_harness: str,
    prometheus: Any,
    fleet: Any,
    loki_server: Any,
    discord_server: Any,
    anthropic_server: Any,
    awx_server: Any,
    semaphore_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, JobEvidence]:
    """Every job case run once, all at once; each test then reads its own case."""
    ledger = tmp_path_factory.mktemp("job-faults") / "ledger.db"
    stack = await fresh_stack(
        prometheus=prometheus, fleet=fleet, loki=loki_server, discord=discord_server,
        anthropic=anthropic_server, awx=awx_server, semaphore=semaphore_server,
        ledger_url=f"sqlite+aiosqlite:///{ledger}",
    )  # fmt: skip
    return await _run_job_cases(stack)


@pytest.mark.parametrize("case", list(JOB_CASES))
async def test_job_runner_faults(job_runs: dict[str, JobEvidence], case: str) -> None:
    run = job_runs[case]
    assert run.state.is_completed(), run.state
    assert run.launch_posts == 1  # never launched twice, whatever happened
    record = run.record
    if case in NOT_LAUNCHED:
        # The runner answered but created nothing: not relaunched, escalated to a human.
        assert run.jobs == []
        assert record.status is ActionStatus.NOT_RUN and run.result.status == "not_run"
        assert record.job.state in ("unknown", "refused", "not_launched")
        assert "not_run" in run.events
        [notice] = [t for t in run.titles if "noop_fix on app-" in t or "Not launched" in t]
        assert notice.startswith(("❓ Launch state unknown", "🚫 Launch refused", "⚠️ Not launched"))
        assert "NOT relaunched" in run.texts or "refused" in run.texts
        return
    [job] = run.jobs
    assert record.status is ActionStatus.FINISHED and record.job.job_id == str(job.id)
    assert "finished" in run.events
    [result] = [t for t in run.titles if re.match(r"(✅|❌|❔) [A-Z]+: noop_fix on app-", t)]
    if case == "semaphore-dropped-after-create":  # found by its marker, polled to its end
        assert record.job.state == "successful" and "(job " not in result
        assert [r for r in run.events if r == "not_run"] == []
        return
    if case == "awx-output-missing":  # verified without it, and it says so
        assert record.job.state == "successful" and "(job " not in result
        assert "(output unavailable: AWX" in record.job.output_tail
        assert "output unavailable" in run.texts
        return
    expected = {"awx-error": "error", "awx-canceled": "canceled", "semaphore-error": "failed"}
    assert record.job.state == expected[case]
    assert result.startswith("❌ INEFFECTIVE") and result.endswith(f"(job {expected[case]})")
    script = JOB_CASES[case].script
    assert script is not None and script.steps[2].output[0] in record.job.output_tail
    assert [(a["outcome"], a["counts"]) for a in run.attempts] == [("failed", 1)]


# --- the ledger -----------------------------------------------------------------------------
async def test_ledger_unavailable_at_cycle_start_is_said_and_the_next_cycle_recovers(
    stack: Stack, proxy: PrometheusProxy, tmp_path: Path
) -> None:
    proxy.override(FAILED_UNIT_QUERY, 200, failed_units(("web-02", "nginx.service")))
    stack.anthropic.enqueue(tool_answer("submit_analysis", MANUAL_ONLY))
    missing = f"sqlite+aiosqlite:///{tmp_path}/no-such-dir/ledger.db"
    await LedgerDatabase(url=SecretStr(missing)).asave(stack.names.ledger, overwrite=True)

    state = await remediation_cycle(
        policy=FAST_POLICY, blocks=stack.names, dispatch="none", return_state=True
    )

    assert state.is_failed() and "unable to open database file" in str(state.message)
    [notice] = posts(stack, "⚠️ Ledger unavailable — remediation cycle skipped")
    assert "unable to open database file" in text(notice)
    assert proxy.received() == [] and stack.anthropic.message_bodies() == []  # nothing ran

    await LedgerDatabase(url=SecretStr(stack.ledger_url)).asave(stack.names.ledger, overwrite=True)
    report = await cycle(stack)

    assert report.reported == [NGINX]  # the next cycle does the work, once
    assert len(posts(stack, "📋 1 issue(s) need a human")) == 1
    [row] = rows(stack.ledger_url, "cycles")
    assert row["cycle_id"] == report.cycle_id and row["finished_at"]


@contextmanager
def write_locked(ledger_url: str, seconds: float) -> Iterator[None]:
    """Another writer holds the SQLite ledger's write lock for `seconds` (from entry)."""
    taken = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(db_path(ledger_url), isolation_level=None, timeout=30)
        try:
            conn.execute("BEGIN IMMEDIATE")
            taken.set()
            time.sleep(seconds)
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert taken.wait(10)
    try:
        yield
    finally:
        holder.join(30)


async def test_a_ledger_locked_at_cycle_start_is_waited_out(stack: Stack) -> None:
    async with stack.ledger() as ledger:
        await ledger.ensure_schema()
    started = time.monotonic()
    with write_locked(stack.ledger_url, 1.5):
        report = await cycle(stack)
    assert time.monotonic() - started >= 1.5  # it waited (busy timeout 30 s), then ran
    assert report.outcome is CycleOutcome.NO_ISSUES and report.notices == []
    [row] = rows(stack.ledger_url, "cycles")
    assert row["cycle_id"] == report.cycle_id and row["finished_at"]


SCRIPTED_POLICY = policy_with("noop_fix")
RESULT = re.compile(r"(✅|❌|❔) [A-Z]+: noop_fix on ")  # verification settles nothing here


async def _job_id(stack: Stack, action: ProposedAction) -> str | None:
    async with stack.ledger() as ledger:
        record = await ledger.actions.get_action(action.action_id)
    return record.job.job_id if record and record.job else None


async def test_a_ledger_locked_mid_action_is_waited_out(stack: Stack) -> None:
    stack.awx.add_template(JobTemplate(30, "scripted", script=Script.succeed(running=3.0)))
    action = proposal(SCRIPTED_POLICY, cycle_id="c-locked")
    await approve(stack, action)
    run = asyncio.create_task(remediate_action(
        action=action.model_dump(mode="json"), policy=SCRIPTED_POLICY, blocks=stack.names,
        settings={**FAST_SETTINGS, "settle_seconds": 0}, return_state=True))  # fmt: skip
    await eventually(lambda: _job_id(stack, action), what="the job id")
    with write_locked(stack.ledger_url, 1.5):  # while the job is polled
        await asyncio.sleep(1.5)
    state = await asyncio.wait_for(run, 60)

    assert state.is_completed() and (await state.aresult()).status == "finished"
    assert stack.awx.launches(30) == 1
    async with stack.ledger() as ledger:
        record = await ledger.actions.get_action(action.action_id)
    assert record.status is ActionStatus.FINISHED and record.job.state == "successful"


async def test_a_ledger_down_mid_action_fails_the_run_and_the_reconciler_polls_its_job(
    stack: Stack, postgres_server: Any, postgres_url: str
) -> None:
    """PostgreSQL refusing every connection while the job is polled: the run fails (its
    failure hook cannot reach the ledger either); once the ledger is back the reconciler
    continues the action on the recorded job, never relaunching it."""
    await LedgerDatabase(url=SecretStr(postgres_url)).asave(stack.names.ledger, overwrite=True)
    database = make_url(postgres_url).database
    stack.awx.add_template(JobTemplate(30, "scripted", script=Script.succeed(running=3.0)))
    action = proposal(SCRIPTED_POLICY, cycle_id="c-ledger-down")
    async with Ledger(postgres_url) as ledger:
        now = datetime.now(UTC)
        await ledger.actions.record_actions([action], now=now)
        await ledger.actions.record_applied_decision(Decision(
            action_id=action.action_id, decision="approve", decider="alice", via="discord",
            intended_at=now, applied_at=now))  # fmt: skip
    run = asyncio.create_task(remediate_action(
        action=action.model_dump(mode="json"), policy=SCRIPTED_POLICY, blocks=stack.names,
        settings={**FAST_SETTINGS, "settle_seconds": 0}, return_state=True))  # fmt: skip

    async def job_id() -> str | None:
        async with Ledger(postgres_url) as ledger:
            record = await ledger.actions.get_action(action.action_id)
        return record.job.job_id if record and record.job else None

    job = await eventually(job_id, what="the job id")
    await postgres_server._execute(
        f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false; '
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
    )
    try:
        state = await asyncio.wait_for(run, 60)
    finally:
        await postgres_server._execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')

    assert state.is_failed() and "ledger" in str(state.message)
    assert stack.awx.launches(30) == 1 and posts(stack, "⚠️ Action run failed") == []
    conns = await open_connections(stack.names, ("discord", "ledger"))
    async with conns, get_client() as client:
        continued = await reconcile(
            conns, load_policy(SCRIPTED_POLICY), client, datetime.now(UTC), wait=True
        )

    assert continued == [action.action_id]
    assert stack.awx.launches(30) == 1  # the recorded job was polled, never relaunched
    async with Ledger(postgres_url) as ledger:
        record = await ledger.actions.get_action(action.action_id)
        events = [
            e["event"] for e in await ledger.operations.audit_trail(action_id=action.action_id)
        ]
    assert record.status is ActionStatus.FINISHED
    assert (record.job.job_id, record.job.state) == (job, "successful")
    assert events.count("reconcile_continued") == 1
    [continuing] = posts(stack, "🔁 Continuing: noop_fix on web-02")
    assert f"job `{job}` is polled" in text(continuing)
    [result] = [m for m in posts(stack) if RESULT.match(m.embeds[0]["title"])]
    assert job in text(result)  # the result of that job, posted once
