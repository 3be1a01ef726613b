"""A Grafana Loki stand-in speaking Loki's HTTP API on loopback.

No real Loki can be installed offline (reference/testbed-notes.md §2), so this server
answers the endpoints the project uses with Loki's exact JSON and its `400 text/plain`
errors. Logs arrive through the real push endpoint (the fleet exporter pushes journal
lines there) or through `push()` from Python.

Endpoints:
    GET  /ready                              -> 200 "ready\\n"
    POST /loki/api/v1/push                   JSON (optionally gzip) -> 204
    GET  /loki/api/v1/query_range            query, start, end, since, limit, direction, step
    GET  /loki/api/v1/query                  query, time, limit, direction (see `_instant`)
    GET  /loki/api/v1/labels                 -> {"status":"success","data":[names]}
    GET  /loki/api/v1/label/{name}/values    -> {"status":"success","data":[values]}
Only log queries in the subset of `sandbox.logql` are accepted; labels endpoints ignore
time ranges (the sandbox keeps little data). `reset()` also forgets every stored log.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from core.wire import LogEntry, LogStream
from sandbox.http import Request, Response, SandboxServer
from sandbox.logql import LogQLError, parse

NS = 1_000_000_000
MAX_ENTRIES_LIMIT = 5000  # Loki's default max_entries_limit_per_query
_RFC3339 = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", re.IGNORECASE
)
_DURATION = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_UNIT_NS = {"ms": 10**6, "s": NS, "m": 60 * NS, "h": 3600 * NS, "d": 86400 * NS}
_UNIT_NS |= {"w": 7 * 86400 * NS, "y": 365 * 86400 * NS}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

StreamKey = tuple[tuple[str, str], ...]


class _BadRequest(Exception):
    """Answered as Loki does: 400 with the message as text/plain."""


def to_ns(value: int | datetime) -> int:
    """Nanoseconds since the epoch from an int (already ns) or an aware datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware one")
        # Integer arithmetic: float seconds would lose the microseconds.
        return (value - _EPOCH) // timedelta(microseconds=1) * 1000
    return int(value)


def parse_time(name: str, value: str | None, default: int) -> int:
    """Loki's timestamp rules: float seconds, int seconds (<=10 digits) or ns, RFC3339."""
    if value is None or value == "":
        return default
    if "." in value:
        try:
            sec, frac = divmod(Decimal(value), 1)
            # Loki rounds fractional seconds to the millisecond.
            return int(sec) * NS + int((frac * 1000).to_integral_value()) * 10**6
        except InvalidOperation:
            pass
    if re.fullmatch(r"-?\d+", value):
        return int(value) * NS if len(value) <= 10 else int(value)
    m = _RFC3339.fullmatch(value)
    if m is None:
        raise _BadRequest(f'invalid {name}: cannot parse "{value}" as a timestamp')
    base, frac_digits, zone = m.groups()
    dt = datetime.fromisoformat(base + ("+00:00" if zone.upper() == "Z" else zone))
    return int(dt.timestamp()) * NS + int((frac_digits or "0").ljust(9, "0"))


def parse_duration(value: str) -> int:
    """A Prometheus-style duration (`1h30m`, `5m`, `500ms`) in nanoseconds."""
    parts = _DURATION.findall(value)
    if not value or "".join(n + u for n, u in parts) != value:
        raise _BadRequest(f'not a valid duration string: "{value}"')
    return sum(int(n) * _UNIT_NS[u] for n, u in parts)


