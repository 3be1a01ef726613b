"""The sandbox Loki: Loki's push/query wire format, the LogQL subset and its 400 errors."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from core.wire import LogEntry, LogStream
from sandbox.loki import NS, LokiServer

T0 = 1_795_694_000 * NS  # 2026-11-26T11:53:20Z: a fixed instant, so windows are exact
WEB1 = {"host": "web-01", "job": "systemd-journal", "unit": "nginx.service"}
WEB2 = {"host": "web-02", "job": "systemd-journal", "unit": "nginx.service"}
# One client for the module: creating an httpx client costs ~40 ms (SSL context).
HTTP = httpx.Client(timeout=10)
DB1 = {"host": "db-01", "job": "systemd-journal", "unit": "postgresql.service"}


@pytest.fixture(scope="module", autouse=True)
def _close_http() -> Iterator[None]:
    yield
    HTTP.close()


def push(loki: LokiServer, labels: dict[str, str], *entries: tuple[int, str]) -> httpx.Response:
    body = {"streams": [{"stream": labels, "values": [[str(t), line] for t, line in entries]}]}
    return HTTP.post(f"{loki.url}/loki/api/v1/push", json=body)


def query(loki: LokiServer, q: str, **params: object) -> httpx.Response:
    params = {"start": str(T0), "end": str(T0 + 3600 * NS), **params}
    return HTTP.get(f"{loki.url}/loki/api/v1/query_range", params={"query": q, **params})


def values(resp: httpx.Response) -> list[tuple[str, str]]:
    """(host, line) pairs in the order the answer lists them."""
    assert resp.status_code == 200, resp.text
    return [
        (s["stream"]["host"], line)
        for s in resp.json()["data"]["result"]
        for _, line in s["values"]
    ]


def test_ready_and_unknown_path_answer_like_loki(loki: LokiServer) -> None:
    ready = HTTP.get(f"{loki.url}/ready")
    assert (ready.status_code, ready.text) == (200, "ready\n")
    missing = HTTP.get(f"{loki.url}/loki/api/v1/nope")
    assert (missing.status_code, missing.text) == (404, "404 page not found\n")


def test_push_then_query_returns_lokis_exact_json(loki: LokiServer) -> None:
    body = {
        "streams": [
            {
                "stream": WEB1,
                "values": [[str(T0 + NS), "nginx: failed"], [str(T0 + 2 * NS), "nginx: ok"]],
            },
            # Loki 3 accepts structured metadata as a third element.
            {"stream": DB1, "values": [[str(T0 + 3 * NS), "pg: failed", {"trace_id": "abc"}]]},
        ]
    }
    assert HTTP.post(f"{loki.url}/loki/api/v1/push", json=body).status_code == 204
    [recorded] = loki.received("POST", "/loki/api/v1/push")
    assert recorded.json() == body

    resp = query(loki, '{job="systemd-journal"}')
    assert resp.headers["content-type"] == "application/json"
    payload = resp.json()
    assert payload["status"] == "success"
    assert payload["data"]["resultType"] == "streams"
    assert payload["data"]["stats"]["summary"]["totalEntriesReturned"] == 3
    assert payload["data"]["result"] == [
        {"stream": DB1, "values": [[str(T0 + 3 * NS), "pg: failed"]]},
        {
            "stream": WEB1,
            "values": [[str(T0 + 2 * NS), "nginx: ok"], [str(T0 + NS), "nginx: failed"]],
        },
    ]
    [req] = loki.received("GET", "/loki/api/v1/query_range")
    assert req.arg("query") == '{job="systemd-journal"}'


def test_limit_counts_entries_across_streams_in_direction(loki: LokiServer) -> None:
    push(loki, WEB1, (T0 + 1 * NS, "a1"), (T0 + 3 * NS, "a3"), (T0 + 5 * NS, "a5"))
    push(loki, WEB2, (T0 + 2 * NS, "b2"), (T0 + 4 * NS, "b4"), (T0 + 6 * NS, "b6"))
    newest = values(query(loki, '{unit="nginx.service"}', limit=3))
    assert sorted(line for _, line in newest) == ["a5", "b4", "b6"]
    assert [line for host, line in newest if host == "web-02"] == ["b6", "b4"]  # newest first
    oldest = values(query(loki, '{unit="nginx.service"}', limit=3, direction="forward"))
    assert sorted(line for _, line in oldest) == ["a1", "a3", "b2"]
    assert [line for host, line in oldest if host == "web-01"] == ["a1", "a3"]  # oldest first
    assert len(values(query(loki, '{unit="nginx.service"}'))) == 6  # default limit 100


def test_start_is_inclusive_and_end_exclusive(loki: LokiServer) -> None:
    push(loki, WEB1, (T0 + 10 * NS, "at10"), (T0 + 20 * NS, "at20"), (T0 + 30 * NS, "at30"))
    got = values(query(loki, '{host="web-01"}', start=str(T0 + 10 * NS), end=str(T0 + 30 * NS)))
    assert [line for _, line in got] == ["at20", "at10"]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (str(T0 + 10 * NS), str(T0 + 30 * NS)),  # nanoseconds
        (str(T0 // NS + 10), str(T0 // NS + 30)),  # whole seconds (10 digits)
        (f"{T0 // NS + 10}.000", f"{T0 // NS + 29}.999"),  # float seconds
        (
            datetime.fromtimestamp(T0 // NS + 10, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000000Z"),
            datetime.fromtimestamp(T0 // NS + 30, UTC).isoformat(),
        ),  # RFC3339 (nanosecond fraction, and an offset)
    ],
)
def test_time_parameters_accept_every_loki_format(loki: LokiServer, start: str, end: str) -> None:
    push(loki, WEB1, (T0 + 9 * NS, "before"), (T0 + 10 * NS, "first"), (T0 + 29 * NS, "last"))
    push(loki, WEB1, (T0 + 30 * NS, "after"))
    assert [line for _, line in values(query(loki, '{host="web-01"}', start=start, end=end))] == [
        "last",
        "first",
    ]


def test_window_defaults_to_the_last_hour_and_since_narrows_it(loki: LokiServer) -> None:
    now = time.time_ns()
    push(
        loki,
        WEB1,
        (now - 7200 * NS, "2h ago"),
        (now - 1800 * NS, "30m ago"),
        (now - 60 * NS, "1m ago"),
    )
    url = f"{loki.url}/loki/api/v1/query_range"
    default = HTTP.get(url, params={"query": '{host="web-01"}'})
    assert [line for _, line in values(default)] == ["1m ago", "30m ago"]
    since = HTTP.get(url, params={"query": '{host="web-01"}', "since": "5m"})
    assert [line for _, line in values(since)] == ["1m ago"]


@pytest.mark.parametrize(
    ("selector", "hosts"),
    [
        ('{host="web-01"}', {"web-01"}),
        ('{job="systemd-journal", host!="web-01"}', {"web-02", "db-01"}),
        ('{host=~"web-.*"}', {"web-01", "web-02"}),
        ('{host=~"web"}', set()),  # regexes are anchored: "web" is not "web-01"
        ('{job="systemd-journal", unit!~"nginx\\\\..*"}', {"db-01"}),
        ('{unit=~"(nginx|postgresql)\\\\.service"}', {"web-01", "web-02", "db-01"}),
        ("{host=`web-02`}", {"web-02"}),
        ('{host="web-01", team=""}', {"web-01"}),  # a missing label equals ""
    ],
)
def test_stream_selectors(loki: LokiServer, selector: str, hosts: set[str]) -> None:
    for labels in (WEB1, WEB2, DB1):
        push(loki, labels, (T0 + NS, f"line from {labels['host']}"))
    assert {host for host, _ in values(query(loki, selector))} == hosts


def test_line_filters_chain(loki: LokiServer) -> None:
    push(
        loki,
        WEB1,
        (T0 + 1 * NS, "nginx: Failed with result 'exit-code'"),
        (T0 + 2 * NS, "nginx: failed, DEBUG retry"),
        (T0 + 3 * NS, "nginx: started"),
        (T0 + 4 * NS, "kernel: oom"),
    )

    def lines(q: str) -> list[str]:
        return [line for _, line in values(query(loki, q, direction="forward"))]

    assert lines('{host="web-01"} |= "nginx"') == lines('{host="web-01"} |~ "ngi"')
    assert lines('{host="web-01"} |= "nginx" != "started"') == [
        "nginx: Failed with result 'exit-code'",
        "nginx: failed, DEBUG retry",
    ]
    assert lines('{host="web-01"} |~ "(?i)fail" !~ "DEBUG"') == [
        "nginx: Failed with result 'exit-code'"
    ]
    assert lines('{host="web-01"} |= "Failed"') == ["nginx: Failed with result 'exit-code'"]


@pytest.mark.parametrize(
    ("q", "message"),
    [
        ('{host=~".*"}', "queries require at least one regexp or equality matcher that does not"),
        ('{host!="x"}', "queries require at least one regexp or equality matcher"),
        ("{", "parse error at line 1, col 2: syntax error: unexpected $end"),
        ("", "parse error at line 1, col 1: syntax error: unexpected $end"),
        ('{host="a" x', "parse error at line 1, col 11: syntax error: unexpected IDENTIFIER"),
        ('{host="a\\."}', "parse error at line 1, col 7: invalid char escape"),
        ('{host=~"("}', "parse error at line 1, col 8: error parsing regexp"),
        ('count_over_time({host="a"}[5m])', "unsupported (fake Loki)"),
        ('{host="a"} | json', "unsupported (fake Loki)"),
    ],
)
def test_rejected_queries_are_400_text_plain(loki: LokiServer, q: str, message: str) -> None:
    resp = query(loki, q)
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.text.startswith(message)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "0"}, "limit must be a positive value"),
        ({"limit": "5001"}, "max entries limit per query exceeded"),
        ({"direction": "sideways"}, "invalid direction 'sideways'"),
        ({"start": str(T0), "end": str(T0)}, "end timestamp must not be before or equal to start"),
        ({"start": "yesterday"}, 'invalid start: cannot parse "yesterday"'),
        ({"since": "5 minutes", "start": ""}, 'not a valid duration string: "5 minutes"'),
    ],
)
def test_bad_parameters_are_400_text_plain(
    loki: LokiServer, params: dict[str, str], message: str
) -> None:
    resp = query(loki, '{host="web-01"}', **params)
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.text.startswith(message)


def test_instant_query_serves_the_hour_before_time(loki: LokiServer) -> None:
    push(loki, WEB1, (T0 - 3601 * NS, "too old"), (T0 - 60 * NS, "recent"), (T0, "at time"))
    resp = HTTP.get(
        f"{loki.url}/loki/api/v1/query", params={"query": '{host="web-01"}', "time": str(T0)}
    )
    assert [line for _, line in values(resp)] == ["at time", "recent"]


def test_labels_and_label_values(loki: LokiServer) -> None:
    push(loki, WEB1, (T0, "x"))
    push(loki, DB1, (T0, "y"))
    labels = HTTP.get(f"{loki.url}/loki/api/v1/labels").json()
    assert labels == {"status": "success", "data": ["host", "job", "unit"]}
    hosts = HTTP.get(f"{loki.url}/loki/api/v1/label/host/values").json()
    assert hosts == {"status": "success", "data": ["db-01", "web-01"]}


def test_gzip_push_is_accepted(loki: LokiServer) -> None:
    raw = json.dumps({"streams": [{"stream": WEB1, "values": [[str(T0), "zipped"]]}]}).encode()
    resp = HTTP.post(
        f"{loki.url}/loki/api/v1/push",
        content=gzip.compress(raw),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert resp.status_code == 204
    assert [line for _, line in values(query(loki, '{host="web-01"}'))] == ["zipped"]


@pytest.mark.parametrize(
    ("content", "ctype", "message"),
    [
        (
            b'{"streams": [{"stream": {}, "values": [["1", "x"]]}]}',
            "application/json",
            "error at least one label",
        ),
        (
            b'{"streams": [{"stream": {"a": "b"}, "values": [[1, "x"]]}]}',
            "application/json",
            "loghttp",
        ),
        (b"not json", "application/json", "loghttp.PushRequest"),
        (b"\x00\x01", "application/x-protobuf", "unsupported (fake Loki)"),
    ],
)
def test_bad_pushes_are_400_text_and_store_nothing(
    loki: LokiServer, content: bytes, ctype: str, message: str
) -> None:
    resp = HTTP.post(
        f"{loki.url}/loki/api/v1/push", content=content, headers={"Content-Type": ctype}
    )
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.text.startswith(message)
    assert loki.streams() == []


def test_python_push_dedups_and_reset_forgets_everything(loki: LokiServer) -> None:
    at = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)
    loki.push(WEB1, [(at, "from python"), (at, "from python"), (T0, "older")])
    expected_ns = 1_795_694_400 * NS + 123_456_000
    assert loki.streams() == [
        LogStream(
            labels=WEB1,
            entries=[
                LogEntry(ts_ns=T0, line="older"),
                LogEntry(ts_ns=expected_ns, line="from python"),
            ],
        )
    ]
    query(loki, '{host="web-01"}')
    loki.reset()
    assert loki.streams() == []
    assert loki.received() == []
    assert values(query(loki, '{host="web-01"}')) == []
