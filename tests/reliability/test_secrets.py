"""Secret hygiene: known secrets planted in every block, in log lines and in a job's
output; after a whole run (detect → analyse → approve in Discord → job → verification →
result) none of them appears in Prefect's logs (read through the API), artifacts,
flow-run parameters or state messages, in any ledger table, in what the sandbox
Anthropic server received, or in any Discord message (edits included).
The redaction patterns are documented in docs/redaction.md."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterStartTime,
    LogFilter,
    LogFilterTimestamp,
)
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from pydantic import SecretStr

from blocks import LedgerDatabase, LokiConnection, PrometheusConnection
from blocks.job_runners import JobRunnerSpec, runners_with_blocks
from sandbox.anthropic import tool_answer
from sandbox.jobs import JobTemplate, Script
from tests.fixtures.anthropic import ANTHROPIC_TEST_KEY
from tests.fixtures.jobs import AWX_TOKEN, SEMAPHORE_TOKEN
from tests.fixtures.loki_discord import BOT_TOKEN, CHANNEL_ID
from tests.fixtures.stack import FAST_POLICY, FAST_SETTINGS, Stack
from tests.flows.actions import policy_with
from tests.flows.helpers import approval_messages, eventually, listener
from tests.flows.launch_support import local_ansible_settings
from tests.reliability.support import NGINX, NGINX_FAILED, cycle, dump

TAG = uuid.uuid4().hex[:10]
PROM_BEARER = f"prom-planted-bearer-{TAG}"
LOKI_PASSWORD = f"loki-planted-password-{TAG}"
LEDGER_FILE = f"ledger-planted-{TAG}"
# Secrets that only ever appear inside text: log lines and the job's output.
IN_TEXT = {
    "password": f"hunter2-planted-{TAG}",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwbGFudGVkIn0.c2lnbmF0dXJlcGxhbnRlZA",
    "aws": "AKIAPLANTEDSECRET123",
    "anthropic": f"sk-ant-api03-planted-in-a-log-{TAG}",
    "github": f"ghp_planted{TAG}0123456789abcdef",
    "slack": f"xoxb-planted-{TAG}-0000",
    "dsn": f"planted-db-pass-{TAG}",
    "pem": f"b3BlbnNzaC1rZXktdjEAAAAAplanted{TAG}",
    "api_key": f"planted-api-key-{TAG}",
}
LOG_LINES = [
    f"connecting to AWX as admin with {AWX_TOKEN}",  # a block secret, verbatim
    f"login failed: password={IN_TEXT['password']}",
    f"GET /v1 Authorization: Bearer {IN_TEXT['jwt']}",
    f"aws_access_key_id {IN_TEXT['aws']} used",
    f"ANTHROPIC key {IN_TEXT['anthropic']} rejected",
    f"cloning with {IN_TEXT['github']}",
    f"slack webhook token {IN_TEXT['slack']}",
    f"upstream postgres://app:{IN_TEXT['dsn']}@db-01:5432/app refused",
    f"-----BEGIN OPENSSH PRIVATE KEY----- {IN_TEXT['pem']} -----END OPENSSH PRIVATE KEY-----",
    f"loki says hello to {LOKI_PASSWORD}",
]
JOB_OUTPUT = [
    f"semaphore token in use: {SEMAPHORE_TOKEN}",
    f"api_key={IN_TEXT['api_key']}",
    f"Authorization: Bearer {PROM_BEARER}",
    "TASK [restart] *** ok",
]
POLICY = policy_with("noop_fix")


def planted() -> list[str]:
    """Every secret planted anywhere in this run."""
    return [
        PROM_BEARER,
        LOKI_PASSWORD,
        BOT_TOKEN,
        ANTHROPIC_TEST_KEY,
        AWX_TOKEN,
        SEMAPHORE_TOKEN,
        LEDGER_FILE,
        *IN_TEXT.values(),
    ]


async def _plant_blocks(stack: Stack, ledger_url: str) -> None:
    await PrometheusConnection(
        url=stack.prometheus.url, bearer_token=SecretStr(PROM_BEARER), timeout_seconds=5
    ).asave(stack.names.prometheus, overwrite=True)
    await LokiConnection(
        url=stack.loki.url,
        basic_auth_username="promtail",
        basic_auth_password=SecretStr(LOKI_PASSWORD),
        timeout_seconds=5,
    ).asave(stack.names.loki, overwrite=True)
    await LedgerDatabase(url=SecretStr(ledger_url)).asave(stack.names.ledger, overwrite=True)
    # Discord (BOT_TOKEN), Claude (ANTHROPIC_TEST_KEY), AWX (AWX_TOKEN) and Semaphore
    # (SEMAPHORE_TOKEN) keep the stack's planted secrets.


async def _everything_prefect_holds(since: datetime) -> dict[str, str]:
    """Logs (through the API), artifacts, flow-run parameters and state messages."""
    await APILogWorker.drain_all(timeout=15)  # logs still queued reach the server first
    await EventsWorker.drain_all(timeout=15)
    async with get_client() as client:
        logs: list[Any] = []
        while True:
            page = await client.read_logs(
                log_filter=LogFilter(timestamp=LogFilterTimestamp(after_=since)),
                limit=200,
                offset=len(logs),
            )
            logs += page
            if len(page) < 200:
                break
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since))
        )
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[r.id for r in runs])
            )
        )
    return {
        "logs": "\n".join(f"{log.name}: {log.message}" for log in logs),
        "artifacts": "\n".join(
            f"{a.key}: {a.description}\n{json.dumps(a.data)}" for a in artifacts
        ),
        "parameters": json.dumps([r.parameters for r in runs], default=str),
        "states": "\n".join(f"{r.name}: {r.state.message if r.state else ''}" for r in runs),
        "runs": str(len(runs)),
        "log_count": str(len(logs)),
        "artifact_keys": ",".join(sorted({a.key or "" for a in artifacts})),
    }


def _discord(stack: Stack) -> str:
    out = []
    for m in stack.discord.messages(CHANNEL_ID, include_deleted=True):
        out.append(m.content)
        out.append(json.dumps(m.embeds))
        for old in m.history:
            out += [old.content, json.dumps(old.embeds)]
    return "\n".join(out)


async def test_no_planted_secret_leaks_anywhere_after_a_whole_run(
    stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    since = datetime.now(UTC)
    ledger_url = f"sqlite+aiosqlite:///{tmp_path}/{LEDGER_FILE}.db"
    await _plant_blocks(stack, ledger_url)
    stack.awx.add_template(JobTemplate(30, "scripted", script=Script.succeed(output=JOB_OUTPUT)))
    stack.fleet.patch("web-02", {"units": {"nginx.service": {"state": "failed"}}})
    stack.fleet.journal("web-02", "nginx.service", LOG_LINES)
    await stack.scraped(NGINX_FAILED)
    stack.anthropic.enqueue(
        tool_answer(
            "submit_analysis",
            {
                "summary": "nginx failed on web-02",
                "actions": [
                    {"catalog_key": "noop_fix", "host": "web-02",
                     "parameters": {"unit": "nginx.service"}, "risk": "low",
                     "reason": "the unit failed", "expected_outcome": "nginx.service active",
                     "fingerprints": [NGINX]}
                ],
                "manual_issues": [],
            },
        )
    )  # fmt: skip

    async def keep_logging(stop: asyncio.Event) -> None:
        # Secrets keep arriving in the journal, so the verification's logs carry some.
        while not stop.is_set():
            stack.fleet.journal("web-02", "nginx.service", LOG_LINES[:3])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    stop = asyncio.Event()
    journal = asyncio.create_task(keep_logging(stop))
    try:
        async with listener(stack, policy=POLICY):
            run = asyncio.create_task(
                cycle(
                    stack, POLICY, dispatch="inline", dispatch_options={"settings": FAST_SETTINGS}
                )
            )
            [request] = await eventually(lambda: approval_messages(stack), what="the request")
            stack.discord.react(CHANNEL_ID, request.id, "✅", "alice")
            report = await asyncio.wait_for(run, 120)
    finally:
        stop.set()
        await journal

    [action] = report.actions
    assert action.dispatched and stack.awx.launches(30) == 1  # the whole run happened
    ledger = dump(ledger_url)
    assert '"state": "successful"' in ledger or "successful" in ledger
    held = await _everything_prefect_holds(since)
    assert int(held["runs"]) >= 2 and int(held["log_count"]) > 20
    assert "remediation-action-report" in held["artifact_keys"]
    places = {
        **{k: v for k, v in held.items() if k in ("logs", "artifacts", "parameters", "states")},
        "ledger": ledger,
        "prompts": json.dumps(stack.anthropic.message_bodies()),
        "discord": _discord(stack),
        "local logs": caplog.text,
    }
    leaks = {
        (where, secret[:24])
        for where, content in places.items()
        for secret in planted()
        if secret in content
    }
    assert leaks == set()
    # The secrets were really there to leak: masked where the text travelled.
    prompts = places["prompts"]
    assert prompts.count("[REDACTED]") >= len(LOG_LINES)
    assert "[REDACTED]" in places["ledger"] and "[REDACTED]" in places["discord"]
    assert "[REDACTED]" in places["artifacts"]


# --- every registered job runner's secrets, without naming a runner ------------------------
def _planted_runner_block(spec: JobRunnerSpec, stored: Any) -> Any:
    """The runner's stored block with a distinctive value in every secret field (and every
    unset optional text field filled, so that no field is left out, e.g. a user name a
    password goes with)."""
    assert spec.block is not None
    values = {name: getattr(stored, name) for name in spec.block.model_fields}
    for name in spec.secret_fields:
        values[name] = SecretStr(f"{spec.name}-{name}-planted-{TAG}")
    for name, info in spec.block.model_fields.items():
        if values[name] is None and name not in spec.secret_fields:
            values[name] = f"{spec.name}-{name}-{TAG}" if str in get_args(info.annotation) else None
    return spec.block.model_validate(values)


async def _plant_runner_secrets(stack: Stack) -> list[str]:
    """Every registered runner's block saved with planted secrets; the planted values."""
    planted_values = []
    for spec in runners_with_blocks():
        assert spec.block is not None and spec.secret_fields, spec.name
        name = getattr(stack.names, spec.names_field)
        block = _planted_runner_block(spec, await spec.block.aload(name))
        await block.asave(name, overwrite=True)
        planted_values += [getattr(block, f).get_secret_value() for f in spec.secret_fields]
    return planted_values


