"""Semaphore UI client: launch, poll, read, stop and find tasks of one project.

Wire: Semaphore's REST API (`/api/project/{project_id}/tasks...`) with
`Authorization: Bearer <API token>`. Extra vars travel in the task's `environment`, a
JSON-encoded *string*. Many Semaphore errors have an empty body (an unknown task id is a
bare 400), so error details fall back to the status line.

Status words: Semaphore's `error` covers failed playbooks, so it maps to FAILED;
`rejected` (a person declined a task waiting for confirmation: nothing ran) maps to
CANCELED, like `stopped`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx

from clients.errors import SemaphoreError
from clients.jobs_common import (
    JobRunnerClient,
    elapsed,
    has_marker,
    parse_time,
    require_limit,
)
from core.wire import JobRef, JobState, JobStatus

# Every Semaphore task status (pkg/task_logger TaskStatus).
SEMAPHORE_STATES: dict[str, JobState] = {
    "waiting": JobState.PENDING,
    "starting": JobState.PENDING,
    "waiting_confirmation": JobState.PENDING,
    "confirmed": JobState.PENDING,
    "running": JobState.RUNNING,
    "stopping": JobState.RUNNING,
    "success": JobState.SUCCESSFUL,
    "error": JobState.FAILED,
    "stopped": JobState.CANCELED,
    "rejected": JobState.CANCELED,
}
_RECENT = 200  # the most `GET .../tasks/last?limit=` returns


class SemaphoreClient(JobRunnerClient):
    """One Semaphore project, reached with an API token."""

    error = SemaphoreError
    product = "Semaphore"
    states = SEMAPHORE_STATES

    def __init__(
        self,
        base_url: str,
        *,
        token: str,
        project_id: int,
        verify: bool = True,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(
            base_url,
            headers={"Authorization": f"Bearer {token}"},
            verify=verify,
            timeout=timeout,
            secrets=(token,),
        )
        self.project_id = project_id
        self._tasks = f"/api/project/{project_id}/tasks"

    def ref(self, job_id: str | int) -> JobRef:
        """A JobRef whose url opens the task in the project's history (Semaphore's own
        task link format)."""
        url = f"{self.base_url}/project/{self.project_id}/history?t={job_id}"
        return JobRef(runner="semaphore", job_id=str(job_id), url=url)

    def error_detail(self, resp: httpx.Response) -> str:
        """Semaphore's `{"error": ...}`, or the status line when the body is empty."""
        try:
            body = resp.json()
        except ValueError:
            text = resp.text.strip()
            return text[:1000] if text else f"{resp.reason_phrase} (empty body)"
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"]
        return str(body)[:1000]

    async def launch(self, template_id: int, *, limit: str, extra_vars: dict[str, Any]) -> JobRef:
        """Start a task of `template_id` on `limit` with `extra_vars` as its environment."""
        require_limit(limit)
        operation = f"launch of template {template_id}"
        resp = await self._send(
            "POST",
            self._tasks,
            operation,
            ok=(200, 201),
            json={
                "template_id": template_id,
                "limit": limit,
                "environment": json.dumps(extra_vars),
                "debug": False,
                "dry_run": False,
                "diff": False,
            },
        )
        body = self._body(resp, operation)
        if body.get("id") is None:
            raise self._fail(operation, f"the answer names no task: {str(body)[:200]}")
        ref = self.ref(body["id"])
        if body.get("limit") not in (None, limit):
            await self._refuse(
                ref, operation, f"Semaphore task {ref.job_id} got limit {body['limit']!r}"
            )
        return ref

    async def status(self, job_id: str) -> JobStatus:
        """The task's state and times (`start`/`end` on the wire)."""
        body = await self._task(job_id, f"status of task {job_id}")
        started, finished = parse_time(body.get("start")), parse_time(body.get("end"))
        return JobStatus(
            ref=self.ref(job_id),
            state=self._state(body.get("status"), job_id),
            started=started,
            finished=finished,
            elapsed=elapsed(started, finished),
        )

    async def output(self, job_id: str) -> str:
        """The task's output lines joined with newlines."""
        operation = f"output of task {job_id}"
        resp = await self._send("GET", f"{self._tasks}/{job_id}/output", operation)
        lines = self._body(resp, operation, list)
        return "".join(f"{line.get('output', '')}\n" for line in lines)

    async def cancel(self, job_id: str) -> None:
        """Stop the task (Semaphore wants a JSON body, `{}` will do); a finished task is
        left as it was."""
        await self._send(
            "POST", f"{self._tasks}/{job_id}/stop", f"stop of task {job_id}", ok=(200, 204),
            json={},
        )  # fmt: skip

    async def find_by_marker(
        self, template_id: int, *, key: str, value: str, since: datetime
    ) -> JobRef | None:
        """The newest task of the template created since `since` whose environment has
        `key` equal to `value`, or None. Matched here: Semaphore cannot filter on it."""
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        operation = f"search of template {template_id} tasks for {key}={value}"
        resp = await self._send(
            "GET", f"{self._tasks}/last", operation, params={"limit": _RECENT}
        )  # fmt: skip
        tasks = self._body(resp, operation, list)
        for task in tasks:  # newest first
            created = parse_time(task.get("created"))
            if task.get("template_id") != template_id or created is None or created < since:
                continue
            raw = task["environment"] if "environment" in task else await self._env(task["id"])
            if has_marker(raw, key, value):
                return self.ref(task["id"])
        oldest = parse_time(tasks[-1].get("created")) if tasks else None
        if len(tasks) >= _RECENT and oldest is not None and oldest >= since:
            # The window may reach past what one page shows; "not found" could be wrong.
            raise self._fail(operation, f"more than {_RECENT} tasks since {since}")
        return None

    async def _task(self, job_id: str | int, operation: str) -> dict[str, Any]:
        return self._body(await self._send("GET", f"{self._tasks}/{job_id}", operation), operation)

    async def _env(self, job_id: int) -> Any:
        return (await self._task(job_id, f"environment of task {job_id}")).get("environment")
