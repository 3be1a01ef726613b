"""A stand-in the fault matrix needs beyond the sandbox: a Prometheus in front of the real
one that can break the answer of one check, or of every check, in Prometheus's shapes."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qs

import httpx

from sandbox.http import Request, Response, SandboxServer


def vector(result: list[dict[str, Any]]) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def failed_units(*units: tuple[str, str]) -> dict[str, Any]:
    """The failed-unit check's answer for these (host, unit) pairs."""
    return vector(
        [
            {
                "metric": {"instance": host, "name": unit, "state": "failed", "type": "simple"},
                "value": [time.time(), "1"],
            }
            for host, unit in units
        ]
    )


FAILED_UNIT_QUERY = r'state="failed"'


def prom_error(error_type: str, error: str) -> dict[str, Any]:
    """Prometheus's error body (`status: error`)."""
    return {"status": "error", "errorType": error_type, "error": error}


class PrometheusProxy(SandboxServer):
    """Forwards every query to the real Prometheus, except queries matching an override.

    `override(pattern, status, body)` answers the queries whose PromQL matches `pattern`
    (a regex, searched) with that answer; the base `inject()` breaks whole paths (5xx,
    delay, drop) before anything is forwarded.
    """

    name = "prometheus-proxy"

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.overrides: list[tuple[re.Pattern[str], int, Any]] = []
        self._http = httpx.Client(timeout=10.0)
        super().__init__()

    def setup_routes(self) -> None:
        self.route("POST", "/api/v1/query", self._forward)
        self.route("POST", "/api/v1/query_range", self._forward)

    def start(self, port: int = 0, host: str = "127.0.0.1") -> PrometheusProxy:
        super().start(port, host)
        assert self._httpd is not None
        # A cycle sends its nine queries at once: a backlog of 5 (socketserver's default)
        # would drop connections under load, a fault of the stand-in, not of Prometheus.
        self._httpd.socket.listen(64)
        return self

    def override(self, pattern: str, status: int, body: Any) -> None:
        self.overrides.append((re.compile(pattern), status, body))

    def _forward(self, req: Request) -> Response:
        form = {k: v[-1] for k, v in parse_qs(req.body.decode()).items()}
        for pattern, status, body in self.overrides:
            if pattern.search(form.get("query", "")):
                return Response(status, body)
        upstream = self._http.post(f"{self.upstream}{req.path}", data=form)
        return Response(
            upstream.status_code,
            upstream.content,
            content_type=upstream.headers.get("content-type", "application/json"),
        )

    def on_stop(self) -> None:
        self._http.close()
