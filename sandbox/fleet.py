"""The simulated fleet: a node_exporter + process-exporter stand-in for N hosts.

One scrape target per host, blackbox style: `GET /metrics?target=HOST` serves that host's
metrics without an `instance` label (Prometheus adds it by relabelling, see
`sandbox.prometheus`); a host whose state says `down` answers 503, so `up` reads 0.
The exporter is never restarted: state changes only through the control API or the
Python methods below, and counters keep growing across them (`sandbox.fleet_metrics`).

Control API (besides the `SandboxServer` one; JSON in and out):
    GET  /_control/hosts                          -> {"hosts": [names]}
    GET  /_control/hosts/{host}                   -> the host's `HostState`
    POST /_control/hosts/{host}                   -> body: merge patch; answers the new state
    POST /_control/scenario                       -> body: {host: merge patch, ...}
    POST /_control/hosts/{host}/actions/{action}  -> body: params; answers an `ActionResult`
    POST /_control/hosts/{host}/journal           -> body: {"unit", "lines": [...]}; pushed to Loki
    GET  /_control/actions                        -> the action history
    POST /_control/reset                          -> default state for every host, counters kept
Unknown host: 404. Bad patch, unknown action or bad action parameters: 400.

Scrapes are not recorded in `received()` (a live scrape would grow that list without
bound); `scrapes[host]` counts them instead. Faults injected for `/metrics` still apply.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml
from pydantic import ValidationError

from sandbox.fleet_actions import ActionError, Outcome, run_action
from sandbox.fleet_journal import JournalEntry, LokiPusher, unit_journal
from sandbox.fleet_metrics import Frame, HostSim
from sandbox.fleet_state import ActionRecord, ActionResult, HostState
from sandbox.http import Request, Response, SandboxServer

EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what node_exporter 1.5 sends
_LISTEN_BACKLOG = 4096  # the stdlib default of 5 drops connections when 1,000 targets start


class UnknownHost(LookupError):
    """The fleet has no host of that name (HTTP 404)."""


def host_names(hosts: Iterable[str] | int) -> list[str]:
    """Names as given, or `count` names host-0001, host-0002, ..."""
    if isinstance(hosts, int):
        width = max(4, len(str(hosts)))
        return [f"host-{i:0{width}d}" for i in range(1, hosts + 1)]
    names = list(hosts)
    if len(set(names)) != len(names):
        raise ValueError("host names must be unique")
    return names


class Fleet(SandboxServer):
    """N simulated hosts behind one HTTP server; see the module docstring for the API."""

    name = "fleet"

    def __init__(
        self,
        hosts: Iterable[str] | int,
        *,
        defaults: HostState | None = None,
        loki_url: str | None = None,
        loki_host_label: str = "host",
        loki_unit_label: str = "unit",
        loki_labels: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        started_at: float | None = None,
    ) -> None:
        super().__init__()
        self.defaults = defaults or HostState()
        self.clock = clock
        t0 = clock() if started_at is None else started_at
        self._sims = {name: HostSim(self.defaults, t0) for name in host_names(hosts)}
        self._change_lock = threading.Lock()
        self.actions: list[ActionRecord] = []
        self.scrapes: dict[str, int] = dict.fromkeys(self._sims, 0)
        self.loki = LokiPusher(
            loki_url, host_label=loki_host_label, unit_label=loki_unit_label, labels=loki_labels
        )

    # --- Python API ----------------------------------------------------------------
    @property
    def loki_url(self) -> str | None:
        """Where journal lines go; None (the default) sends nothing. Settable at any time."""
        return self.loki.url

    @loki_url.setter
    def loki_url(self, url: str | None) -> None:
        self.loki.url = url

    @property
    def hosts(self) -> list[str]:
        return list(self._sims)

    def state(self, host: str) -> HostState:
        return self._sim(host).state

    def frame(self, host: str) -> Frame:
        """The host's current counter frame (for exposition and backfill)."""
        return self._sim(host).frame

    def metrics(self, host: str) -> str | None:
        """What a scrape of `host` answers now; None when the host is down."""
        return self._sim(host).frame.exposition(self.clock())

    def patch(self, host: str, patch: Mapping[str, Any], *, at: float | None = None) -> HostState:
        """Apply a JSON merge patch to one host; answers the new state."""
        return self.apply_scenario({host: patch}, at=at)[host]

    def apply_scenario(
        self, scenario: Mapping[str, Mapping[str, Any]], *, at: float | None = None
    ) -> dict[str, HostState]:
        """Merge-patch several hosts at once; all patches validate before any applies.

        `at` is when the change happens (default: the clock's now); only the backfill,
        which plays history on a virtual clock, passes it.
        """
        with self._change_lock:
            new = {host: self._sim(host).state.patched(p) for host, p in scenario.items()}
            pushes = self._commit(new, {}, at)
        self._push(pushes)
        return new

    def load_scenario(self, path: str | Path) -> dict[str, Any]:
        """Apply a JSON or YAML file of the `apply_scenario` shape; answers its content."""
        text = Path(path).read_text()
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a scenario is a mapping of host -> patch")
        self.apply_scenario(data)
        return data

    def reset_hosts(self) -> None:
        """Every host back to the default state; counters continue, no journal lines."""
        with self._change_lock:
            now = self.clock()
            for sim in self._sims.values():
                sim.set_state(self.defaults, now)
            self.actions.clear()

    def reset(self) -> None:
        """The base reset (requests, faults) plus default host state and no action history."""
        super().reset()
        self.reset_hosts()

    def act(self, host: str, action: str, params: Mapping[str, Any] | None = None) -> ActionResult:
        """Run a remediation action; raises `UnknownHost` or `ActionError` (HTTP 404/400)."""
        with self._change_lock:
            outcome: Outcome = run_action(self._sim(host).state, action, params)
            pushes = self._commit({host: outcome.state}, {host: outcome.restarted_units}, None)
            record = ActionRecord(
                host=host,
                action=action,
                params=dict(params or {}),
                changed=outcome.changed,
                ok=outcome.ok,
                result=outcome.result,
                at=self.clock(),
            )
            self.actions.append(record)
        self._push(pushes)
        return ActionResult(
            host=host, action=action, changed=outcome.changed, ok=outcome.ok, result=outcome.result
        )

    def journal(self, host: str, unit: str, lines: Iterable[str]) -> None:
        """Push arbitrary journal lines for `host`/`unit` to Loki (no-op without a URL)."""
        self._sim(host)
        self._push([(host, unit, list(lines))])

    # --- internals -----------------------------------------------------------------
    def _sim(self, host: str) -> HostSim:
        try:
            return self._sims[host]
        except KeyError:
            raise UnknownHost(f"unknown host {host!r}") from None

    def _commit(
        self,
        new: Mapping[str, HostState],
        restarted: Mapping[str, frozenset[str]],
        at: float | None,
    ) -> list[JournalEntry]:
        """Switch hosts to new states (caller holds the lock); answers journal pushes."""
        now = self.clock() if at is None else at
        pushes: list[JournalEntry] = []
        for host, state in new.items():
            sim = self._sims[host]
            old = sim.state
            sim.set_state(state, now)
            for unit in sorted(old.units.keys() | state.units.keys()):
                before, after = old.units.get(unit), state.units.get(unit)
                lines = unit_journal(
                    unit,
                    before.state if before else None,
                    after.state if after else None,
                    unit in restarted.get(host, ()),
                )
                if lines:
                    pushes.append((host, unit, lines))
        return pushes

    def _push(self, pushes: list[JournalEntry]) -> None:
        self.loki.push(pushes)

    def on_stop(self) -> None:
        self.loki.close()

    def start(self, port: int = 0, host: str = "127.0.0.1") -> Fleet:
        super().start(port, host)
        assert self._httpd is not None
        self._httpd.socket.listen(_LISTEN_BACKLOG)  # Linux applies a new backlog in place
        # Prometheus drops its keep-alive connections when it stops; socketserver would
        # print a traceback per connection for that. Anything else is still reported.
        report = self._httpd.handle_error

        def handle_error(request: Any, client_address: Any) -> None:
            if not isinstance(sys.exc_info()[1], ConnectionError):
                report(request, client_address)

        self._httpd.handle_error = handle_error  # type: ignore[method-assign]
        return self

    # --- HTTP ------------------------------------------------------------------------
    def setup_routes(self) -> None:
        self.route("GET", "/metrics", self._http_metrics)
        self.route("GET", "/_control/hosts", lambda req: Response(body={"hosts": self.hosts}))
        self.route("GET", "/_control/hosts/{host}", self._http_get_host)
        self.route("POST", "/_control/hosts/{host}", self._http_patch_host)
        self.route("POST", "/_control/scenario", self._http_scenario)
        self.route("POST", "/_control/hosts/{host}/actions/{action}", self._http_action)
        self.route("POST", "/_control/hosts/{host}/journal", self._http_journal)
        self.route("GET", "/_control/actions", self._http_actions)

    def _scrape(self, target: str | None) -> tuple[int, str]:
        if not target:
            return 400, "missing ?target=HOST\n"
        sim = self._sims.get(target)
        if sim is None:
            return 404, f"unknown target {target!r}\n"
        text = sim.frame.exposition(self.clock())
        if text is None:
            return 503, f"{target} is down\n"
        self.scrapes[target] = self.scrapes.get(target, 0) + 1
        return 200, text

    def _http_metrics(self, req: Request) -> Response:
        status, text = self._scrape(req.arg("target"))
        return Response(status, text, content_type=EXPOSITION_TYPE)

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        # Fast path for scrapes: no recording, no Request object, one write. Only the
        # base path when a fault is queued for /metrics, so fault injection still works.
        if h.command != "GET" or not h.path.startswith("/metrics") or self._scrape_faulted():
            super()._dispatch(h)
            return
        parts = urlsplit(h.path)
        target = parse_qs(parts.query).get("target", [None])[-1]
        status, text = self._scrape(target) if parts.path == "/metrics" else (404, "")
        payload = text.encode()
        head = (
            f"HTTP/1.1 {status} {h.responses.get(status, ('',))[0]}\r\n"
            f"Content-Type: {EXPOSITION_TYPE}\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        h.wfile.write(head.encode() + payload)

    def _scrape_faulted(self) -> bool:
        return any(f.times != 0 and f.matches("GET", "/metrics") for f in self.faults)

    def _json_call(self, func: Callable[[], Any]) -> Response:
        try:
            return Response(body=func())
        except UnknownHost as exc:
            return Response(404, {"detail": str(exc)})
        except (ValidationError, ActionError, ValueError, TypeError) as exc:
            return Response(400, {"detail": str(exc)})

    def _http_get_host(self, req: Request) -> Response:
        return self._json_call(lambda: self.state(req.params["host"]).model_dump(mode="json"))

    def _http_patch_host(self, req: Request) -> Response:
        host = req.params["host"]
        return self._json_call(lambda: self.patch(host, _object(req)).model_dump(mode="json"))

    def _http_scenario(self, req: Request) -> Response:
        return self._json_call(lambda: {"hosts": sorted(self.apply_scenario(_object(req)))})

    def _http_action(self, req: Request) -> Response:
        host, action = req.params["host"], req.params["action"]
        return self._json_call(
            lambda: self.act(host, action, req.json() if req.body else {}).model_dump(mode="json")
        )

    def _http_journal(self, req: Request) -> Response:
        def push() -> dict[str, int]:
            body = _object(req)
            lines = body.get("lines")
            if not isinstance(body.get("unit"), str) or not isinstance(lines, list):
                raise ValueError('body must be {"unit": str, "lines": [str, ...]}')
            self.journal(req.params["host"], body["unit"], [str(x) for x in lines])
            return {"pushed": len(lines)}

        return self._json_call(push)

    def _http_actions(self, req: Request) -> Response:
        with self._change_lock:
            records = [r.model_dump(mode="json") for r in self.actions]
        return Response(body=records)


def _object(req: Request) -> dict[str, Any]:
    body = req.json()
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body
