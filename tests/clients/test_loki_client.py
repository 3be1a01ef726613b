"""`LokiClient` against the sandbox Loki: requests sent, streams read, every error shape."""

from __future__ import annotations

import base64
import socket
from datetime import UTC, datetime, timedelta

import pytest

from clients.errors import LokiError
from clients.loki import LokiClient
from core.wire import LogEntry, LogStream
from sandbox.logql import LogQLError, parse
from sandbox.loki import NS, LokiServer

START = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)
START_NS = 1_795_694_400 * NS + 123_456_000
END = START + timedelta(minutes=30)
WEB1 = {"host": "web-01", "unit": "nginx.service"}
WEB2 = {"host": "web-02", "unit": "nginx.service"}
TOKEN = "loki-planted-bearer-token-5d2c8e1f"


async def test_query_range_sends_ns_window_and_reads_streams(loki: LokiServer) -> None:
    loki.push(WEB1, [(START_NS + 1 * NS, "nginx: failed"), (START_NS + 3 * NS, "nginx: ok")])
    loki.push(WEB2, [(START_NS + 2 * NS, "nginx: failed")])
    loki.push(WEB2, [(START_NS - 1, "just before the window")])
    async with LokiClient(loki.url) as client:
        streams = await client.query_range('{unit="nginx.service"}', START, END, limit=50)
    assert sorted(streams, key=lambda s: s.labels["host"]) == [
        LogStream(
            labels=WEB1,
            entries=[
                LogEntry(ts_ns=START_NS + 3 * NS, line="nginx: ok"),  # backward: newest first
                LogEntry(ts_ns=START_NS + 1 * NS, line="nginx: failed"),
            ],
        ),
        LogStream(labels=WEB2, entries=[LogEntry(ts_ns=START_NS + 2 * NS, line="nginx: failed")]),
    ]
    [req] = loki.received("GET", "/loki/api/v1/query_range")
    assert req.query == {
        "query": ['{unit="nginx.service"}'],
        "start": [str(START_NS)],
        "end": [str(START_NS + 1800 * NS)],
        "limit": ["50"],
        "direction": ["backward"],
    }


async def test_forward_direction_and_limit_reach_loki(loki: LokiServer) -> None:
    loki.push(WEB1, [(START_NS + i * NS, f"line {i}") for i in range(5)])
    async with LokiClient(loki.url) as client:
        [stream] = await client.query_range(
            '{host="web-01"}', START, END, limit=2, direction="forward"
        )
    assert [e.line for e in stream.entries] == ["line 0", "line 1"]


async def test_empty_result_is_an_empty_list(loki: LokiServer) -> None:
    async with LokiClient(loki.url) as client:
        assert await client.query_range('{host="nowhere"}', START, END) == []


async def test_tenant_and_bearer_headers(loki: LokiServer) -> None:
    async with LokiClient(loki.url, tenant_id="team-a", bearer_token=TOKEN) as client:
        await client.query_range('{host="web-01"}', START, END)
    [req] = loki.received()
    assert req.headers["x-scope-orgid"] == "team-a"
    assert req.headers["authorization"] == f"Bearer {TOKEN}"


async def test_basic_auth_header(loki: LokiServer) -> None:
    async with LokiClient(loki.url, basic_auth=("grafana", "s3cret-pass")) as client:
        await client.query_range('{host="web-01"}', START, END)
    [req] = loki.received()
    assert (
        req.headers["authorization"] == "Basic " + base64.b64encode(b"grafana:s3cret-pass").decode()
    )
    assert "x-scope-orgid" not in req.headers


@pytest.mark.parametrize(
    ("query", "loki_says"),
    [
        ('{host=~".*"}', "queries require at least one regexp or equality matcher"),
        ('{host="a" x', "parse error at line 1, col 11: syntax error: unexpected IDENTIFIER"),
        ('count_over_time({host="a"}[5m])', "unsupported (fake Loki): metric queries"),
    ],
)
async def test_lokis_400_text_is_surfaced_verbatim(
    loki: LokiServer, query: str, loki_says: str
) -> None:
    async with LokiClient(loki.url) as client:
        with pytest.raises(LokiError) as caught:
            await client.query_range(query, START, END)
    with pytest.raises(LogQLError) as server_side:  # the exact text the sandbox answered
        parse(query)
    assert str(server_side.value).startswith(loki_says)
    assert caught.value.status_code == 400
    assert caught.value.detail == str(server_side.value)
    assert str(caught.value) == f"Loki query_range failed (HTTP 400): {server_side.value}"


async def test_structured_metadata_third_element_is_tolerated(loki: LokiServer) -> None:
    body = {
        "status": "success",
        "data": {
            "resultType": "streams",
            "result": [
                {"stream": WEB1, "values": [[str(START_NS), "with metadata", {"trace_id": "t1"}]]}
            ],
            "stats": {},
        },
    }
    loki.inject(path="/loki/api/v1/query_range", status=200, body=body)
    async with LokiClient(loki.url) as client:
        [stream] = await client.query_range('{host="web-01"}', START, END)
    assert stream.entries == [LogEntry(ts_ns=START_NS, line="with metadata")]


@pytest.mark.parametrize(
    ("status", "body", "detail"),
    [
        (
            200,
            {"status": "success", "data": {"resultType": "matrix", "result": []}},
            "expected a streams result",
        ),
        (200, "<html>proxy login</html>", "unreadable answer"),
        (
            200,
            {"status": "success", "data": {"resultType": "streams", "result": [{"values": []}]}},
            "unreadable",
        ),
        (503, "too many outstanding requests\n", "too many outstanding requests"),
    ],
)
async def test_unexpected_answers_are_loki_errors(
    loki: LokiServer, status: int, body: object, detail: str
) -> None:
    loki.inject(path="/loki/api/v1/query_range", status=status, body=body)
    async with LokiClient(loki.url) as client:
        with pytest.raises(LokiError) as caught:
            await client.query_range('{host="web-01"}', START, END)
    assert caught.value.status_code == status
    assert detail in caught.value.detail


async def test_timeout_is_a_loki_error(loki: LokiServer) -> None:
    loki.inject(path="/loki/api/v1/query_range", mode="delay", delay=1.0)
    async with LokiClient(loki.url, timeout=0.2) as client:
        with pytest.raises(LokiError) as caught:
            await client.query_range('{host="web-01"}', START, END)
    assert "no answer within 0.2 s" in str(caught.value)
    assert caught.value.request_sent is True


async def test_connection_refused_says_the_request_never_left() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with LokiClient(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(LokiError) as caught:
            await client.query_range('{host="web-01"}', START, END)
    assert caught.value.request_sent is False


async def test_planted_token_reaches_loki_but_never_an_error(loki: LokiServer) -> None:
    # A misbehaving proxy that echoes the credentials back in its error page.
    loki.inject(path="/loki/api/v1/query_range", status=502, body=f"bad gateway for token {TOKEN}")
    async with LokiClient(loki.url, bearer_token=TOKEN) as client:
        with pytest.raises(LokiError) as caught:
            await client.query_range('{host="web-01"}', START, END)
    assert loki.received()[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in str(caught.value) and TOKEN not in caught.value.detail
    assert TOKEN not in repr(caught.value.args)


async def test_naive_datetimes_are_refused(loki: LokiServer) -> None:
    async with LokiClient(loki.url) as client:
        with pytest.raises(ValueError, match="naive"):
            await client.query_range('{host="web-01"}', datetime(2026, 1, 1), END)
    assert loki.received() == []
