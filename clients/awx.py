"""AWX (and Ansible Automation Platform controller) client: launch, poll, read, cancel, find.

Wire: the AWX v2 REST API (`/api/v2/...`, trailing slashes), `Authorization: Bearer`
with a token or HTTP Basic with a username and password.

Safety: a template without "Prompt on launch" for limit or variables silently runs its
own values and only says so in the launch answer's `ignored_fields`. Such a launch is
cancelled at once and raised as `LaunchRefused`: a job must never run wider than asked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from clients.errors import AwxError
from clients.jobs_common import (
    JobRunnerClient,
    has_marker,
    parse_time,
    require_limit,
    utc_param,
)
from core.wire import JobRef, JobState, JobStatus

# Every AWX job status (awx/main/models/unified_jobs.py JOB_STATUS_CHOICES).
AWX_STATES: dict[str, JobState] = {
    "new": JobState.PENDING,
    "pending": JobState.PENDING,
    "waiting": JobState.PENDING,
    "running": JobState.RUNNING,
    "successful": JobState.SUCCESSFUL,
    "failed": JobState.FAILED,
    "error": JobState.ERROR,
    "canceled": JobState.CANCELED,
}
_PAGE_SIZE = 200  # AWX's MAX_PAGE_SIZE
_MAX_PAGES = 5


class AwxClient(JobRunnerClient):
    """One AWX instance. Give `token`, or `username` and `password`."""

    error = AwxError
    product = "AWX"
    states = AWX_STATES

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        verify: bool = True,
        timeout: float = 30.0,
    ) -> None:
        if token is None and (username is None or password is None):
            raise ValueError("AwxClient needs a token, or a username and a password")
        super().__init__(
            base_url,
            headers={"Authorization": f"Bearer {token}"} if token else None,
            auth=None if token else (username or "", password or ""),
            verify=verify,
            timeout=timeout,
            secrets=(token or "", password or ""),
        )

    def ref(self, job_id: str | int) -> JobRef:
        """A JobRef whose url is the job's output page in the AWX web UI."""
        return JobRef(
            runner="awx", job_id=str(job_id), url=f"{self.base_url}/#/jobs/playbook/{job_id}/output"
        )

    def error_detail(self, resp: httpx.Response) -> str:
        """AWX's `detail`/`error`, or its field errors as `field: message; ...`."""
        try:
            body = resp.json()
        except ValueError:
            return resp.text[:1000] or resp.reason_phrase
        if isinstance(body, dict):
            for key in ("detail", "error"):
                if isinstance(body.get(key), str):
                    return body[key]
            return "; ".join(f"{k}: {_joined(v)}" for k, v in body.items()) or resp.reason_phrase
        return str(body)[:1000]

    async def launch(self, template_id: int, *, limit: str, extra_vars: dict[str, Any]) -> JobRef:
        """Launch a job template on `limit` with `extra_vars`; refuse if AWX would not."""
        require_limit(limit)
        operation = f"launch of job template {template_id}"
        resp = await self._send(
            "POST",
            f"/api/v2/job_templates/{template_id}/launch/",
            operation,
            ok=(200, 201, 202),
            json={"limit": limit, "extra_vars": extra_vars},
        )
        body = self._body(resp, operation)
        job_id = body.get("job") or body.get("id")
        if job_id is None:
            raise self._fail(operation, f"the answer names no job: {str(body)[:200]}")
        ref = self.ref(job_id)
        ignored = sorted({"limit", "extra_vars"} & set(body.get("ignored_fields") or {}))
        if ignored:
            await self._refuse(
                ref,
                operation,
                f"AWX template {template_id} does not prompt on launch for "
                f"{' and '.join(ignored)} (ignored_fields), so job {job_id} would run "
                "the template's own values instead of the ones asked",
            )
        if "limit" in body and body["limit"] != limit:
            await self._refuse(
                ref, operation, f"AWX job {job_id} got limit {body['limit']!r}, not {limit!r}"
            )
        return ref

    async def status(self, job_id: str) -> JobStatus:
        """The job's state and times; `elapsed` only once it has finished."""
        operation = f"status of job {job_id}"
        body = self._body(await self._send("GET", f"/api/v2/jobs/{job_id}/", operation), operation)
        state = self._state(body.get("status"), job_id)
        finished, took = parse_time(body.get("finished")), body.get("elapsed")
        return JobStatus(
            ref=self.ref(job_id),
            state=state,
            started=parse_time(body.get("started")),
            finished=finished,
            # AWX reports 0.0 until the job ends.
            elapsed=float(took) if finished and isinstance(took, int | float) else None,
        )

    async def output(self, job_id: str) -> str:
        """The job's stdout as plain text."""
        resp = await self._send(
            "GET", f"/api/v2/jobs/{job_id}/stdout/", f"output of job {job_id}",
            params={"format": "txt"},
        )  # fmt: skip
        return resp.text

    async def cancel(self, job_id: str) -> None:
        """Ask AWX to cancel the job; a job that already finished (405) is left as is."""
        await self._send(
            "POST", f"/api/v2/jobs/{job_id}/cancel/", f"cancel of job {job_id}", ok=(202, 405)
        )

    async def find_by_marker(
        self, template_id: int, *, key: str, value: str, since: datetime
    ) -> JobRef | None:
        """The newest job of the template created since `since` whose extra var `key`
        equals `value`, or None.

        AWX refuses (403) any filter on extra_vars, so the match is done here, on each
        listed job's extra_vars (fetched from the job when the list leaves them out).
        """
        operation = f"search of template {template_id} jobs for {key}={value}"
        path: str | None = "/api/v2/jobs/"
        params: dict[str, Any] | None = {
            "job_template": template_id,
            "created__gte": utc_param(since),
            "order_by": "-created",
            "page_size": _PAGE_SIZE,
        }
        for _ in range(_MAX_PAGES):
            assert path is not None
            page = self._body(await self._send("GET", path, operation, params=params), operation)
            for job in page.get("results", []):
                if job.get("job_template") not in (None, template_id):
                    continue
                raw = job["extra_vars"] if "extra_vars" in job else await self._vars(job["id"])
                if has_marker(raw, key, value):
                    return self.ref(job["id"])
            path, params = page.get("next"), None  # `next` carries the query string
            if not path:
                return None
        # Answering "not found" here could start a duplicate launch: say so instead.
        raise self._fail(operation, f"more than {_MAX_PAGES * _PAGE_SIZE} jobs since {since}")

    async def _vars(self, job_id: int) -> Any:
        operation = f"extra vars of job {job_id}"
        body = self._body(await self._send("GET", f"/api/v2/jobs/{job_id}/", operation), operation)
        return body.get("extra_vars")


def _joined(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)