def _printing_playbook(path: Path, lines: list[str]) -> str:
    """A local playbook whose output carries `lines` (a job echoing credentials)."""
    items = "\n".join(f"          - {json.dumps(line)}" for line in lines)
    path.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.debug:\n        msg:\n" + items + "\n"
    )
    return str(path)


async def test_every_registered_runners_secrets_are_masked_in_the_prompt_and_in_chat(
    stack: Stack, tmp_path: Path
) -> None:
    # The runners' blocks are loaded by the cycle (for redaction only) and by the action
    # run (every runner's block); the job runs locally, so no runner is ever contacted
    # and any value may be planted.
    secrets = await _plant_runner_secrets(stack)
    said = [f"handshake with {value} done" for value in secrets]  # no pattern matches these
    playbook = _printing_playbook(tmp_path / "echo.yml", [*said, "restart ok"])
    policy = {
        **FAST_POLICY,
        "catalog": [
            {
                "key": "echo_fix", "runner": "ansible", "playbook": playbook,
                "description": "A local job that prints what it was given.",
                "addresses": ["failed_unit"], "max_job_seconds": 60,
                "parameters": {"unit": {"pattern": r"[a-z.]+", "from_subject": True}},
            }
        ],
    }  # fmt: skip
    stack.fleet.patch("web-02", {"units": {"nginx.service": {"state": "failed"}}})
    stack.fleet.journal("web-02", "nginx.service", said)
    await stack.scraped(NGINX_FAILED)
    stack.anthropic.enqueue(
        tool_answer(
            "submit_analysis",
            {
                "summary": "nginx failed on web-02",
                "actions": [
                    {"catalog_key": "echo_fix", "host": "web-02",
                     "parameters": {"unit": "nginx.service"}, "risk": "low",
                     "reason": "the unit failed", "expected_outcome": "nginx.service active",
                     "fingerprints": [NGINX]}
                ],
                "manual_issues": [],
            },
        )
    )  # fmt: skip
    async with listener(stack, policy=policy):
        run = asyncio.create_task(
            cycle(
                stack,
                policy,
                dispatch="inline",
                dispatch_options={"settings": local_ansible_settings(stack)},
            )
        )
        [request] = await eventually(lambda: approval_messages(stack), what="the request")
        stack.discord.react(CHANNEL_ID, request.id, "✅", "alice")
        report = await asyncio.wait_for(run, 120)

    [action] = report.actions
    assert action.dispatched
    prompts = [json.dumps(body) for body in stack.anthropic.message_bodies()]
    chat = _discord(stack)
    leaks = {
        (where, value)
        for where, content in (("prompts", "\n".join(prompts)), ("discord", chat))
        for value in secrets
        if value in content
    }
    assert leaks == set()
    # The secrets were really there: masked in the analysis prompt (the journal) and in
    # the chat's result (the job's output), every one of them.
    masked = "handshake with [REDACTED] done"
    assert prompts[0].count(masked) >= len(secrets)
    assert chat.count(masked) >= len(secrets) and "restart ok" in chat
