"""The Prefect API as this project uses it: finding action runs, answering their pauses,
tagging and marking them, continuing them, and the few deployment and Variable reads.

One class, `PrefectRuns`, built from a `PrefectClient` (`PrefectRuns(client)`) or opened
on its own (`async with PrefectRuns.open() as runs:`). Only `tasks/` use it.

Resuming a paused run answers with a typed `ResumeAnswer` (`core.approval.resume_outcome`
reads Prefect's ACCEPT / ABORT / REJECT), never a status string. Failures callers branch on
are exception classes: `ResumeRejected` (Prefect refused a resume for a reason that will not
pass by waiting) and `ContinuationEnded` (the idempotent continuation run of a dead run
already exists and is over).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Literal

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import ArtifactCreate, VariableCreate, VariableUpdate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments import arun_deployment
from prefect.exceptions import ObjectNotFound
from prefect.logging import get_logger
from prefect.states import Crashed

from clients.errors import UpstreamError
from core import liveness
from core.approval import ResumeAnswer, resume_outcome

ACTION_FLOW = "remediate-action"
ACTION_TAG = "remediation-action"
RUN_IDS_PER_QUERY = 100  # ids per `read_flow_runs` filter (and its page size)
ACTION_RUNS_PAGE = 200
ACTION_RUNS_MAX_PAGES = 10
# The states `action_runs` lists: dead, live, and about to start (not COMPLETED/CANCELLED).
_LISTED = (
    StateType.CRASHED,
    StateType.FAILED,
    StateType.RUNNING,
    StateType.PAUSED,
    StateType.SCHEDULED,
    StateType.PENDING,
)
_COMMENT_LIMIT = 500  # the resume form's comment field

log = get_logger("remediation.prefect")


class PrefectError(UpstreamError):
    service = "Prefect"


class ResumeRejected(PrefectError):
    """Prefect refused the resume for a reason other than "schema not found"."""


class ContinuationEnded(PrefectError):
    """The fresh run for a dead one already exists and has ended."""

    def __init__(self, run: FlowRun) -> None:
        super().__init__("start_continuation", f"run {run.id} ended {state_name(run)}")
        self.run = run


def state_name(run: FlowRun | None) -> str:
    """A run's state name as people read it ("Crashed", "Paused"…)."""
    return run.state.name if run is not None and run.state else "unknown state"


def action_id_of(run: FlowRun) -> str | None:
    """The action a `remediate-action` run handles: its `action` parameter, else its
    `action:<id>` tag (`core.liveness.action_id_of`)."""
    return liveness.action_id_of(run.parameters, run.tags)


def _uuid(run_id: str | uuid.UUID) -> uuid.UUID:
    return run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(str(run_id))