class LokiServer(SandboxServer):
    """The sandbox Loki. Start it, push logs, point `LokiClient` at `server.url`."""

    name = "loki"

    def __init__(self) -> None:
        self._store_lock = threading.Lock()
        self._streams: dict[StreamKey, set[tuple[int, str]]] = {}
        super().__init__()

    def setup_routes(self) -> None:
        self.route("GET", "/ready", lambda req: Response(200, "ready\n"))
        self.route("POST", "/loki/api/v1/push", self._push)
        self.route("GET", "/loki/api/v1/query_range", self._guard(self._query_range))
        self.route("GET", "/loki/api/v1/query", self._guard(self._instant))
        self.route("GET", "/loki/api/v1/labels", self._labels)
        self.route("GET", "/loki/api/v1/label/{name}/values", self._label_values)

    # --- Python control ------------------------------------------------------------
    def push(
        self, labels: Mapping[str, str], entries: Iterable[tuple[int | datetime, str]]
    ) -> None:
        """Store `(timestamp, line)` entries under `labels`; timestamps are ns ints or datetimes."""
        if not labels:
            raise ValueError("a stream needs at least one label")
        key: StreamKey = tuple(sorted(labels.items()))
        with self._store_lock:
            bucket = self._streams.setdefault(key, set())
            # A set: Loki drops an entry identical in timestamp and line to a stored one.
            bucket.update((to_ns(ts), line) for ts, line in entries)

    def streams(self) -> list[LogStream]:
        """Everything stored, one `LogStream` per label set, entries oldest first."""
        with self._store_lock:
            items = sorted((k, sorted(v)) for k, v in self._streams.items())
        return [
            LogStream(labels=dict(k), entries=[LogEntry(ts_ns=t, line=x) for t, x in v])
            for k, v in items
        ]

    def reset(self) -> None:
        super().reset()
        with self._store_lock:
            self._streams.clear()

    def not_found(self, req: Request, status: int = 404) -> Response:
        if status == 405:
            return Response(405, "")
        return Response(404, "404 page not found\n")

    # --- push ----------------------------------------------------------------------
    def _push(self, req: Request) -> Response:
        ctype = req.headers.get("content-type", "")
        if not ctype.startswith("application/json"):
            return _text400(f"unsupported (fake Loki): push Content-Type {ctype!r}; send JSON")
        try:
            body = req.body
            if req.headers.get("content-encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            streams = json.loads(body)["streams"]
            parsed = [(s["stream"], [_push_value(v) for v in s["values"]]) for s in streams]
        except (ValueError, KeyError, TypeError, OSError, EOFError) as exc:
            return _text400(f"loghttp.PushRequest: failed to parse push request: {exc!r}")
        for labels, _ in parsed:
            if not isinstance(labels, dict) or not labels:
                return _text400("error at least one label pair is required per stream")
        for labels, values in parsed:
            self.push({str(k): str(v) for k, v in labels.items()}, values)
        return Response(204)

    # --- queries -------------------------------------------------------------------
    @staticmethod
    def _guard(handler: Any) -> Any:
        def run(req: Request) -> Response:
            try:
                return handler(req)
            except (_BadRequest, LogQLError) as exc:
                return _text400(str(exc))

        return run

    def _query_range(self, req: Request) -> Response:
        end = parse_time("end", req.arg("end"), time.time_ns())
        since = req.arg("since")
        default_start = end - (parse_duration(since) if since else 3600 * NS)
        start = parse_time("start", req.arg("start"), default_start)
        step = req.arg("step")
        if step and not re.fullmatch(r"\d+(\.\d+)?", step):
            parse_duration(step)  # validated only: log queries have no step
        return self._answer(req, start, end)

    def _instant(self, req: Request) -> Response:
        # Loki 3 answers log queries here with a 400; the sandbox keeps the older, lenient
        # behaviour and serves the hour before `time`, `time` included.
        at = parse_time("time", req.arg("time"), time.time_ns())
        return self._answer(req, at - 3600 * NS, at + 1)

    def _answer(self, req: Request, start: int, end: int) -> Response:
        query = parse(req.arg("query") or "")
        limit_text = req.arg("limit") or "100"
        if not re.fullmatch(r"-?\d+", limit_text):
            raise _BadRequest(f'invalid limit: strconv.ParseInt: parsing "{limit_text}"')
        limit = int(limit_text)
        if limit <= 0:
            raise _BadRequest("limit must be a positive value")
        if limit > MAX_ENTRIES_LIMIT:
            raise _BadRequest(
                f"max entries limit per query exceeded, limit > max_entries_limit "
                f"({limit} > {MAX_ENTRIES_LIMIT})"
            )
        direction = (req.arg("direction") or "backward").lower()
        if direction not in ("backward", "forward"):
            raise _BadRequest(f"invalid direction '{req.arg('direction')}'")
        if end <= start:
            raise _BadRequest("end timestamp must not be before or equal to start time")
        with self._store_lock:
            snapshot = [(k, list(v)) for k, v in self._streams.items()]
        hits = [
            (ts, line, key)
            for key, entries in snapshot
            if query.matches_stream(dict(key))
            for ts, line in entries
            if start <= ts < end and query.matches_line(line)
        ]
        # `limit` counts entries across all streams, after sorting in `direction`.
        hits.sort(key=lambda h: (h[0], h[1]), reverse=direction == "backward")
        grouped: dict[StreamKey, list[list[str]]] = {}
        for ts, line, key in hits[:limit]:
            grouped.setdefault(key, []).append([str(ts), line])
        result = [{"stream": dict(k), "values": v} for k, v in grouped.items()]
        total = sum(len(v) for v in grouped.values())
        return Response(
            200,
            {
                "status": "success",
                "data": {"resultType": "streams", "result": result, "stats": _stats(total)},
            },
        )

    # --- labels --------------------------------------------------------------------
    def _labels(self, req: Request) -> Response:
        with self._store_lock:
            names = {name for key in self._streams for name, _ in key}
        return Response(200, {"status": "success", "data": sorted(names)})

    def _label_values(self, req: Request) -> Response:
        wanted = req.params["name"]
        with self._store_lock:
            values = {v for key in self._streams for name, v in key if name == wanted}
        return Response(200, {"status": "success", "data": sorted(values)})


def _push_value(value: Any) -> tuple[int, str]:
    """One `["<ns>", "line"(, {structured metadata})]` value; metadata is accepted and dropped."""
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise ValueError(f"value must be [timestamp, line] or with metadata, got {value!r}")
    ts, line = value[0], value[1]
    if not isinstance(ts, str) or not ts.isdigit() or not isinstance(line, str):
        raise ValueError(f"timestamp must be a string of nanoseconds, got {ts!r}")
    return int(ts), line


def _stats(total: int) -> dict[str, Any]:
    # A trimmed copy of Loki's stats block: the summary keys clients commonly read.
    return {
        "summary": {
            "bytesProcessedPerSecond": 0,
            "linesProcessedPerSecond": 0,
            "totalBytesProcessed": 0,
            "totalLinesProcessed": 0,
            "execTime": 0.0,
            "queueTime": 0.0,
            "subqueries": 0,
            "totalEntriesReturned": total,
            "splits": 0,
            "shards": 0,
        }
    }


def _text400(message: str) -> Response:
    return Response(400, message, content_type="text/plain; charset=utf-8")
