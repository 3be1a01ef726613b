"""Shared set-up for the chart-branch tests (`tests/e2e/test_chart_branches.py`).

The path users take: the cycle runs as a flow and dispatches each action as a run of the
`remediate-action` DEPLOYMENT, picked up by a real `serve` process
(`tests.fixtures.serve.ServedDeployment`, started once per module), or — the
`remediation-cycle` command's local path — runs it as an in-process subflow
(`run_cycle(..., dispatch="inline")`). People decide by reacting in Discord (the real
listener, `listening`) or by resuming in the Prefect UI (`tests.flows.actions.resume`, the
API call the UI makes). Everything here reads what the sandbox servers received, Prefect's
flow runs and the ledger; nothing of the project is mocked.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import Cancelled
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from clients.ledger_schema import metadata
from core.policy import RiskRegister
from core.records import ActionRecord, ActionStatus
from core.report import CycleReport
from flows.remediation_cycle import remediation_cycle
from sandbox.anthropic_wire import tool_answer
from sandbox.jobs import JobTemplate, Script
from tests.fixtures.loki_discord import CHANNEL_ID
from tests.fixtures.serve import DEPLOYMENT
from tests.fixtures.stack import FAST_POLICY, FAST_SETTINGS, Stack
from tests.flows.actions import resume
from tests.flows.helpers import eventually, listener

ACTION_FLOW = "remediate-action"
SCRIPTED, FAILING, STUCK = 30, 31, 32  # AWX templates: succeeds in ~0.3 s, fails, hangs
# FAST_SETTINGS, with paused runs asking Prefect for their resume every second, not every
# half second (the same pace as the listener below): less load on the shared test server.
SETTINGS: dict[str, Any] = {**FAST_SETTINGS, "pause_poll_seconds": 1.0}
LISTENER_POLL_SECONDS = 1.0
PROBE_SECONDS = 0.5  # between reads of Prefect while waiting (each costs the server CPU)
OPEN = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED]


# --- policy and what Claude proposes -------------------------------------------------------
def entry(key: str, template: int, *, max_job_seconds: int = 60) -> dict[str, Any]:
    """A catalog entry running one of the AWX sandbox's scripted templates on a failed unit."""
    return {
        "key": key,
        "runner": "awx",
        "template_id": template,
        "description": f"Scripted sandbox job {template} (the job content does not matter).",
        "addresses": ["failed_unit"],
        "parameters": {"unit": {"pattern": r"[a-z.]+", "from_subject": True}},
        "max_job_seconds": max_job_seconds,
    }


SCRIPTED_CATALOG = [
    entry("scripted_fix", SCRIPTED),
    entry("failing_fix", FAILING),
    entry("stuck_fix", STUCK, max_job_seconds=10),  # the catalog's minimum
]


def scripted_policy(deadline_seconds: int | None = None) -> dict[str, Any]:
    """FAST_POLICY with the scripted catalog; with `deadline_seconds`, every risk level of
    the default register decides that soon (low runs at its deadline, high does not)."""
    policy: dict[str, Any] = {**FAST_POLICY, "catalog": SCRIPTED_CATALOG}
    if deadline_seconds is not None:
        levels = RiskRegister().model_dump()
        policy["risk"] = {
            name: {**level, "deadline_seconds": deadline_seconds} for name, level in levels.items()
        }
    return policy


# A resumed suspended run waits for its worker's next poll and a new process, then runs
# its flow again from the top: on a loaded 2-core box that took up to ~70 s.
RERUN_SECONDS = 120


def rerun_time(wait: str, seconds: float) -> float:
    """How long to wait for what follows a decision: longer when the run was suspended."""
    return seconds + (RERUN_SECONDS if wait == "suspend" else 0)


def waiting(policy: dict[str, Any], wait: str) -> dict[str, Any]:
    """The policy with every risk level waiting `wait` ("pause": a live process;
    "suspend": the run ends and is re-run from the top when resumed)."""
    levels = policy.get("risk") or RiskRegister().model_dump()
    return {**policy, "risk": {n: {**level, "wait": wait} for n, level in levels.items()}}


async def waited_suspended(run_id: str | uuid.UUID) -> bool:
    """Whether the run ever waited suspended (a state named "Suspended")."""
    async with get_client() as client:
        states = await client.read_flow_run_states(uuid.UUID(str(run_id)))
    return any(s.name == "Suspended" for s in states)


