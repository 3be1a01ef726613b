"""The Prometheus Pushgateway: replacing one job's group of metrics."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from clients.errors import UpstreamError
from clients.http import HttpClient

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class PushgatewayError(UpstreamError):
    service = "pushgateway"


class PushgatewayClient(HttpClient):
    error = PushgatewayError

    async def replace_group(self, job: str, text: str) -> None:
        """Replace the metrics of group `job` with `text` (the Prometheus text format).
        PUT replaces the whole group, so a retry cannot double-count (and series gone
        from `text` disappear)."""
        await self._send(
            "PUT",
            f"/metrics/job/{quote(job, safe='')}",
            "push",
            ok=range(200, 300),
            content=text.encode(),
            headers={"Content-Type": CONTENT_TYPE},
        )

    def error_detail(self, resp: httpx.Response) -> str:
        return resp.text[:500] or resp.reason_phrase
