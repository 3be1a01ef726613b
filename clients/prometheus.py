"""Prometheus HTTP API client: PromQL in, `Sample` / `Series` out.

Queries go as form-encoded POSTs (`/api/v1/query`, `/api/v1/query_range`), so long
expressions never hit URL length limits. Prometheus answers errors as
`{"status":"error","errorType":"bad_data","error":"..."}` with HTTP 400 (bad query),
422 (execution error), 503 (timeout, canceled) or 500; those become
`PrometheusQueryError` with its `error_type`, its text and the expression. Transport
failures (refused, timeout) are the base `PrometheusError` with the expression in the
operation. Values arrive as strings and may be "NaN", "+Inf" or "-Inf".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from clients.errors import PrometheusError
from clients.http import HttpClient
from core.redact import redact
from core.wire import Sample, Series

_ANY_STATUS = range(100, 600)  # statuses are judged here, with Prometheus's own error body
_SPECIAL = {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf, "Inf": math.inf}


class PrometheusQueryError(PrometheusError):
    """Prometheus answered a query with an error: `error_type` is its `errorType`."""

    def __init__(
        self,
        operation: str,
        detail: str,
        *,
        query: str,
        error_type: str | None = None,
        status_code: int | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        self.query = query
        self.error_type = error_type
        super().__init__(operation, detail, status_code=status_code, secrets=secrets)


class _Answer(BaseModel):
    """The envelope of every Prometheus API answer."""

    status: str
    data: Any = None
    errorType: str | None = None
    error: str | None = None


class _Instant(BaseModel):
    metric: dict[str, str]
    value: tuple[float, str]


class _Range(BaseModel):
    metric: dict[str, str]
    values: list[tuple[float, str]]


class _Data(BaseModel):
    resultType: str
    result: Any


def _number(text: str) -> float:
    """A Prometheus sample value: a decimal string, or NaN/+Inf/-Inf."""
    special = _SPECIAL.get(text)
    return special if special is not None else float(text)


def _unix(moment: datetime) -> float:
    if moment.tzinfo is None:
        raise ValueError("Prometheus query times must be timezone-aware datetimes")
    return moment.timestamp()


class PrometheusClient(HttpClient):
    """Async client for one Prometheus server (or a compatible API behind auth)."""

    error = PrometheusError

    def __init__(
        self,
        base_url: str,
        *,
        bearer_token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        verify: bool = True,
        timeout: float = 10.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {bearer_token}"} if bearer_token else {}
        super().__init__(
            base_url,
            headers=headers,
            auth=basic_auth,
            verify=verify,
            timeout=timeout,
            secrets=[s for s in (bearer_token, basic_auth[1] if basic_auth else None) if s],
        )

    async def query(self, expr: str, time: datetime | None = None) -> list[Sample]:
        """Instant query: a vector's samples, or one label-less sample for a scalar."""
        form: dict[str, Any] = {"query": expr}
        if time is not None:
            form["time"] = f"{_unix(time):.3f}"
        op = self._operation("query", expr)
        data = await self._call("/api/v1/query", op, expr, form)
        try:
            if data.resultType == "vector":
                return [
                    Sample(labels=e.metric, value=_number(e.value[1]), timestamp=e.value[0])
                    for e in (_Instant.model_validate(x) for x in data.result)
                ]
            if data.resultType == "scalar":
                ts, value = data.result
                return [Sample(labels={}, value=_number(value), timestamp=float(ts))]
        except (ValidationError, TypeError, ValueError) as exc:
            raise self._fail(op, f"unexpected {data.resultType} answer: {exc}") from exc
        raise self._fail(
            op,
            f"expression gives a {data.resultType}, not an instant vector or scalar: {expr}",
        )

    async def query_range(
        self, expr: str, start: datetime, end: datetime, step: float
    ) -> list[Series]:
        """Range query from `start` to `end` every `step` seconds: one series per labelset."""
        if step <= 0:
            raise ValueError("step must be a positive number of seconds")
        form = {
            "query": expr,
            "start": f"{_unix(start):.3f}",
            "end": f"{_unix(end):.3f}",
            "step": f"{step:g}",
        }
        op = self._operation("query_range", expr)
        data = await self._call("/api/v1/query_range", op, expr, form)
        if data.resultType != "matrix":
            raise self._fail(op, f"range query answered a {data.resultType}, not a matrix")
        try:
            return [
                Series(labels=e.metric, points=[(ts, _number(v)) for ts, v in e.values])
                for e in (_Range.model_validate(x) for x in data.result)
            ]
        except (ValidationError, TypeError, ValueError) as exc:
            raise self._fail(op, f"unexpected matrix answer: {exc}") from exc

    # --- internals -----------------------------------------------------------------
    def _operation(self, kind: str, expr: str) -> str:
        # The expression names the failed call in every error, transport ones included;
        # UpstreamError redacts only `detail`, so the expression is redacted here.
        shown = expr if len(expr) <= 300 else expr[:297] + "..."
        return redact(f"{kind} `{shown}`", self._secrets)

    async def _call(self, path: str, op: str, expr: str, form: dict[str, Any]) -> _Data:
        # Prometheus's own `timeout` stops the evaluation when this client gives up.
        form = {**form, "timeout": f"{self.timeout:g}"}
        resp = await self._send("POST", path, op, ok=_ANY_STATUS, data=form)
        try:
            answer = _Answer.model_validate_json(resp.content)
        except ValidationError:
            # Not Prometheus speaking (a proxy page, a truncated body): show its text.
            raise self._fail(op, self.error_detail(resp), status_code=self._status(resp)) from None
        if answer.status != "success" or not resp.is_success:
            raise PrometheusQueryError(
                op,
                f"{answer.errorType or 'error'}: {answer.error or 'no error text'}",
                query=expr,
                error_type=answer.errorType,
                status_code=resp.status_code,
                secrets=self._secrets,
            )
        try:
            return _Data.model_validate(answer.data)
        except ValidationError as exc:
            raise self._fail(op, f"answer without resultType/result: {exc}") from exc

    @staticmethod
    def _status(resp: httpx.Response) -> int | None:
        return None if resp.is_success else resp.status_code

    def error_detail(self, resp: httpx.Response) -> str:
        kind = resp.headers.get("content-type", "unknown content type")
        text = resp.text[:500].strip() or resp.reason_phrase
        return f"unexpected answer ({kind}): {text}"