def add_scripted_templates(stack: Stack) -> None:
    """Templates 31 (fails) and 32 (runs until cancelled) beside 30; gone at the reset."""
    stack.awx.add_template(
        JobTemplate(
            FAILING,
            "failing",
            script=Script.fail(
                output=["TASK [fix] ***", "fatal: [host]: FAILED! => scripted failure"]
            ),
        )
    )
    stack.awx.add_template(JobTemplate(STUCK, "stuck", script=Script.stuck()))


def fp(host: str, unit: str = "nginx.service") -> str:
    return f"{host}|failed_unit|{unit}"


def proposed(key: str, host: str, risk: str = "low", unit: str = "nginx.service") -> dict:
    return {
        "catalog_key": key,
        "host": host,
        "parameters": {"unit": unit},
        "risk": risk,
        "reason": f"{unit} failed on {host}",
        "expected_outcome": f"{unit} active",
        "fingerprints": [fp(host, unit)],
    }


def claude_proposes(stack: Stack, *actions: dict, manual: Iterable[dict] = ()) -> None:
    """Script Claude's next analysis (the verdicts stay the sandbox model's)."""
    stack.anthropic.enqueue(
        tool_answer(
            "submit_analysis",
            {
                "summary": "scripted analysis",
                "actions": list(actions),
                "manual_issues": list(manual),
            },
        )
    )


# --- the fleet and the cycle ---------------------------------------------------------------
async def fail_units(stack: Stack, *hosts: str, unit: str = "nginx.service") -> None:
    for host in hosts:
        stack.fleet.patch(host, {"units": {unit: {"state": "failed"}}})
    await stack.scraped(
        f'count(node_systemd_unit_state{{name="{unit}",state="failed"}} == 1) == {len(hosts)}'
    )


async def run_cycle(
    stack: Stack,
    policy: dict[str, Any] = FAST_POLICY,
    settings: dict[str, Any] = SETTINGS,
    dispatch: str = "deployment",
) -> CycleReport:
    """One cycle, run as a flow. It dispatches each action to the served deployment and
    ends at once; with `dispatch="inline"` (the `remediation-cycle` command's local path)
    it runs the actions as in-process subflows and ends when they have."""
    return await remediation_cycle(
        policy=policy,
        blocks=stack.names,
        dispatch=dispatch,
        dispatch_options={"settings": {**settings, "deployment": DEPLOYMENT}},
    )


def listening(stack: Stack, policy: dict[str, Any] = FAST_POLICY) -> Any:
    """The real approval listener polling Discord in the background (same policy as the
    cycle: it applies the risk register)."""
    return listener(stack, poll_seconds=LISTENER_POLL_SECONDS, policy=policy)


# --- Prefect --------------------------------------------------------------------------------
async def flow_run(run_id: str | uuid.UUID) -> FlowRun:
    async with get_client() as client:
        return await client.read_flow_run(uuid.UUID(str(run_id)))


async def action_runs(*states: StateType) -> list[FlowRun]:
    """Every `remediate-action` run (in these states)."""
    async with get_client() as client:
        return await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[ACTION_FLOW])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(states)))
            )
            if states
            else None,
        )


async def parent_flow_run_id(run: FlowRun) -> str | None:
    if run.parent_task_run_id is None:
        return None
    async with get_client() as client:
        return str((await client.read_task_run(run.parent_task_run_id)).flow_run_id)


async def awaiting_approval(
    stack: Stack, count: int, timeout: float = 120
) -> dict[str, ActionRecord]:
    """Wait until `count` actions await approval at the same time: each recorded in the
    ledger with its request posted to Discord, and its flow run PAUSED; {host: record}."""

    async def probe() -> dict[str, ActionRecord] | None:
        async with stack.ledger() as ledger:
            waiting = await ledger.actions.actions_with_status(ActionStatus.AWAITING_APPROVAL)
        if len(waiting) != count:
            return None
        for rec in waiting:
            if rec.request is None or not rec.request.message_id or not rec.request.flow_run_id:
                return None
            run = await flow_run(rec.request.flow_run_id)
            if run.state is None or run.state.type is not StateType.PAUSED:
                return None
        return {rec.proposal.host: rec for rec in waiting}

    return await eventually(
        probe, timeout=timeout, interval=PROBE_SECONDS, what=f"{count} action(s) paused"
    )


