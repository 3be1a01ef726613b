"""The sandbox as the benchmarks use it: a real Prometheus with history, the stand-ins.

`PrometheusWithHistory(size)`: Debian's Prometheus over `size` hosts with 6 minutes of
backfilled history (so the default 5-minute rate windows are full from the first query);
with `live_interval`, a fleet exporter in its own process continues every series live
(`benchmarks.fleet_server`), else queries go to the history's end (`at`).

`Stack`: that, plus the sandbox Loki, Discord, Anthropic, AWX and Semaphore servers (the
test suite's users, tokens and templates), with the blocks saved in the Prefect server
under the test suite's names (`tests.fixtures.stack.NAMES`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HISTORY_S = 360.0
BACKFILL_STEP_S = 15.0


def scenario(hosts: list[str], *, issues: bool = True) -> dict[str, dict[str, Any]]:
    """Persisting issues on a fixed share of the hosts: 1% a failed nginx.service, 0.5% a
    95% full /var, 0.4% a CPU at 97% (about 1.9 issues per 100 hosts); none if not
    `issues`."""
    out: dict[str, dict[str, Any]] = {}
    if not issues:
        return out
    for i, host in enumerate(hosts):
        patch: dict[str, Any] = {}
        if i % 100 == 7:
            patch["units"] = {"nginx.service": {"state": "failed"}}
        if i % 200 == 13:
            patch["mounts"] = {"/var": {"used_pct": 95.0}}
        if i % 250 == 29:
            patch["cpu_busy_pct"] = 97.0
        if patch:
            out[host] = patch
    return out


@dataclass
class RemoteFleet:
    """What `PrometheusServer` needs of a fleet served by another process."""

    hosts: list[str]
    url: str


class PrometheusWithHistory:
    """A real Prometheus with the size's history (and a live exporter process)."""

    def __init__(
        self, size: int | list[str], *, live_interval: float | None, issues: bool = True
    ) -> None:
        from sandbox.fleet import host_names

        self.hosts = host_names(size)
        self.live_interval = live_interval
        self.patches = scenario(self.hosts, issues=issues)
        self.prom: Any = None
        self.exporter: subprocess.Popen[str] | None = None
        self.timings: dict[str, float] = {}
        self.at: datetime | None = None  # query time for backfill-only data
        self.fleet_url: str | None = None

    @property
    def url(self) -> str:
        return self.prom.url

    def describe(self) -> str:
        if self.live_interval:
            return f"{HISTORY_S:g} s backfilled, then scraped live every {self.live_interval:g} s"
        return f"{HISTORY_S:g} s backfilled at a {BACKFILL_STEP_S:g} s step, queried at its end"

    def start(self) -> PrometheusWithHistory:
        from sandbox.prometheus import PrometheusServer

        interval = self.live_interval
        self.prom = PrometheusServer(None, scrape_interval=interval or 15.0)
        end = time.time()
        t = time.monotonic()
        self.prom.backfill(
            [(HISTORY_S, self.patches)], hosts=self.hosts, step=BACKFILL_STEP_S, end=end
        )
        self.timings["backfill_s"] = round(time.monotonic() - t, 1)
        if interval is not None:
            path = Path(tempfile.mkdtemp(prefix="bench-scenario-")) / "scenario.json"
            path.write_text(json.dumps({"hosts": self.hosts, "patches": self.patches}))
            self.exporter = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.fleet_server", str(end - HISTORY_S), str(path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert self.exporter.stdout is not None
            self.fleet_url = self.exporter.stdout.readline().strip()
            if not self.fleet_url:
                raise RuntimeError("the fleet exporter process did not start")
            self.prom.scrape(RemoteFleet(self.hosts, self.fleet_url))
        else:
            self.at = datetime.fromtimestamp(self.prom.backfilled_until, UTC)
        t = time.monotonic()
        # one live scrape of every host is enough: the rate windows hold the backfill
        self.prom.start(timeout=180.0, scrapes=1)
        self.timings["prometheus_start_s"] = round(time.monotonic() - t, 1)
        return self

    def rss_bytes(self) -> int:
        return self.prom.rss_bytes()

    def stop(self) -> None:
        if self.prom is not None:
            self.prom.stop()
            self.prom = None
        if self.exporter is not None:
            assert self.exporter.stdin is not None
            self.exporter.stdin.close()
            try:
                self.exporter.wait(10)
            except subprocess.TimeoutExpired:
                self.exporter.kill()
                self.exporter.wait()
            self.exporter = None


class Stack:
    """Prometheus with history plus every sandbox stand-in; blocks saved by `save_blocks`."""

    def __init__(
        self, hosts: int | list[str], *, live_interval: float = 2.0, issues: bool = False
    ) -> None:
        self.prometheus = PrometheusWithHistory(hosts, live_interval=live_interval, issues=issues)
        self.servers: dict[str, Any] = {}

    def start(self) -> Stack:
        from sandbox.anthropic import AnthropicServer
        from sandbox.awx import AwxServer
        from sandbox.loki import LokiServer
        from sandbox.semaphore import SemaphoreServer
        from tests.fixtures.anthropic import ANTHROPIC_TEST_KEY
        from tests.fixtures.jobs import (
            AWX_PASSWORD,
            AWX_TOKEN,
            AWX_USERNAME,
            SEMAPHORE_PROJECT,
            SEMAPHORE_TOKEN,
            job_templates,
        )
        from tests.fixtures.loki_discord import make_discord_server

        try:
            self.servers["loki"] = LokiServer().start()
            self.servers["discord"] = make_discord_server().start()
            self.servers["anthropic"] = AnthropicServer(api_keys=[ANTHROPIC_TEST_KEY]).start()
            self.servers["awx"] = AwxServer(
                job_templates(), token=AWX_TOKEN, username=AWX_USERNAME, password=AWX_PASSWORD
            ).start()
            self.servers["semaphore"] = SemaphoreServer(
                {SEMAPHORE_PROJECT: job_templates()}, token=SEMAPHORE_TOKEN
            ).start()
            self.prometheus.start()
            self.servers["prometheus"] = self.prometheus
        except BaseException:
            self.stop()
            raise
        return self

    def __getattr__(self, name: str) -> Any:
        servers = self.__dict__.get("servers") or {}
        if name in servers:
            return servers[name]
        raise AttributeError(name)

    async def save_blocks(self, ledger_url: str) -> Any:
        """Blocks for every system under the test suite's names; answers the names."""
        from tests.fixtures.stack import NAMES, save_blocks

        await save_blocks(self.servers, ledger_url)
        return NAMES

    def stop(self) -> None:
        self.prometheus.stop()
        for name in list(self.servers):
            server = self.servers.pop(name)
            if server is not self.prometheus:
                server.stop()
