"""PrometheusClient against the real Prometheus (success paths, real errors) and against a
stand-in that answers Prometheus's exact error shapes, NaN/Inf values and slow replies."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest

from clients.errors import PrometheusError
from clients.prometheus import PrometheusClient, PrometheusQueryError
from sandbox.fleet_state import GiB
from sandbox.http import Request, Response, SandboxServer
from sandbox.prometheus import PrometheusServer

TOKEN = "tok-5up3r-s3cr3t-value-0042"
PASSWORD = "hunter2-but-longer"


class PrometheusStandIn(SandboxServer):
    """Answers every query with `answer` (status, JSON or text body), like Prometheus."""

    name = "prometheus-stand-in"

    def setup_routes(self) -> None:
        self.answer: tuple[int, Any] = (200, vector([]))
        self.route("POST", "/api/v1/query", self._reply)
        self.route("POST", "/api/v1/query_range", self._reply)

    def _reply(self, req: Request) -> Response:
        status, body = self.answer
        return Response(
            status, body, content_type=None if not isinstance(body, str) else "text/html"
        )

    def form(self) -> dict[str, str]:
        [req] = self.received("POST")
        return {k: v[-1] for k, v in parse_qs(req.body.decode()).items()}


def vector(result: list[Any]) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def prom_error(error_type: str, error: str) -> dict[str, Any]:
    return {"status": "error", "errorType": error_type, "error": error}


@pytest.fixture
def stand_in():
    with PrometheusStandIn() as server:
        yield server


@pytest.fixture
async def client(stand_in: PrometheusStandIn):
    async with PrometheusClient(stand_in.url, timeout=2.0) as c:
        yield c


# --- against the real Prometheus ---------------------------------------------------------
@pytest.mark.prometheus
async def test_vector_scalar_and_time(
    prometheus: PrometheusServer, prometheus_client: PrometheusClient
) -> None:
    samples = await prometheus_client.query("node_memory_MemTotal_bytes")
    assert {s.labels["instance"] for s in samples} == {"web-01", "web-02", "db-01"}
    assert all(s.labels["job"] == "node" for s in samples)
    assert all(s.value == 8 * GiB for s in samples)
    [two] = await prometheus_client.query("1 + 1")
    assert (two.labels, two.value) == ({}, 2.0)
    # Every target has been scraped before the fixture returned, so "now" has data;
    # the answer is stamped with the time asked for, not the server's clock.
    at = datetime.now(UTC)
    [scalar] = await prometheus_client.query('scalar(count(up{job="node"}))', at)
    assert (scalar.labels, scalar.value) == ({}, 3.0)
    assert scalar.timestamp == pytest.approx(at.timestamp(), abs=0.001)
    [empty] = await prometheus_client.query('scalar(up{job="none"})')
    assert math.isnan(empty.value)


@pytest.mark.prometheus
async def test_query_range(
    prometheus: PrometheusServer, prometheus_client: PrometheusClient
) -> None:
    end = datetime.now(UTC)
    start = end - timedelta(seconds=4)
    # time() has a value at every step whatever was scraped: points are exactly the steps.
    [clock] = await prometheus_client.query_range("time()", start, end, step=2)
    assert clock.labels == {}
    assert [round(t - start.timestamp(), 3) for t, _ in clock.points] == [0, 2, 4]
    assert all(v == pytest.approx(t) for t, v in clock.points)
    [mem] = await prometheus_client.query_range(
        'node_memory_MemTotal_bytes{instance="web-01"}', end, end, step=1
    )
    assert mem.labels["instance"] == "web-01"
    assert mem.points == [(pytest.approx(end.timestamp(), abs=0.001), 8 * GiB)]


@pytest.mark.prometheus
async def test_real_errors_name_the_expression(
    prometheus: PrometheusServer, prometheus_client: PrometheusClient
) -> None:
    with pytest.raises(PrometheusQueryError) as bad:
        await prometheus_client.query("rate(node_cpu_seconds_total[5m]")
    assert bad.value.error_type == "bad_data"
    assert bad.value.status_code == 400
    assert "parse error" in str(bad.value)
    assert "rate(node_cpu_seconds_total[5m]" in str(bad.value)
    with pytest.raises(PrometheusError, match=r"up\[1m\].*matrix"):
        await prometheus_client.query("up[1m]")


# --- error shapes, from the stand-in ---------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "error_type", "text"),
    [
        (400, "bad_data", '1:8: parse error: unexpected "}"'),
        (422, "execution", "query processing would load too many samples into memory"),
        (503, "timeout", "query timed out in expression evaluation"),
        (200, "internal", "odd, but an error all the same"),
    ],
)
async def test_prometheus_error_answers(
    stand_in: PrometheusStandIn, client: PrometheusClient, status: int, error_type: str, text: str
) -> None:
    stand_in.answer = (status, prom_error(error_type, text))
    with pytest.raises(PrometheusQueryError) as caught:
        await client.query("sum(up})")
    err = caught.value
    assert (err.error_type, err.status_code, err.query) == (error_type, status, "sum(up})")
    assert f"{error_type}: {text}" in str(err)
    assert "sum(up})" in str(err)


async def test_non_prometheus_answer(stand_in: PrometheusStandIn, client: PrometheusClient) -> None:
    stand_in.answer = (502, "<html><body>502 Bad Gateway</body></html>")
    with pytest.raises(PrometheusError) as caught:
        await client.query("up")
    assert caught.value.status_code == 502
    assert "502 Bad Gateway" in str(caught.value)


async def test_timeout(stand_in: PrometheusStandIn) -> None:
    stand_in.inject(path="/api/v1/query", mode="delay", delay=1.0)
    async with PrometheusClient(stand_in.url, timeout=0.2) as slow:
        with pytest.raises(PrometheusError, match=r"query `up` failed: no answer within 0.2 s"):
            await slow.query("up")


async def test_connection_refused() -> None:
    async with PrometheusClient("http://127.0.0.1:1") as nowhere:
        with pytest.raises(PrometheusError, match="cannot connect") as caught:
            await nowhere.query("up")
    assert caught.value.request_sent is False


async def test_special_values_and_sent_form(
    stand_in: PrometheusStandIn, client: PrometheusClient
) -> None:
    stand_in.answer = (
        200,
        vector(
            [
                {"metric": {"k": "nan"}, "value": [1700000000.5, "NaN"]},
                {"metric": {"k": "inf"}, "value": [1700000000.5, "+Inf"]},
                {"metric": {"k": "-inf"}, "value": [1700000000.5, "-Inf"]},
                {"metric": {"k": "num"}, "value": [1700000000.5, "1.5e3"]},
            ]
        ),
    )
    at = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    samples = await client.query("some_expr", at)
    values = {s.labels["k"]: s.value for s in samples}
    assert math.isnan(values["nan"])
    assert (values["inf"], values["-inf"], values["num"]) == (math.inf, -math.inf, 1500.0)
    assert samples[0].timestamp == 1700000000.5
    assert stand_in.form() == {"query": "some_expr", "time": "1700000000.000", "timeout": "2"}


async def test_range_special_values(stand_in: PrometheusStandIn, client: PrometheusClient) -> None:
    matrix = [{"metric": {}, "values": [[1.0, "1"], [2.0, "NaN"], [3.0, "-Inf"]]}]
    stand_in.answer = (
        200,
        {"status": "success", "data": {"resultType": "matrix", "result": matrix}},
    )
    start = datetime.fromtimestamp(1, UTC)
    [series] = await client.query_range("x", start, start + timedelta(seconds=2), step=1)
    assert series.points[0] == (1.0, 1.0) and series.points[2] == (3.0, -math.inf)
    assert math.isnan(series.points[1][1])
    assert stand_in.form()["step"] == "1"


async def test_malformed_success_answer(
    stand_in: PrometheusStandIn, client: PrometheusClient
) -> None:
    stand_in.answer = (200, vector([{"metric": {}, "value": [1.0, "not-a-number"]}]))
    with pytest.raises(PrometheusError, match="unexpected vector answer"):
        await client.query("up")


async def test_bad_arguments(client: PrometheusClient) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await client.query("up", datetime(2024, 1, 1))
    now = datetime.now(UTC)
    with pytest.raises(ValueError, match="step"):
        await client.query_range("up", now, now, step=0)


# --- secrets ----------------------------------------------------------------------------------
async def test_bearer_token_is_sent_but_never_shown(stand_in: PrometheusStandIn) -> None:
    # A misbehaving proxy echoes the token back in its error text, and the expression
    # itself carries it: neither may surface in the raised error.
    stand_in.answer = (
        400,
        prom_error("bad_data", f"rejected header Authorization: Bearer {TOKEN} ({TOKEN})"),
    )
    async with PrometheusClient(stand_in.url, bearer_token=TOKEN) as authed:
        with pytest.raises(PrometheusError) as caught:
            await authed.query(f'up{{token="{TOKEN}"}}')
    [req] = stand_in.received("POST")
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    err = caught.value
    for text in (str(err), repr(err), err.detail, err.operation, *map(str, err.args)):
        assert TOKEN not in text
    assert "[REDACTED]" in str(err)


async def test_basic_auth_password_is_sent_but_never_shown(stand_in: PrometheusStandIn) -> None:
    stand_in.answer = (503, prom_error("unavailable", f"upstream said {PASSWORD}"))
    async with PrometheusClient(stand_in.url, basic_auth=("ops", PASSWORD)) as authed:
        with pytest.raises(PrometheusError) as caught:
            await authed.query("up")
    [req] = stand_in.received("POST")
    assert req.headers["authorization"].startswith("Basic ")
    assert PASSWORD not in str(caught.value)
