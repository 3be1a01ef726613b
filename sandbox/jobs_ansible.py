"""A job that is a real `ansible-playbook` run (see `sandbox.jobs` for scripted ones).

The playbook runs in a background thread against `-i "<inventory>," -c local`, narrowed
by `--limit`, with the vars as `--extra-vars` and `ansible_python_interpreter` forced to
this interpreter; stdout and stderr are captured line by line. A cancel terminates the
whole process group (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandbox.jobs import TERMINAL, Job, Phase

_KILL_GRACE = 3.0  # seconds between SIGTERM and SIGKILL when cancelling a playbook


def _now() -> datetime:
    return datetime.now(UTC)


class PlaybookJob(Job):
    """Runs `ansible-playbook` in a thread; running until it exits, then by return code.

    The inventory is `inventory` (comma list, `-c local`) narrowed by `--limit`, as AWX
    runs a template's inventory with the job's limit; `ansible_vars` are passed as
    `--extra-vars` with `ansible_python_interpreter` forced to this interpreter.
    """

    def __init__(
        self, *args: Any, playbook: Path, inventory: Sequence[str],
        ansible_vars: Mapping[str, Any], **kw: Any,
    ) -> None:  # fmt: skip
        super().__init__(*args, **kw)
        # ansible-core 2.19 otherwise discovers an interpreter that may not exist here.
        all_vars = {**ansible_vars, "ansible_python_interpreter": sys.executable}
        self.command = [
            _ansible_playbook(),
            "-i", ",".join(inventory) + ",",
            "-c", "local",
            "--extra-vars", json.dumps(all_vars),
            *(["--limit", self.limit] if self.limit else []),
            str(playbook),
        ]  # fmt: skip
        self.returncode: int | None = None
        self._phase = Phase.QUEUED
        self._started: datetime | None = None
        self._finished: datetime | None = None
        self._lines: list[tuple[datetime, str]] = []
        self._proc: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._run, name=f"job-{self.id}", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int | None:
        """ansible-playbook's pid, which is also its process group id; None until started."""
        return None if self._proc is None else self._proc.pid

    def snapshot(self) -> tuple[str, datetime | None, datetime | None]:
        with self._lock:
            return self._phase, self._started, self._finished

    def lines(self) -> list[tuple[datetime, str]]:
        with self._lock:
            return list(self._lines)

    def _run(self) -> None:
        workdir = tempfile.mkdtemp(prefix=f"sandbox-job-{self.id}-")
        try:
            with self._lock:
                if self._phase is not Phase.QUEUED:  # cancelled before it started
                    return
                # New session: a cancel signals ansible-playbook and its workers together.
                self._proc = subprocess.Popen(
                    self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                    env=_ansible_env(), cwd=workdir, start_new_session=True,
                )  # fmt: skip
                self._phase, self._started = Phase.RUNNING, _now()
            assert self._proc.stdout is not None
            for line in self._proc.stdout:
                with self._lock:
                    self._lines.append((_now(), line.rstrip("\n")))
            rc = self._proc.wait()
            with self._lock:
                self.returncode = rc
                if self._phase is Phase.CANCELING:
                    self._end(Phase.CANCELED)
                else:
                    self._end(Phase.SUCCESSFUL if rc == 0 else Phase.FAILED)
        except OSError as exc:  # e.g. ansible-playbook missing: the job errors, as in AWX
            with self._lock:
                self._lines.append((_now(), f"sandbox job engine: {exc}"))
                self._end(Phase.ERROR)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _end(self, phase: Phase) -> None:
        self._phase, self._finished = phase, _now()
        self._done.set()

    def _cancel(self) -> bool:
        if self._phase in TERMINAL:
            return False
        if self._phase is Phase.CANCELING:
            return True
        if self._proc is None:  # still queued: the thread will see this and not start
            self._end(Phase.CANCELED)
            return True
        self._phase = Phase.CANCELING
        _signal_group(self._proc.pid, signal.SIGTERM)
        timer = threading.Timer(_KILL_GRACE, self._force_kill)
        timer.daemon = True
        timer.start()
        return True

    def _force_kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            _signal_group(self._proc.pid, signal.SIGKILL)

    def kill(self) -> None:
        with self._lock:
            self._cancel()
        self._force_kill()
        self._thread.join(timeout=5)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _ansible_playbook() -> str:
    # Prefer the one beside this interpreter: the virtualenv's, with its ansible-core.
    local = Path(sys.executable).parent / "ansible-playbook"
    return str(local) if local.exists() else shutil.which("ansible-playbook") or str(local)


def _ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        ANSIBLE_STDOUT_CALLBACK="default",
        ANSIBLE_LOCALHOST_WARNING="False",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
        PYTHONUNBUFFERED="1",
    )
    # The job's cwd is a fresh temp dir, so no stray ansible.cfg is picked up; make sure
    # an inherited ANSIBLE_CONFIG does not change the run either.
    env.pop("ANSIBLE_CONFIG", None)
    return env
