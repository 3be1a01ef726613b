"""Shared by the benchmark scripts: statistics, machine facts, results, a Prefect server.

Import this module before `prefect` (it gives the process its own PREFECT_HOME, so no
profile of the machine's user can point the benchmark at another server).

Conventions every script follows:
- a figure is `compare(subject, baseline)`: both measured in the same run, interleaved
  (`alternate`), each with n, median, p95 (nearest rank), min and max;
- a result file is `benchmarks/results/<name>.json` written by `write_result`, with the
  machine's facts and its load before and after (the box is shared: say so);
- a script runs against PREFECT_API_URL when it is set (`make bench` starts one server
  for all of them) and starts its own `prefect server start` otherwise.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-prefect-home-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from sandbox.demo_procs import Child, Processes, wait_for  # noqa: E402
from sandbox.http import free_port  # noqa: E402


# --- statistics -----------------------------------------------------------------------
def nearest_rank(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def stats(values: Sequence[float], digits: int = 6) -> dict[str, Any]:
    """n, median, p95 (nearest rank), min, max and the raw values."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": round(statistics.median(values), digits),
        "p95": round(nearest_rank(values, 0.95), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "values": [round(v, digits) for v in values],
    }


def compare(
    subject: Sequence[float],
    baseline: Sequence[float],
    *,
    unit: str = "s",
    what: str = "",
    baseline_is: str = "",
    **extra: Any,
) -> dict[str, Any]:
    """One figure beside its baseline: both summaries, the ratio and gap of the medians."""
    s, b = stats(subject), stats(baseline)
    out: dict[str, Any] = {"what": what, "unit": unit, "baseline_is": baseline_is}
    out["subject"], out["baseline"] = s, b
    if s.get("n") and b.get("n"):
        out["ratio_median"] = round(s["median"] / b["median"], 3) if b["median"] else None
        out["gap_median"] = round(s["median"] - b["median"], 4)
        out["ratio_p95"] = round(s["p95"] / b["p95"], 3) if b["p95"] else None
    out.update(extra)
    return out


def alternate(rep: int, first: Any, second: Any) -> list[Any]:
    """Subject and baseline of repetition `rep` in ABBA order (cancels a slow drift)."""
    return [first, second] if rep % 4 in (0, 3) else [second, first]


# --- the machine ------------------------------------------------------------------------
def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_info() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = next(
        (
            int(line.split()[1])
            for line in _read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal:")
        ),
        0,
    )
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(mem_kb / 1024**2, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1_5_15": load_average(),
    }
    with contextlib.suppress(Exception):
        import prefect

        info["prefect"] = prefect.__version__
    with contextlib.suppress(Exception):
        info["prometheus"] = subprocess.run(
            ["prometheus", "--version"], capture_output=True, text=True, timeout=10
        ).stdout.splitlines()[0]
    with contextlib.suppress(Exception):
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=10,
        ).stdout.strip()
    return info


# --- memory -------------------------------------------------------------------------------
def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in bytes."""
    out = {}
    for line in _read(f"/proc/{pid}/status").splitlines():
        key = line.split(":", 1)[0]
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(line.split()[1]) * 1024
    return out


def pss_bytes(pid: int | str = "self") -> int | None:
    """Proportional set size (shared pages divided among their users), when readable."""
    for line in _read(f"/proc/{pid}/smaps_rollup").splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return None


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def mib(n: float | None) -> float | None:
    return None if n is None else round(n / 1024**2, 1)


# --- results ------------------------------------------------------------------------------
def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_result(name: str, data: dict[str, Any], out_dir: Path | None = None) -> Path:
    """Write `<out_dir>/<name>.json` (default benchmarks/results/) and return its path."""
    out_dir = out_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


class Run:
    """The envelope of one benchmark's result: machine, load before/after, duration."""

    def __init__(self, name: str, *, quick: bool, method: str) -> None:
        self.name = name
        self.started = time.monotonic()
        self.data: dict[str, Any] = {
            "benchmark": name,
            "measured_at": now_iso(),
            "quick": quick,
            "machine": machine_info(),
            "method": " ".join(method.split()),
        }

    def finish(self, out_dir: Path | None = None) -> Path:
        self.data["load_average_after"] = load_average()
        self.data["prefect_server_database"] = os.environ.get("BENCH_PREFECT_DB", "not used")
        self.data["duration_s"] = round(time.monotonic() - self.started, 1)
        return write_result(self.name, self.data, out_dir)