class PrefectRuns:
    """The project's Prefect API calls, over one `PrefectClient`."""

    def __init__(self, client: PrefectClient) -> None:
        self.client = client

    @classmethod
    @asynccontextmanager
    async def open(cls) -> AsyncIterator[PrefectRuns]:
        async with get_client() as client:
            yield cls(client)

    # --- finding action runs ------------------------------------------------------------
    async def paused_action_runs(self, run_ids: Iterable[str] | None = None) -> dict[str, FlowRun]:
        """PAUSED `remediate-action` runs by id: those among `run_ids` (asked
        `RUN_IDS_PER_QUERY` ids at a time; a malformed id is skipped), or all of them
        (paged)."""
        state = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
        flows = FlowFilter(name=FlowFilterName(any_=[ACTION_FLOW]))
        found: dict[str, FlowRun] = {}
        if run_ids is None:
            offset = 0
            while True:
                page = await self.client.read_flow_runs(
                    flow_filter=flows,
                    flow_run_filter=FlowRunFilter(state=state),
                    limit=RUN_IDS_PER_QUERY,
                    offset=offset,
                )
                found.update((str(r.id), r) for r in page)
                if len(page) < RUN_IDS_PER_QUERY:
                    return found
                offset += len(page)
        ids = []
        for rid in dict.fromkeys(run_ids):
            try:
                ids.append(uuid.UUID(rid))
            except ValueError:
                log.warning("%r is not a flow run id", rid)
        for i in range(0, len(ids), RUN_IDS_PER_QUERY):
            chunk = ids[i : i + RUN_IDS_PER_QUERY]
            page = await self.client.read_flow_runs(
                flow_filter=flows,
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk), state=state),
                limit=len(chunk),
            )
            found.update((str(r.id), r) for r in page)
        return found

    async def action_runs(self, since: datetime) -> dict[str, list[FlowRun]]:
        """`remediate-action` runs expected to start since `since` that are not over (or
        ended crashed or failed), by action id, newest first (at most
        `ACTION_RUNS_MAX_PAGES` pages of `ACTION_RUNS_PAGE`)."""
        found: dict[str, list[FlowRun]] = {}
        for page in range(ACTION_RUNS_MAX_PAGES):
            runs = await self.client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[ACTION_FLOW])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(_LISTED))),
                    expected_start_time=FlowRunFilterExpectedStartTime(after_=since),
                ),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=ACTION_RUNS_PAGE,
                offset=page * ACTION_RUNS_PAGE,
            )
            for run in runs:
                action_id = action_id_of(run)
                if action_id is not None:
                    found.setdefault(action_id, []).append(run)
            if len(runs) < ACTION_RUNS_PAGE:
                break
        return found

    async def read_run(self, run_id: str | uuid.UUID) -> FlowRun:
        return await self.client.read_flow_run(_uuid(run_id))

    async def run_state(self, run_id: str | uuid.UUID) -> State | None:
        return (await self.read_run(run_id)).state

    async def is_cancelling(self, run_id: str | uuid.UUID) -> bool:
        """Whether someone asked to cancel the run (it should then end Cancelled)."""
        state = await self.run_state(run_id)
        return state is not None and state.is_cancelling()

    # --- answering a pause --------------------------------------------------------------
    async def resume(
        self,
        run_id: str | uuid.UUID,
        decision: Literal["approve", "reject"],
        comment: str | None = None,
    ) -> ResumeAnswer:
        """Resume a paused run with the approval form's input; what Prefect answered."""
        answer = await self.client.resume_flow_run(
            _uuid(run_id),
            run_input={"decision": decision, "comment": (comment or "")[:_COMMENT_LIMIT]},
        )
        status = answer.status
        reason = str(getattr(answer.details, "reason", "") or "")
        return ResumeAnswer(
            outcome=resume_outcome(str(getattr(status, "value", status)), reason), reason=reason
        )

    async def applied_input(self, run_id: str | uuid.UUID) -> dict[str, Any] | None:
        """The input the run's latest pause was resumed with, or None (not resumed with
        input: still paused, failed, crashed or cancelled)."""
        rid = _uuid(run_id)
        states = await self.client.read_flow_run_states(rid)
        paused = [
            s
            for s in states
            if s.type == StateType.PAUSED and (s.state_details.run_input_keyset or {})
        ]
        if not paused:
            return None
        latest = max(paused, key=lambda s: s.timestamp)
        key = (latest.state_details.run_input_keyset or {}).get("response")
        if key is None:
            return None
        try:
            raw = await self.client.read_flow_run_input(rid, key)
        except Exception:  # noqa: BLE001 - no stored response (a 404): nothing applied
            return None
        data = json.loads(raw) if isinstance(raw, str) else raw
        return data if isinstance(data, dict) and data.get("decision") else None

    # --- marking runs -------------------------------------------------------------------
    async def tag_action_run(self, run_id: str | uuid.UUID, action_id: str) -> None:
        """Tags let people (and the listener, as a cross-check) find action runs in the UI."""
        rid = _uuid(run_id)
        run = await self.client.read_flow_run(rid)
        tags = sorted({*run.tags, ACTION_TAG, f"action:{action_id}"})
        await self.client.update_flow_run(rid, tags=tags)

    async def mark_crashed(self, run_id: str | uuid.UUID, message: str) -> None:
        """Force the run CRASHED with `message` (its process is gone; Prefect still shows
        it RUNNING or PAUSED)."""
        await self.client.set_flow_run_state(_uuid(run_id), Crashed(message=message), force=True)

    # --- deployments ----------------------------------------------------------------------
    async def deployment_id(self, name: str) -> uuid.UUID | None:
        """The id of the deployment `flow/deployment`, or None when there is none."""
        try:
            return (await self.client.read_deployment_by_name(name)).id
        except ObjectNotFound:
            return None

    async def deployment_parameters(self, name: str) -> dict[str, Any]:
        """The parameters a deployment declares (empty when it cannot be read: a launch
        then fails on its own and says why)."""
        try:
            return dict((await self.client.read_deployment_by_name(name)).parameters or {})
        except ObjectNotFound:
            return {}

    async def run_deployment(
        self,
        deployment: str | uuid.UUID,
        parameters: dict[str, Any],
        *,
        idempotency_key: str,
        tags: Iterable[str],
        as_subflow: bool = True,
    ) -> FlowRun:
        """Create a run of `deployment` and return at once (`timeout=0`); linked as a
        subflow of the calling flow run when `as_subflow`. The same idempotency key
        returns the same run."""
        return await arun_deployment(
            deployment,
            client=self.client,
            parameters=parameters,
            timeout=0,
            as_subflow=as_subflow,
            idempotency_key=idempotency_key,
            tags=list(tags),
        )

    async def start_continuation(
        self,
        deployment: str | uuid.UUID,
        parameters: dict[str, Any],
        idempotency_key: str,
        tags: Iterable[str],
    ) -> FlowRun:
        """The fresh run continuing a dead one (not a subflow of the caller). Its
        idempotency key is derived from the dead run, so a second reconciler creating it
        gets the same run back; raises `ContinuationEnded` when that run is already over
        (it ran, or was cancelled, and left the action undone)."""
        run = await self.run_deployment(
            deployment, parameters, idempotency_key=idempotency_key, tags=tags, as_subflow=False
        )
        if run.state is not None and run.state.is_final():
            raise ContinuationEnded(run)
        return run

    async def runs_of(
        self, deployment: str, states: Iterable[StateType]
    ) -> tuple[uuid.UUID, list[FlowRun]]:
        """The deployment's id and its runs in `states` (raises `ObjectNotFound` when
        there is no such deployment)."""
        found = await self.client.read_deployment_by_name(deployment)
        runs = await self.client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(states)))
            ),
        )
        return found.id, runs

    async def latest_run_of(self, deployment: str) -> FlowRun | None:
        """The deployment's run expected to start last (None: no run, or no deployment)."""
        try:
            found = await self.client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            return None
        runs = await self.client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
        return runs[0] if runs else None

    async def start_run(self, deployment_id: uuid.UUID, tags: Iterable[str]) -> FlowRun:
        """A new run of the deployment with its own parameters (not a subflow)."""
        return await self.client.create_flow_run_from_deployment(deployment_id, tags=list(tags))

    async def create_markdown_artifact(
        self, key: str, markdown: str, description: str, flow_run_id: str | None
    ) -> None:
        """A markdown artifact on another run (e.g. a cycle's summary, written by the
        cycle's last action to end)."""
        await self.client.create_artifact(
            ArtifactCreate(
                key=key,
                type="markdown",
                data=markdown,
                description=description,
                flow_run_id=_uuid(flow_run_id) if flow_run_id else None,
            )
        )

    # --- Variables ------------------------------------------------------------------------
    async def read_variable(self, name: str, default: Any = None) -> Any:
        variable = await self.client.read_variable_by_name(name)
        return default if variable is None else variable.value

    async def set_variable(self, name: str, value: Any) -> None:
        if await self.client.read_variable_by_name(name) is None:
            await self.client.create_variable(VariableCreate(name=name, value=value))
        else:
            await self.client.update_variable(VariableUpdate(name=name, value=value))

    async def unset_variable(self, name: str) -> None:
        try:
            await self.client.delete_variable_by_name(name)
        except ObjectNotFound:
            pass