async def all_ended(report: CycleReport, timeout: float = 120) -> dict[str, FlowRun]:
    """Wait until every dispatched run is final; {action_id: run}."""
    ids = {a.action_id: a.flow_run_id for a in report.actions if a.dispatched}

    async def probe() -> dict[str, FlowRun] | None:
        runs = {a: await flow_run(r) for a, r in ids.items()}
        return runs if all(r.state and r.state.is_final() for r in runs.values()) else None

    return await eventually(
        probe, timeout=timeout, interval=PROBE_SECONDS, what="action runs to end"
    )


async def end_leftover_runs() -> None:
    """After a test: nothing of it may live on into the next (which has another ledger).
    Paused runs are rejected as the UI would; anything else still open is cancelled."""
    for run in await action_runs(StateType.PAUSED):
        try:
            await resume(run.id, "reject", "test cleanup")
        except Exception:  # noqa: BLE001, S110 - it may have ended meanwhile
            pass
    try:
        await eventually(_none_open, timeout=30, interval=0.5, what="runs to end")
    except AssertionError:
        pass  # cancelled below
    async with get_client() as client:
        left = await action_runs(*OPEN)
        for run in left:
            await client.set_flow_run_state(run.id, Cancelled(message="test cleanup"), force=True)


async def _none_open() -> bool:
    return not await action_runs(*OPEN)


# --- Discord ---------------------------------------------------------------------------------
def messages(stack: Stack) -> list[Any]:
    return stack.discord.messages(CHANNEL_ID)


def title(message: Any) -> str:
    return (message.embeds[0].get("title") if message.embeds else message.content) or ""


def titles(stack: Stack) -> list[str]:
    return [title(m) for m in messages(stack)]


def titled(stack: Stack, prefix: str) -> list[Any]:
    return [m for m in messages(stack) if title(m).startswith(prefix)]


def fields(message: Any) -> dict[str, str]:
    return {f["name"]: f["value"] for f in message.embeds[0].get("fields", [])}


def request_of(stack: Stack, rec: ActionRecord) -> Any:
    assert rec.request is not None and rec.request.message_id is not None
    return stack.discord.message(CHANNEL_ID, rec.request.message_id)


def react(stack: Stack, rec: ActionRecord, emoji: str, user: str) -> None:
    stack.discord.react(CHANNEL_ID, request_of(stack, rec).id, emoji, user)


# --- the ledger ------------------------------------------------------------------------------
async def record(stack: Stack, action_id: str | None) -> ActionRecord | None:
    async with stack.ledger() as ledger:
        return await ledger.actions.get_action(action_id or "")


async def records(stack: Stack, report: CycleReport) -> dict[str, ActionRecord]:
    """{host: the ledger's record} of every action the cycle allowed."""
    found = {}
    for a in report.actions:
        if a.action_id:
            rec = await record(stack, a.action_id)
            assert rec is not None, a
            found[a.host] = rec
    return found


async def events(stack: Stack, action_id: str) -> list[str]:
    async with stack.ledger() as ledger:
        return [e["event"] for e in await ledger.operations.audit_trail(action_id=action_id)]


async def attempts(stack: Stack) -> list[tuple[str, str, bool]]:
    """(fingerprint, outcome, counts) of every attempt row, oldest first."""
    return [
        (r["fingerprint"], r["outcome"], bool(r["counts"])) for r in await rows(stack, "attempts")
    ]


async def episodes(stack: Stack) -> dict[str, dict[str, Any]]:
    """The open issue episodes by fingerprint."""
    async with stack.ledger() as ledger:
        return {e["fingerprint"]: e for e in await ledger.episodes.open_episodes()}


async def rows(stack: Stack, table: str) -> list[dict[str, Any]]:
    """Every row of one ledger table, in insertion order."""
    t = metadata.tables[table]
    engine = create_async_engine(stack.ledger_url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(select(t).order_by(*t.primary_key.columns))
            return [dict(r._mapping) for r in result]
    finally:
        await engine.dispose()


async def cycle_row(stack: Stack, cycle_id: str) -> dict[str, Any]:
    """The cycle's row in the ledger's `cycles` table."""
    [row] = [r for r in await rows(stack, "cycles") if r["cycle_id"] == cycle_id]
    return row
