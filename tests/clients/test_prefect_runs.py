"""`PrefectRuns` against the real Prefect test server.

Paused action runs are made as a paused `remediate_action` leaves them: a flow run of the
`remediate-action` flow, PAUSED with its approval form's keyset, the form's schema stored
as a flow-run input (what `pause_flow_run(wait_for_input=...)` writes).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from prefect import flow
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.input.run_input import keyset_from_base_key
from prefect.states import Cancelled, Paused, Running

from clients.prefect_runs import (
    ACTION_RUNS_PAGE,
    ACTION_TAG,
    RUN_IDS_PER_QUERY,
    ContinuationEnded,
    PrefectRuns,
    action_id_of,
)
from core.approval import ResumeAnswer, ResumeOutcome
from flows.approval_input import ApprovalInput

pytestmark = pytest.mark.harness
MANY = ACTION_RUNS_PAGE + 5  # more than one page of action runs (and of paused runs)


@flow(name="remediate-action")
def action_flow() -> None:
    """Stands in for `remediate_action`: only its flow name matters here."""


@flow(name="something-else")
def other_flow() -> None:
    """A flow that is not an action's: its paused runs are never listed."""


async def _paused(
    client: PrefectClient, action_id: str, *, form: bool = True, of: object = action_flow
) -> FlowRun:
    """A run PAUSED with an approval form; its schema stored unless `form` is False (a
    run still entering its pause)."""
    run = await client.create_flow_run(of, tags=[ACTION_TAG, f"action:{action_id}"])
    await client.set_flow_run_state(run.id, Running(), force=True)
    key = f"approve-{action_id}"
    keyset = keyset_from_base_key(f"paused-{key}")
    state = Paused(timeout_seconds=3600, pause_key=key)
    state.state_details.run_input_keyset = keyset
    await client.set_flow_run_state(run.id, state, force=True)
    if form:
        schema = json.dumps(ApprovalInput.model_json_schema())
        await client.create_flow_run_input(run.id, keyset["schema"], schema)
    return await client.read_flow_run(run.id)


@pytest.fixture(scope="module")
async def many(prefect_harness: str) -> AsyncIterator[list[FlowRun]]:
    """More paused action runs than one page holds; cancelled afterwards (the server is
    shared by the session)."""
    async with get_client() as client:
        runs = [await _paused(client, f"many-{i}", form=False) for i in range(MANY)]
        yield runs
        for run in runs:
            await client.set_flow_run_state(run.id, Cancelled(), force=True)


@pytest.fixture
async def runs(prefect_harness: str, many: list[FlowRun]) -> AsyncIterator[PrefectRuns]:
    """The client under test. The server is shared by the session: every `remediate-action`
    run a test creates and leaves paused or running is cancelled afterwards, so no other
    test (a listener, a reconciler, a count of paused runs) ever sees it. (After `many`,
    which is cancelled with its module.)"""
    since = datetime.now(UTC)
    async with PrefectRuns.open() as opened:
        yield opened
    async with get_client() as client:
        left = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["remediate-action"])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.PAUSED, StateType.RUNNING])
                ),
                expected_start_time=FlowRunFilterExpectedStartTime(after_=since),
            ),
        )
        for run in left:
            await client.set_flow_run_state(run.id, Cancelled(), force=True)


async def test_all_paused_action_runs_are_found_beyond_one_page(
    runs: PrefectRuns, many: list[FlowRun]
) -> None:
    async with get_client() as client:
        other = await _paused(client, "not-an-action", of=other_flow)
    found = await runs.paused_action_runs()
    assert len(found) > RUN_IDS_PER_QUERY
    assert {str(r.id) for r in many} <= found.keys()
    assert str(other.id) not in found


async def test_paused_runs_by_id_are_asked_in_chunks_and_only_paused_ones_return(
    runs: PrefectRuns, many: list[FlowRun]
) -> None:
    async with get_client() as client:
        running = await client.create_flow_run(action_flow, tags=[ACTION_TAG])
        await client.set_flow_run_state(running.id, Running(), force=True)
    ids = [str(r.id) for r in many] + [str(running.id), "not-a-uuid", str(many[0].id)]
    assert len(ids) > RUN_IDS_PER_QUERY
    found = await runs.paused_action_runs(ids)
    assert found.keys() == {str(r.id) for r in many}
    assert all(r.state and r.state.type == StateType.PAUSED for r in found.values())
    assert await runs.paused_action_runs([]) == {}


async def test_action_runs_are_grouped_by_action_beyond_one_page(
    runs: PrefectRuns, many: list[FlowRun]
) -> None:
    since = min(r.expected_start_time for r in many if r.expected_start_time)
    by_action = await runs.action_runs(since - timedelta(seconds=1))
    for i, run in enumerate(many):
        assert [str(r.id) for r in by_action[f"many-{i}"]] == [str(run.id)]
    assert action_id_of(many[0]) == "many-0"
    assert await runs.action_runs(datetime.now(UTC) + timedelta(hours=1)) == {}


