"""The demo's child processes: started in their own sessions, stopped by PID.

Each child gets its own session (so a Ctrl-C in the terminal reaches only the demo
driver, which then stops the children in order) and a log file. Stopping a child stops
its descendants too — a Prefect process worker starts every flow run in a new session
of its own, so the process group alone would miss them — found by walking `/proc`
from the child's PID: SIGTERM, a grace period, then SIGKILL for whatever is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (children before grandchildren)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: split after the last ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    frontier = [pid]
    while frontier:
        children = [c for p in frontier for c in parents.get(p, [])]
        out.extend(children)
        frontier = children
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _signal(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


@dataclass
class Child:
    """One started process and its log."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace: float = 8.0) -> list[int]:
        """SIGTERM the process and its descendants, SIGKILL after `grace`; answers PIDs."""
        tree = [self.pid, *descendants(self.pid)] if self.running() else []
        # Descendants first learn their parent is going; the flow runs a worker started
        # live in their own sessions and would otherwise outlive it.
        _signal(tree, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in tree):
            self.proc.poll()
            time.sleep(0.1)
        left = [p for p in tree if _alive(p)]
        _signal(left, signal.SIGKILL)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        return tree


class Processes:
    """Starts children and stops all of them, newest first, by PID."""

    def __init__(self, log_dir: Path, env: Mapping[str, str]) -> None:
        self.log_dir = log_dir
        self.env = dict(env)
        self.children: list[Child] = []
        self.stopped: list[int] = []  # every PID stop_all signalled

    def start(
        self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Child:  # fmt: skip
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**self.env, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def run(
        self, name: str, argv: Sequence[str], *, timeout: float,
        env: Mapping[str, str] | None = None, cwd: Path | None = None,
    ) -> str:  # fmt: skip
        """Run a command to its end; its output, or RuntimeError with the output."""
        return self.finish(self.start(name, argv, env=env, cwd=cwd), timeout=timeout)

    def finish(self, child: Child, *, timeout: float) -> str:
        """Wait for a command started with `start`; its output, or RuntimeError."""
        try:
            code = child.proc.wait(max(0.0, timeout - (time.monotonic() - child.started)))
        except subprocess.TimeoutExpired as exc:
            child.stop()
            raise RuntimeError(
                f"{child.name} did not finish in {timeout:g} s:\n{child.log_tail()}"
            ) from exc
        finally:
            if child in self.children:
                self.children.remove(child)
        if code != 0:
            raise RuntimeError(f"{child.name} failed (exit {code}):\n{child.log_tail()}")
        return child.log.read_text(errors="replace")

    def stop_all(self, report: Callable[[str], None] = print) -> None:
        while self.children:
            child = self.children.pop()
            pids = child.stop()
            self.stopped.extend(pids)
            if pids:
                report(f"stopped {child.name} (PID {child.pid}, {len(pids)} process(es))")


def wait_for(
    probe: Callable[[], object], *, timeout: float, what: str, interval: float = 0.2,
    child: Child | None = None,
) -> object:  # fmt: skip
    """Poll `probe` until truthy; fail at the deadline or when `child` dies."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except Exception:  # noqa: BLE001 - not up yet: any error means "try again"
            value = None
        if value:
            return value
        if child is not None and not child.running():
            raise RuntimeError(f"{child.name} exited before {what}:\n{child.log_tail()}")
        if time.monotonic() > deadline:
            tail = f":\n{child.log_tail()}" if child is not None else ""
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}{tail}")
        time.sleep(interval)
