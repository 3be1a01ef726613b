"""One job-runner interface over AWX, Semaphore and local Ansible (prefect-shell).

AWX and Semaphore clients already speak it; `AnsibleRunner` runs `ansible-playbook` on
this machine through prefect-shell's `ShellOperation` (trigger + await, never `run()`,
which raises without the output), with stderr merged into stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import tempfile
import time
from datetime import UTC, datetime
from typing import Any, Protocol

from prefect_shell import ShellOperation

from clients.errors import AnsibleError
from core.wire import JobRef, JobState, JobStatus


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


class _LocalJob:
    def __init__(self, op: ShellOperation, proc: Any, vars_file: str) -> None:
        self.op, self.proc, self.vars_file = op, proc, vars_file
        self.started = datetime.now(UTC)
        self.finished: datetime | None = None
        self.canceled = False
        self.waiter = asyncio.create_task(self._wait())

    async def _wait(self) -> None:
        try:
            await self.proc.await_for_completion()
        except RuntimeError:
            pass  # a non-zero exit: the return code says so
        finally:
            self.finished = datetime.now(UTC)
            os.unlink(self.vars_file)


class AnsibleRunner:
    """Runs playbooks locally. Jobs live in this process: if it dies, so do they, and a
    restarted run cannot find them (it escalates "launch state unknown")."""

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

    async def launch(self, template_id: Any, *, limit: str, extra_vars: dict[str, Any]) -> JobRef:
        if not limit or any(c in limit for c in ",:!&*[]"):
            raise AnsibleError("launch", f"refusing a limit that is not one host: {limit!r}")
        playbook = self._playbook(template_id)
        if not os.path.isfile(playbook):
            raise AnsibleError("launch", f"playbook {playbook} does not exist", request_sent=False)
        # Variables go in a file, never on the command line (process lists, logs).
        fd, vars_file = tempfile.mkstemp(prefix="remediation-vars-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump({**self.extra_vars, **extra_vars}, f)
        inventory = self.inventory or f"{limit},"
        command = " ".join(
            [
                "ansible-playbook",
                "-i",
                shlex.quote(inventory),
                "-l",
                shlex.quote(limit),
                "-e",
                shlex.quote(f"@{vars_file}"),
                shlex.quote(playbook),
                "2>&1",
            ]
        )
        op = ShellOperation(
            commands=[command],
            stream_output=False,
            env={"ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0"},
        )
        await op.__aenter__()
        proc = await op.atrigger()
        job_id = f"local-{proc.pid}-{int(time.time())}"
        self._jobs[job_id] = _LocalJob(op, proc, vars_file)
        return JobRef(runner="ansible", job_id=job_id)

    def _job(self, job_id: str) -> _LocalJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise AnsibleError(
                f"status of job {job_id}",
                "not a job of this process (it ended with an earlier process)",
            )
        return job

    async def status(self, job_id: str) -> JobStatus:
        job = self._job(job_id)
        ref = JobRef(runner="ansible", job_id=job_id)
        if not job.waiter.done():
            return JobStatus(ref=ref, state=JobState.RUNNING, started=job.started)
        rc = job.proc.return_code
        state = (
            JobState.CANCELED
            if job.canceled
            else JobState.SUCCESSFUL
            if rc == 0
            else JobState.FAILED
        )
        elapsed = (job.finished - job.started).total_seconds() if job.finished else None
        return JobStatus(
            ref=ref, state=state, started=job.started, finished=job.finished, elapsed=elapsed
        )

    async def output(self, job_id: str) -> str:
        return "\n".join(await self._job(job_id).proc.afetch_result())

    async def cancel(self, job_id: str) -> None:
        job = self._job(job_id)
        if not job.waiter.done():
            job.canceled = True
            await job.op.aclose()  # signals the process tree

    async def find_by_marker(
        self, template_id: Any, *, key: str, value: str, since: datetime
    ) -> JobRef | None:
        return None  # local jobs do not outlive the process that started them

    async def aclose(self) -> None:
        for job in self._jobs.values():
            if not job.waiter.done():
                job.canceled = True
            await job.op.aclose()
