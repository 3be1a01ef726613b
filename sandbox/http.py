"""A small threaded HTTP server for the sandbox stand-ins.

Every sandbox server (fleet exporter, Loki, Discord, Anthropic, AWX, Semaphore) is a
`SandboxServer`: it binds 127.0.0.1 on port 0, starts in milliseconds, records every
request it receives (for tests to assert on), supports fault injection, and exposes a
control API under `/_control/` in addition to its Python methods.

Control API common to every server:
    GET  /_control/requests            -> [{"method","path","query","headers","body"}...]
    POST /_control/reset               -> clears recorded requests and faults
    POST /_control/faults              -> body: a `Fault` as JSON; queued until used up
    DELETE /_control/faults            -> clears faults
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, Field


def free_port() -> int:
    """A loopback port nothing listens on right now (for processes that need a port
    given up front: Prometheus, PostgreSQL, a Prefect server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Request:
    """One HTTP request as the server received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # from the route pattern
    at: float = field(default_factory=time.time)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def to_dict(self) -> dict[str, Any]:
        try:
            body: Any = self.json()
        except ValueError:
            body = self.body.decode("utf-8", "replace")
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": body,
            "at": self.at,
        }


@dataclass
class Response:
    """What a route handler answers. `body` may be bytes, str or a JSON-able value."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None

    def encode(self) -> tuple[bytes, str]:
        if self.body is None:
            return b"", self.content_type or "text/plain"
        if isinstance(self.body, bytes):
            return self.body, self.content_type or "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode(), self.content_type or "text/plain; charset=utf-8"
        return json.dumps(self.body).encode(), self.content_type or "application/json"


class Fault(BaseModel):
    """An injected misbehaviour for requests matching `method` and `path` (a regex).

    mode:
      - "respond": answer `status`/`body`/`headers` instead of the real handler;
      - "delay": sleep `delay` seconds, then run the real handler;
      - "drop": close the connection without answering, before the handler runs;
      - "drop_after": run the real handler (its side effects happen), then close the
        connection without answering — e.g. a job is created but the client never hears.
    `times` is how many matching requests it applies to (-1: until cleared).
    """

    method: str = "*"
    path: str = ".*"
    mode: str = Field(default="respond", pattern="^(respond|delay|drop|drop_after)$")
    status: int = 500
    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict)
    delay: float = 0.0
    times: int = 1

    def matches(self, method: str, path: str) -> bool:
        return (self.method == "*" or self.method.upper() == method) and bool(
            re.fullmatch(self.path, path)
        )


Handler = Callable[[Request], Response]


class _Drop(Exception):
    """Raised internally to close the connection without an answer."""


class SandboxServer:
    """Base class: subclasses register routes in `setup_routes()`."""

    name = "sandbox"

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._lock = threading.RLock()
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.route("GET", "/_control/requests", self._control_requests)
        self.route("POST", "/_control/reset", self._control_reset)
        self.route("POST", "/_control/faults", self._control_add_fault)
        self.route("DELETE", "/_control/faults", self._control_clear_faults)
        self.setup_routes()

    # --- routing -------------------------------------------------------------------
    def setup_routes(self) -> None:  # pragma: no cover - overridden
        """Register the server's routes with `self.route`."""

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Register `handler` for `method` and a path pattern with `{name}` segments."""
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        self._routes.append((method.upper(), re.compile(f"^{regex}$"), handler))

    # --- lifecycle -----------------------------------------------------------------
    def start(self, port: int = 0, host: str = "127.0.0.1") -> SandboxServer:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: without this every keep-alive
            # request waits ~40 ms on a delayed ACK
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _handle(self) -> None:
                server._dispatch(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.name}-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        self.on_stop()

    def on_stop(self) -> None:
        """Hook for subclasses that own threads or processes."""

    def __enter__(self) -> SandboxServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, f"{self.name} server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- recording and faults ------------------------------------------------------
    def received(self, method: str | None = None, path: str | None = None) -> list[Request]:
        """Recorded requests (control calls excluded), optionally filtered; `path` is a regex."""
        with self._lock:
            reqs = list(self.requests)
        return [
            r
            for r in reqs
            if (method is None or r.method == method.upper())
            and (path is None or re.fullmatch(path, r.path))
        ]

    def reset(self) -> None:
        """Forget recorded requests and faults (subclasses also reset their state)."""
        with self._lock:
            self.requests.clear()
            self.faults.clear()

    def inject(self, fault: Fault | None = None, **kwargs: Any) -> Fault:
        """Queue a fault: `server.inject(path="/api/.*", status=503, times=2)`."""
        fault = fault or Fault(**kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path) and fault.times != 0:
                    if fault.times > 0:
                        fault.times -= 1
                    return fault
        return None

    # --- control routes ------------------------------------------------------------
    def _control_requests(self, req: Request) -> Response:
        return Response(body=[r.to_dict() for r in self.received()])

    def _control_reset(self, req: Request) -> Response:
        self.reset()
        return Response(204)

    def _control_add_fault(self, req: Request) -> Response:
        self.inject(Fault.model_validate(req.json()))
        return Response(204)

    def _control_clear_faults(self, req: Request) -> Response:
        self.clear_faults()
        return Response(204)

    # --- dispatch ------------------------------------------------------------------
    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        req = Request(
            method=h.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in h.headers.items()},
            body=body,
        )
        control = parts.path.startswith("/_control/")
        if not control:
            with self._lock:
                self.requests.append(req)
        try:
            resp = self._respond(req, control)
        except _Drop:
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        try:
            self._write(h, resp)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its timeout fired during a delay fault)

    def _respond(self, req: Request, control: bool) -> Response:
        fault = None if control else self._take_fault(req.method, req.path)
        if fault is not None:
            if fault.mode == "respond":
                return Response(fault.status, fault.body, dict(fault.headers))
            if fault.mode == "drop":
                raise _Drop
            if fault.mode == "delay":
                time.sleep(fault.delay)
        resp = self._route(req)
        if fault is not None and fault.mode == "drop_after":
            raise _Drop
        return resp

    def _route(self, req: Request) -> Response:
        allowed = False
        for method, regex, handler in self._routes:
            m = regex.match(req.path)
            if not m:
                continue
            if method != req.method and not (method == "GET" and req.method == "HEAD"):
                allowed = True
                continue
            req.params = m.groupdict()
            try:
                return handler(req)
            except Exception as exc:  # noqa: BLE001 - a stand-in bug must show, not hang
                return Response(500, {"sandbox_error": f"{type(exc).__name__}: {exc}"})
        if allowed:
            return self.not_found(req, 405)
        return self.not_found(req, 404)

    def not_found(self, req: Request, status: int = 404) -> Response:
        """The answer for an unknown path; servers override it with their product's shape."""
        return Response(status, {"detail": "Not Found" if status == 404 else "Method Not Allowed"})

    @staticmethod
    def _write(h: BaseHTTPRequestHandler, resp: Response) -> None:
        payload, ctype = resp.encode()
        h.send_response(resp.status)
        headers = {"Content-Type": ctype, **resp.headers}
        for name, value in headers.items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        if h.command != "HEAD" and resp.status not in (204, 304):
            h.wfile.write(payload)