async def test_resume_answers_applied_then_taken_and_the_applied_input_is_read_back(
    runs: PrefectRuns,
) -> None:
    async with get_client() as client:
        run = await _paused(client, f"a-{uuid.uuid4().hex[:8]}")
    assert await runs.applied_input(run.id) is None  # still paused: nothing applied
    answer = await runs.resume(str(run.id), "approve", "ok " * 300)
    assert answer == ResumeAnswer(outcome=ResumeOutcome.APPLIED, reason="")
    applied = await runs.applied_input(str(run.id))
    assert applied == {"decision": "approve", "comment": ("ok " * 300)[:500]}
    again = await runs.resume(run.id, "reject", "")
    assert again.outcome is ResumeOutcome.TAKEN
    assert "not paused" in again.reason


async def test_resume_before_the_form_is_stored_is_retried_and_a_bad_input_refused(
    runs: PrefectRuns,
) -> None:
    async with get_client() as client:
        entering = await _paused(client, f"e-{uuid.uuid4().hex[:8]}", form=False)
        paused = await _paused(client, f"r-{uuid.uuid4().hex[:8]}")
    retry = await runs.resume(entering.id, "approve")
    assert retry.outcome is ResumeOutcome.RETRY and "schema not found" in retry.reason
    refused = await runs.resume(paused.id, "maybe")  # type: ignore[arg-type]
    assert refused.outcome is ResumeOutcome.REFUSED and "maybe" in refused.reason
    state = await runs.run_state(paused.id)
    assert state is not None and state.type == StateType.PAUSED  # it can still be answered
    assert await runs.applied_input(paused.id) is None


async def test_tag_mark_crashed_state_and_cancelling(runs: PrefectRuns) -> None:
    async with get_client() as client:
        run = await client.create_flow_run(action_flow, tags=["kept"])
        await client.set_flow_run_state(run.id, Running(), force=True)
    await runs.tag_action_run(str(run.id), "act-1")
    tagged = await runs.read_run(run.id)
    assert sorted(tagged.tags) == sorted(["kept", ACTION_TAG, "action:act-1"])
    assert action_id_of(tagged) == "act-1"
    assert not await runs.is_cancelling(run.id)
    await runs.mark_crashed(run.id, "Its process died (no heartbeat).")
    state = await runs.run_state(str(run.id))
    assert state is not None and state.type == StateType.CRASHED
    assert state.message == "Its process died (no heartbeat)."


async def test_deployment_reads_and_a_continuation_that_already_ended(
    runs: PrefectRuns,
) -> None:
    name = f"prefect-runs-{uuid.uuid4().hex[:6]}"
    async with get_client() as client:
        flow_id = await client.create_flow(action_flow)
        deployment_id = await client.create_deployment(
            flow_id=flow_id, name=name, parameters={"blocks": {"ledger": "x"}}
        )
    full = f"remediate-action/{name}"
    assert await runs.deployment_id(full) == deployment_id
    assert await runs.deployment_id("remediate-action/none-such") is None
    assert await runs.deployment_parameters(full) == {"blocks": {"ledger": "x"}}
    assert await runs.deployment_parameters("remediate-action/none-such") == {}
    assert await runs.latest_run_of(full) is None

    key = f"reconcile-{uuid.uuid4()}"
    labels = [ACTION_TAG, "action:c-1"]
    first = await runs.start_continuation(deployment_id, {"x": 1}, key, labels)
    same = await runs.start_continuation(full, {"x": 1}, key, labels)
    assert same.id == first.id and set(labels) <= set(first.tags)
    assert (await runs.latest_run_of(full)).id == first.id  # type: ignore[union-attr]
    _, scheduled = await runs.runs_of(full, [StateType.SCHEDULED])
    assert [r.id for r in scheduled] == [first.id]
    async with get_client() as client:
        await client.set_flow_run_state(first.id, Cancelled(), force=True)
    with pytest.raises(ContinuationEnded) as ended:
        await runs.start_continuation(deployment_id, {"x": 1}, key, labels)
    assert ended.value.run.id == first.id


async def test_variables_read_set_and_unset(runs: PrefectRuns) -> None:
    name = f"prefect_runs_{uuid.uuid4().hex[:8]}"
    assert await runs.read_variable(name, default=False) is False
    await runs.set_variable(name, True)
    assert await runs.read_variable(name) is True
    await runs.set_variable(name, "off")
    assert await runs.read_variable(name) == "off"
    await runs.unset_variable(name)
    await runs.unset_variable(name)  # already gone: no error
    assert await runs.read_variable(name) is None
