"""Grafana Loki's query API as typed `LogStream`s.

One call, `query_range`: LogQL in, streams out. Loki answers errors as `400 text/plain`
(`parse error at line 1, col 1: ...`); that text is surfaced verbatim in `LokiError`.
An empty result is an empty list, not an error.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx

from clients.errors import LokiError
from clients.http import HttpClient
from core.wire import LogEntry, LogStream

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ns(when: datetime) -> int:
    """Unix nanoseconds of an aware datetime, exactly (no float rounding)."""
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when!r}: pass a timezone-aware one")
    return (when - _EPOCH) // timedelta(microseconds=1) * 1000


class LokiClient(HttpClient):
    """Reads logs from Loki (`base_url` is the server root, e.g. `http://loki:3100`)."""

    error = LokiError

    def __init__(
        self,
        base_url: str,
        *,
        tenant_id: str | None = None,
        bearer_token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        verify: bool = True,
        timeout: float = 10.0,
    ) -> None:
        headers: dict[str, str] = {}
        if tenant_id:
            headers["X-Scope-OrgID"] = tenant_id  # multi-tenant Loki routes by this header
        if bearer_token:
            headers["Authorization"] = f"Bearer {bearer_token}"
        super().__init__(
            base_url,
            headers=headers,
            auth=basic_auth,
            verify=verify,
            timeout=timeout,
            secrets=(bearer_token or "", basic_auth[1] if basic_auth else ""),
        )

    async def query_range(
        self,
        query: str,
        start: datetime,
        end: datetime,
        *,
        limit: int = 100,
        direction: Literal["backward", "forward"] = "backward",
    ) -> list[LogStream]:
        """Log lines matching `query` in [start, end), at most `limit` across all streams.

        Entries keep Loki's order: newest first for `backward`, oldest first for `forward`.
        """
        params = {
            "query": query,
            "start": str(to_ns(start)),
            "end": str(to_ns(end)),
            "limit": str(limit),
            "direction": direction,
        }
        resp = await self._send("GET", "/loki/api/v1/query_range", "query_range", params=params)
        return self._streams(resp)

    def _streams(self, resp: httpx.Response) -> list[LogStream]:
        try:
            body: Any = resp.json()
            data = body["data"]
            if body.get("status") != "success" or data.get("resultType") != "streams":
                raise self._fail(
                    "query_range",
                    f"expected a streams result, got status={body.get('status')!r} "
                    f"resultType={data.get('resultType')!r}",
                    status_code=resp.status_code,
                )
            return [
                LogStream(
                    labels={str(k): str(v) for k, v in item["stream"].items()},
                    # Loki 3 may append structured metadata as a third element: ignored.
                    entries=[LogEntry(ts_ns=int(v[0]), line=str(v[1])) for v in item["values"]],
                )
                for item in data["result"]
            ]
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise self._fail(
                "query_range",
                f"unreadable answer ({type(exc).__name__}: {exc}): {resp.text[:300]}",
                status_code=resp.status_code,
            ) from exc

    def error_detail(self, resp: httpx.Response) -> str:
        # Loki's errors are plain text such as "parse error at line 1, col 8: ...".
        return resp.text.strip()[:1000] or resp.reason_phrase
