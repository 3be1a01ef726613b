"""One job-runner interface over AWX, Semaphore and local Ansible (prefect-shell).

AWX and Semaphore clients already speak it; `AnsibleRunner` runs `ansible-playbook` on
this machine through prefect-shell's `ShellOperation`: `atrigger()` then
`await_for_completion()` and `afetch_result()` — never `run()`, which raises on a
non-zero exit without the output — with stderr merged into stdout (`2>&1`), so the
return code and every line are kept even when the playbook fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import uuid
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from prefect_shell import ShellOperation

from clients.errors import AnsibleError
from core.wire import JobRef, JobState, JobStatus

KILL_GRACE_SECONDS = 5.0  # SIGTERM, then SIGKILL, when a local job is cancelled
_LIMIT_SPECIALS = ",:!&*[]~ \t\n"


class JobRunner(Protocol):
    async def launch(
        self, template_id: Any, *, limit: str, extra_vars: dict[str, Any]
    ) -> JobRef: ...
    async def status(self, job_id: str) -> JobStatus: ...
    async def output(self, job_id: str) -> str: ...
    async def cancel(self, job_id: str) -> None: ...
    async def find_by_marker(
        self, template_id: Any, *, key: str, value: str, since: datetime
    ) -> JobRef | None: ...


class PlaybookNotFound(AnsibleError):
    """The playbook file does not exist: nothing was started (and retrying won't help)."""

    def __init__(self, playbook: str) -> None:
        super().__init__("launch", f"playbook {playbook} does not exist", request_sent=False)


class LocalJobLost(AnsibleError):
    """A local job id this process does not know: the process that started it has died,
    and local jobs cannot be found again (their outcome is unknown)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"status of job {job_id}",
            "a local Ansible job of an earlier process (it cannot be followed after a restart)",
        )


def ansible_playbook_command() -> str:
    """The `ansible-playbook` beside this interpreter (a virtualenv's), else on PATH."""
    local = Path(sys.executable).parent / "ansible-playbook"
    return str(local) if local.exists() else shutil.which("ansible-playbook") or str(local)


class _LocalJob:
    """One `ansible-playbook` process, followed in the background until it exits."""

    def __init__(
        self, op: ShellOperation, proc: Any, vars_file: str, variables: dict[str, Any]
    ) -> None:
        self.op, self.proc, self.vars_file, self.variables = op, proc, vars_file, variables
        self.started = datetime.now(UTC)
        self.finished: datetime | None = None
        self.canceled = False
        self.waiter = asyncio.create_task(self._wait())

    async def _wait(self) -> None:
        try:
            await self.proc.await_for_completion()
        except RuntimeError:
            pass  # a non-zero exit: the return code says so, the output is kept
        finally:
            self.finished = datetime.now(UTC)
            with suppress(OSError):
                os.unlink(self.vars_file)
            # Removes prefect-shell's script file and ends anything left in the group.
            await self.op.aclose()

    @property
    def done(self) -> bool:
        return self.waiter.done()

    def signal(self, sig: signal.Signals) -> None:
        # prefect-shell starts the shell in its own session: its pid is the group id.
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def kill_later(self) -> None:
        if not self.done:
            self.signal(signal.SIGKILL)


class AnsibleRunner:
    """Runs playbooks on this machine, one host per job (`--limit`).

    Jobs live in this process: if it dies, a restarted run cannot follow or find them
    (`status` raises LocalJobLost and `find_by_marker` finds nothing), and the launch
    escalates "launch state unknown" instead of launching again. Variables go through a
    private temporary file (`-e @file`), never the command line.
    """

    def __init__(
        self,
        *,
        inventory: str | None = None,
        extra_vars: dict[str, Any] | None = None,
        playbook_dir: str | None = None,
    ) -> None:
        self.inventory = inventory
        self.extra_vars = dict(extra_vars or {})
        self.playbook_dir = playbook_dir
        self._jobs: dict[str, _LocalJob] = {}

    def _playbook(self, template: Any) -> str:
        path = str(template)
        if self.playbook_dir and not os.path.isabs(path):
            path = os.path.join(self.playbook_dir, path)
        return path

    def knows(self, job_id: str) -> bool:
        """Whether this process started (and so can follow) the job."""
        return job_id in self._jobs

    async def launch(self, template_id: Any, *, limit: str, extra_vars: dict[str, Any]) -> JobRef:
        if not limit or any(c in limit for c in _LIMIT_SPECIALS):
            raise AnsibleError(
                "launch", f"refusing a limit that is not one host: {limit!r}", request_sent=False
            )
        playbook = self._playbook(template_id)
        if not os.path.isfile(playbook):
            raise PlaybookNotFound(playbook)
        variables = {**self.extra_vars, **extra_vars}
        fd, vars_file = tempfile.mkstemp(prefix="remediation-vars-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(variables, f)
        command = " ".join(
            shlex.quote(part)
            for part in (
                ansible_playbook_command(),
                "-i",
                self.inventory or f"{limit},",
                "--limit",
                limit,
                "-e",
                f"@{vars_file}",
                playbook,
            )
        )
        op = ShellOperation(
            commands=[f"{command} 2>&1"],  # stderr merged: errors are part of the output
            stream_output=False,
            env={
                "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_FORCE_COLOR": "0",
                "ANSIBLE_RETRY_FILES_ENABLED": "0",
                "PYTHONUNBUFFERED": "1",
            },
        )
        try:
            proc = await op.atrigger()
        except Exception:
            os.unlink(vars_file)
            await op.aclose()
            raise
        job_id = f"local-{proc.pid}-{uuid.uuid4().hex[:8]}"
        self._jobs[job_id] = _LocalJob(op, proc, vars_file, variables)
        return JobRef(runner="ansible", job_id=job_id)

    def _job(self, job_id: str) -> _LocalJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise LocalJobLost(job_id)
        return job

    async def status(self, job_id: str) -> JobStatus:
        job = self._job(job_id)
        ref = JobRef(runner="ansible", job_id=job_id)
        if not job.done:
            return JobStatus(ref=ref, state=JobState.RUNNING, started=job.started)
        rc = job.proc.return_code
        if job.canceled:
            state = JobState.CANCELED
        else:
            state = JobState.SUCCESSFUL if rc == 0 else JobState.FAILED
        elapsed = (job.finished - job.started).total_seconds() if job.finished else None
        return JobStatus(
            ref=ref, state=state, started=job.started, finished=job.finished, elapsed=elapsed
        )

    async def return_code(self, job_id: str) -> int | None:
        """The playbook's exit code (None while it runs)."""
        job = self._job(job_id)
        return job.proc.return_code if job.done else None

    async def output(self, job_id: str) -> str:
        """Everything printed so far, stdout and stderr merged."""
        return "\n".join(await self._job(job_id).proc.afetch_result())

    async def cancel(self, job_id: str) -> None:
        """SIGTERM to the playbook's process group, SIGKILL after a grace period."""
        job = self._job(job_id)
        if job.done:
            return
        job.canceled = True
        job.signal(signal.SIGTERM)
        asyncio.get_running_loop().call_later(KILL_GRACE_SECONDS, job.kill_later)

    async def find_by_marker(
        self, template_id: Any, *, key: str, value: str, since: datetime
    ) -> JobRef | None:
        """Only jobs of this process can be found (they do not outlive it)."""
        for job_id, job in self._jobs.items():
            found = job.variables.get(key)
            if job.started >= since and found is not None and str(found) == value:
                return JobRef(runner="ansible", job_id=job_id)
        return None

    async def aclose(self) -> None:
        """Stop every job still running and wait for them to end."""
        for job_id, job in self._jobs.items():
            if not job.done:
                await self.cancel(job_id)
        for job in self._jobs.values():
            with suppress(asyncio.CancelledError):
                await job.waiter
