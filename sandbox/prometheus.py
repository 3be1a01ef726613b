"""Run Debian's real `prometheus` binary over the sandbox fleet (or a backfilled history).

    with Fleet(["web-01", "web-02"]) as fleet, PrometheusServer(fleet) as prom:
        ...  # prom.url: every target has been scraped at least once

Each server gets a fresh working directory (config, log, TSDB) on a free loopback port,
and is stopped by its own PID. The scrape config has one target per host, blackbox
style: `__param_target` and `instance` are the host name and `__address__` the fleet
exporter, so every host has its own real `up` series.

Timing facts (testbed-notes §1): `/-/ready` answers in ~0.1 s, but Prometheus 2.42
applies target sets on a fixed 5 s tick, so the first scrape lands ~5-6 s after start
whatever the scrape interval; `start()` polls until every target has been scraped.

History without waiting: `backfill(...)` writes TSDB blocks with `promtool` into the data
dir before `start()` (`sandbox.prometheus_backfill`), with or without live scraping after.

Scale, measured on the 2-core box (Prometheus CPU + exporter CPU, steady state):
  1,000 hosts live: 1 s interval 0.31 + 0.22 core; 2 s 0.17 + 0.12; 5 s 0.08 + 0.06
  (Prometheus RSS ~250 MB, exporter ~45 us per scrape). Use 5 s for long runs.
  10,000 hosts: live at 15 s costs 0.21 + 0.15 core and 2-3 GB RSS, and rate windows
  fill only as time passes; backfilled blocks (6 min, 15 s step: ~40 s to build, 0.1 s
  to ready, ~200 MB RSS) are the way to run detection at that size. Query at
  `backfilled_until` (the history's end): at "now" a `[1m]` window is empty once the
  build took longer than a step or two.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import httpx
import yaml

from sandbox.fleet import Fleet
from sandbox.fleet_state import HostState
from sandbox.http import free_port
from sandbox.prometheus_backfill import Segment, backfill_blocks
from sandbox.prometheus_config import (
    JOB,
    PrometheusNotInstalled,
    duration,
    find_binary,
    scrape_config,
)

__all__ = [
    "JOB",
    "PrometheusNotInstalled",
    "PrometheusServer",
    "PrometheusStartError",
    "find_binary",
    "scrape_config",
]


class PrometheusStartError(RuntimeError):
    """Prometheus exited or did not become ready in time; carries its log tail."""


class PrometheusServer:
    """A real Prometheus process; `start()` returns once it is ready and has scraped."""

    def __init__(
        self,
        fleet: Fleet | None = None,
        *,
        scrape_interval: float = 1.0,
        scrape_timeout: float | None = None,
        job: str = JOB,
        data_dir: str | Path | None = None,
        binary: str | None = None,
        lookback_delta: float | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.fleet = fleet
        self.scrape_interval = scrape_interval
        self.scrape_timeout = scrape_timeout
        self.job = job
        self.binary = binary
        self.lookback_delta = lookback_delta
        self.extra_args = list(extra_args)
        self.workdir = Path(tempfile.mkdtemp(prefix="sandbox-prometheus-"))
        # A caller's data dir is the caller's to keep; ours goes away on stop().
        self._own_data = data_dir is None
        self.data_dir = Path(data_dir) if data_dir else self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._http = httpx.Client(timeout=10.0)
        self.timings: dict[str, float] = {}  # seconds from launch: "ready", "scraped"
        self.backfilled_until: float | None = None  # unix time of the last backfilled sample

    # --- configuration -------------------------------------------------------------
    @property
    def targets(self) -> list[str]:
        return self.fleet.hosts if self.fleet is not None else []

    def config(self) -> dict[str, Any]:
        exporter = ""
        if self.fleet is not None:
            exporter = self.fleet.url.removeprefix("http://")  # fails if not started
        return scrape_config(
            self.targets,
            exporter,
            scrape_interval=self.scrape_interval,
            scrape_timeout=self.scrape_timeout,
            job=self.job,
        )

    def scrape(self, fleet: Fleet | None) -> None:
        """Scrape `fleet` from now on (None: stop scraping); reloads a running server."""
        self.fleet = fleet
        if self.running:
            self.reload()

    def reload(self) -> None:
        """Rewrite the config and apply it with `POST /-/reload` (lifecycle API)."""
        self._write_config()
        resp = self._http.post(f"{self.url}/-/reload")
        if resp.status_code != 200:
            raise PrometheusStartError(f"reload refused: HTTP {resp.status_code} {resp.text}")

    def backfill(
        self,
        segments: Sequence[Segment],
        *,
        hosts: Sequence[str] | int,
        defaults: HostState | None = None,
        step: float = 15.0,
        end: float | None = None,
        shard_hosts: int | None = None,
    ) -> Fleet:
        """Write history into the data dir before `start()`; see `backfill_blocks`.

        Answers the (unstarted) fleet in its final state: start it and pass it to
        `scrape()` to continue the same series live, without a counter reset.
        """
        if self.running:
            raise RuntimeError("backfill before start(): Prometheus loads blocks at start-up")
        end = time.time() if end is None else end
        fleet = backfill_blocks(
            self.data_dir,
            segments,
            hosts=hosts,
            defaults=defaults,
            step=step,
            end=end,
            job=self.job,
            workdir=self.workdir,
            shard_hosts=shard_hosts,
        )
        self.backfilled_until = end
        return fleet

    def _write_config(self) -> Path:
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        return path

    # --- lifecycle -----------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("Prometheus is not started")
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float | None = None, *, scrapes: int = 1) -> Self:
        """Launch, wait for `/-/ready`, then until every fleet host was scraped `scrapes` times.

        `scrapes=2` makes `irate()`/`rate()` over live data answer for every host at once.
        `timeout` bounds the whole wait; the default allows the 5 s discovery tick plus
        the scrape intervals, with room for a busy 2-core machine.
        """
        if self.running:
            return self
        binary = self.binary or find_binary("prometheus")
        config = self._write_config()
        wait = timeout or 30.0 + (2 + scrapes) * self.scrape_interval
        deadline = time.monotonic() + wait
        for attempt in range(3):  # the free port can be taken between probe and bind
            launched = self._launch(binary, config)
            try:
                self._wait(deadline, lambda: self._get_ok("/-/ready"), "ready")
                break
            except PrometheusStartError as exc:
                self._terminate()
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
        self.timings["ready"] = time.time() - launched
        atexit.register(self.stop)
        if self.targets:
            expected = len(self.targets)

            def all_scraped() -> bool:
                return self._scraped(scrapes, since=launched) == expected

            self._wait(deadline, all_scraped, "scraped")
            self.timings["scraped"] = time.time() - launched
        return self

    def _scraped(self, scrapes: int, since: float) -> float | None:
        """How many targets have at least `scrapes` live `up` samples since `since`."""
        # The window only reaches back to the launch, so backfilled `up` samples (all
        # older) never count.
        window_ms = int((time.time() - since) * 1000)
        if window_ms <= 0:
            return None
        up = f'up{{job="{self.job}"}}'
        return self.query_value(f"count(count_over_time({up}[{window_ms}ms]) >= {scrapes})")

    def _launch(self, binary: str, config: Path) -> float:
        self.port = free_port()
        args = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]
        if self.lookback_delta is not None:
            args.append(f"--query.lookback-delta={duration(self.lookback_delta)}")
        log = (self.workdir / "prometheus.log").open("ab")
        launched = time.time()
        self._proc = subprocess.Popen(
            [*args, *self.extra_args], stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        log.close()
        return launched

    def _wait(self, deadline: float, check: Callable[[], bool], what: str) -> None:
        """Poll `check` until true; fail early if the process died, late at the deadline."""
        pause = 0.02
        while True:
            if not self.running:
                raise PrometheusStartError(f"prometheus exited before {what}: {self.log_tail()}")
            try:
                if check():
                    return
            except httpx.HTTPError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise PrometheusStartError(f"prometheus not {what} in time: {self.log_tail()}")
            time.sleep(pause)
            pause = min(pause * 1.5, 0.25)

    def _get_ok(self, path: str) -> bool:
        return self._http.get(f"{self.url}{path}").status_code == 200

    def log_tail(self, chars: int = 2000) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate by PID (kill after `timeout`), then remove the working files."""
        atexit.unregister(self.stop)
        self._terminate(timeout)
        self._http.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self._own_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _terminate(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- small synchronous helpers (readiness, benchmarks) ---------------------------
    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Raw instant-query result (Prometheus's JSON `result` list)."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        resp = self._http.post(f"{self.url}/api/v1/query", data=params)
        body: Mapping[str, Any] = resp.json()
        if body.get("status") != "success":
            raise PrometheusStartError(f"query {expr!r} failed: {body}")
        return body["data"]["result"]

    def query_value(self, expr: str) -> float | None:
        """The single value of a one-element vector or scalar answer, else None."""
        result = self.query(expr)
        if len(result) == 1 and isinstance(result[0], dict):
            return float(result[0]["value"][1])
        if len(result) == 2 and not isinstance(result[0], dict):  # scalar [ts, "v"]
            return float(result[1])
        return None

    def rss_bytes(self) -> int:
        """Resident memory of the Prometheus process (Linux /proc)."""
        assert self._proc is not None
        for line in Path(f"/proc/{self._proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def cpu_seconds(self) -> float:
        """User + system CPU time the Prometheus process has used so far."""
        assert self._proc is not None
        fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
