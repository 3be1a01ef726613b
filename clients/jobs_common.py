"""What the AWX and Semaphore clients share.

Both translate a vendor status word through an explicit table (an unknown word is an
error, never a guess), read timestamps and extra vars off the wire, refuse a launch that
would run wider than asked (cancelling the job first), and look a launch up again by a
marker in its extra vars.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn

import httpx

from clients.errors import LaunchRefused, UpstreamError
from clients.http import HttpClient
from core.wire import JobRef, JobState


class JobRunnerClient(HttpClient):
    """Base of AwxClient and SemaphoreClient: subclasses set `states` and implement
    `ref` and `cancel`."""

    product = "job runner"
    states: Mapping[str, JobState] = {}

    def ref(self, job_id: str | int) -> JobRef:
        raise NotImplementedError

    async def cancel(self, job_id: str) -> None:
        raise NotImplementedError

    def _state(self, word: Any, job_id: str) -> JobState:
        """The product's status word as a JobState; an unknown word raises."""
        if isinstance(word, str) and word in self.states:
            return self.states[word]
        raise self._fail(
            f"status of job {job_id}",
            f"unknown {self.product} status {word!r}; known: {', '.join(sorted(self.states))}",
        )

    def _body(self, resp: httpx.Response, operation: str, expect: type = dict) -> Any:
        """The JSON answer, which must be a JSON object (or `expect`, e.g. list)."""
        try:
            body = resp.json()
        except ValueError as exc:
            raise self._fail(operation, f"answer is not JSON: {resp.text[:200]!r}") from exc
        if not isinstance(body, expect):
            raise self._fail(operation, f"unexpected answer: {str(body)[:200]}")
        return body

    async def _refuse(self, ref: JobRef, operation: str, why: str) -> NoReturn:
        """Cancel a job that must not run, then raise LaunchRefused saying why."""
        try:
            await self.cancel(ref.job_id)
            outcome = f"job {ref.job_id} was canceled"
        except UpstreamError as exc:
            outcome = f"cancelling job {ref.job_id} FAILED ({exc.detail}); it may still run"
        raise LaunchRefused(operation, f"{why}; {outcome}", secrets=self._secrets)


def require_limit(limit: str) -> None:
    """An empty limit means every host of the inventory: never launch that by accident."""
    if not limit.strip():
        raise ValueError("limit must name the host(s) to run on; an empty limit means all")


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp from the wire, or None (null, empty, Go's zero time)."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def utc_param(since: datetime) -> str:
    """`since` as a UTC query-string timestamp; naive datetimes are refused."""
    if since.tzinfo is None:
        raise ValueError("since must be timezone-aware")
    return since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def vars_of(raw: Any) -> dict[str, Any]:
    """Extra vars as a dict, from a dict or a JSON string; unreadable vars are empty."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return {}
    return raw if isinstance(raw, dict) else {}


def has_marker(raw_vars: Any, key: str, value: str) -> bool:
    found = vars_of(raw_vars).get(key)
    return found is not None and str(found) == value


def elapsed(started: datetime | None, finished: datetime | None) -> float | None:
    return (finished - started).total_seconds() if started and finished else None
