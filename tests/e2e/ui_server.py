"""A real `prefect server start` with the UI, on a free loopback port, for browser tests.

The session's `prefect_harness` serves no UI, so browser tests start their own server:
a fresh PREFECT_HOME (its own SQLite database and UI build), and PREFECT_SERVER_API_PORT,
PREFECT_API_URL and PREFECT_UI_API_URL all naming the same port — with `--port` alone
the UI keeps calling port 4200 ("Can't connect to Server API"). It is ready when the API
answers `/health` and `/ui-settings` hands the browser that same API URL. It is stopped
by its PID (its own session, so the uvicorn child goes with it), never by name.

    with prefect_ui_server(workdir) as server:   # server.url, server.api_url, server.pid
        ...
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from sandbox.http import free_port

PREFECT = str(Path(sys.executable).parent / "prefect")


@dataclass(frozen=True)
class UiServer:
    url: str  # the UI, e.g. http://127.0.0.1:43121
    api_url: str  # its API, url + "/api"
    pid: int
    log: Path

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def server_env(port: int, home: Path) -> dict[str, str]:
    """The environment of the server: nothing PREFECT_* inherited, one port everywhere."""
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_API_URL": f"{base}/api",
            "PREFECT_UI_API_URL": f"{base}/api",
            "PREFECT_UI_URL": base,
            "PREFECT_SERVER_UI_ENABLED": "true",
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            # Nothing here is scheduled or served by a worker: spare the shared CPUs.
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "false",
        }
    )
    return env


def _ready(base: str, api_url: str) -> bool:
    try:
        if httpx.get(f"{api_url}/health", timeout=2).status_code != 200:
            return False
        settings = httpx.get(f"{base}/ui-settings", timeout=2)
    except httpx.HTTPError:
        return False
    if settings.status_code != 200:
        return False
    served = (settings.json().get("api_url") or "").rstrip("/")
    if served != api_url:
        raise RuntimeError(f"the UI would call {served!r}, not this server's {api_url!r}")
    return True


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM the server's process group by its PID (the server leads its own session, so
    its uvicorn child goes too); SIGKILL the group if anything lingers."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@contextmanager
def prefect_ui_server(workdir: Path, *, startup_timeout: float = 120.0) -> Iterator[UiServer]:
    """`prefect server start` with the UI on a free loopback port; stopped by PID on exit."""
    port = free_port()
    home = workdir / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{port}"
    log = workdir / "prefect-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=server_env(port, home),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = UiServer(url=base, api_url=f"{base}/api", pid=proc.pid, log=log)
    try:
        deadline = time.monotonic() + startup_timeout
        while not _ready(base, server.api_url):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"prefect server exited with {proc.returncode}:\n{server.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"prefect server not ready in {startup_timeout:g} s:\n{server.log_tail()}"
                )
            time.sleep(0.25)
        yield server
    finally:
        stop(proc)