# --- a Prefect server -------------------------------------------------------------------


def prefect_server_env(home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
            "PREFECT_SERVER_UI_ENABLED": "false",
        }
    )
    return env


class PrefectServer:
    """`prefect server start` on a free loopback port; stopped by its PID.

    Its database is SQLite in a fresh home, or `database_url` (postgresql+asyncpg://...)."""

    def __init__(self, workdir: Path | None = None, database_url: str | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="bench-prefect-server-"))
        self.port = free_port()
        self.env = prefect_server_env(self.workdir / "home", self.port)
        self.database = "postgresql" if database_url else "sqlite"
        if database_url:
            self.env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
        self.procs = Processes(self.workdir, self.env)
        self.child: Child | None = None
        self.start_seconds: float | None = None

    @property
    def api_url(self) -> str:
        return self.env["PREFECT_API_URL"]

    def start(self, timeout: float = 180.0) -> PrefectServer:
        import httpx

        (self.workdir / "home").mkdir(parents=True, exist_ok=True)
        prefect = str(Path(sys.executable).parent / "prefect")
        t = time.monotonic()
        self.child = self.procs.start(
            "prefect-server",
            [
                prefect,
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-ui",
            ],
        )
        wait_for(
            lambda: httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200,
            timeout=timeout,
            what="the Prefect server",
            child=self.child,
            interval=0.25,
        )
        self.start_seconds = round(time.monotonic() - t, 1)
        os.environ["BENCH_PREFECT_SERVER_LOG"] = str(self.child.log)
        os.environ["BENCH_PREFECT_DB"] = self.database
        return self

    def rss(self) -> int:
        """RSS of the server and its children (uvicorn, services), in bytes."""
        from sandbox.demo_procs import descendants

        if self.child is None:
            return 0
        return sum(
            proc_status(p).get("VmRSS", 0) for p in [self.child.pid, *descendants(self.child.pid)]
        )

    def stop(self) -> None:
        self.procs.stop_all(report=lambda _msg: None)


def server_lock_errors() -> int | None:
    """How many "database is locked" errors the Prefect server has logged so far (SQLite
    only: each answered a request with 503, which the client retried after a back-off);
    None when the server's log is unknown (a server this run did not start)."""
    path = os.environ.get("BENCH_PREFECT_SERVER_LOG")
    if not path or not Path(path).exists():
        return None
    marker = "sqlite3.OperationalError: database is locked"
    with open(path, errors="replace") as f:
        return sum(1 for line in f if line.startswith(marker))


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """The API URL to use: PREFECT_API_URL when set, else a server started here."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        yield url
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = PrefectServer().start()
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            os.environ["PREFECT_API_URL"] = server.api_url  # for child processes
            yield server.api_url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


NOWHERE = "http://127.0.0.1:9"  # the systems a listener or a paused action never calls


async def save_listener_blocks(names: Any, discord_api: str, ledger_url: str) -> None:
    """Save what a listener and a paused action load: the sandbox Discord and a ledger;
    the other blocks point nowhere (they are loaded, never called)."""
    from pydantic import SecretStr

    from blocks import (
        AwxConnection,
        ClaudeCredentials,
        DiscordBot,
        LedgerDatabase,
        LokiConnection,
        PrometheusConnection,
        SemaphoreConnection,
    )
    from tests.fixtures.loki_discord import APPROVER_ROLE_ID, BOT_TOKEN, CHANNEL_ID, GUILD_ID

    await DiscordBot(
        bot_token=SecretStr(BOT_TOKEN),
        approvals_channel_id=CHANNEL_ID,
        guild_id=GUILD_ID,
        approver_role_ids=[APPROVER_ROLE_ID],
        api_base_url=discord_api,
    ).asave(names.discord, overwrite=True)
    await LedgerDatabase(url=SecretStr(ledger_url)).asave(names.ledger, overwrite=True)
    await PrometheusConnection(url=NOWHERE).asave(names.prometheus, overwrite=True)
    await LokiConnection(url=NOWHERE).asave(names.loki, overwrite=True)
    await ClaudeCredentials(api_key=SecretStr("unused"), base_url=NOWHERE).asave(
        names.claude, overwrite=True
    )
    await AwxConnection(url=NOWHERE, token=SecretStr("unused")).asave(names.awx, overwrite=True)
    await SemaphoreConnection(url=NOWHERE, api_token=SecretStr("unused"), project_id=1).asave(
        names.semaphore, overwrite=True
    )
