"""The job engine and the common base of the sandbox AWX and Semaphore servers.

`JobEngine` creates, tracks, cancels and stops one server's jobs (`sandbox.jobs`).
`JobServer` is what both servers share: templates, server-side extra vars (`fleet_url`),
the Python accessors tests use (jobs, launches, cancel requests), the drop-after-launch
fault, and resetting to the configuration the server was built with.
"""

from __future__ import annotations

import hmac
import itertools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandbox.http import Fault, Request, Response, SandboxServer
from sandbox.jobs import DEFAULT_INVENTORY, PLAYBOOK_DIR, Job, JobTemplate, ScriptedJob
from sandbox.jobs_ansible import PlaybookJob


class JobEngine:
    """One server's jobs; ids count from 1 and are never reused."""

    def __init__(
        self, *, playbook_dir: Path = PLAYBOOK_DIR, inventory: Sequence[str] = DEFAULT_INVENTORY
    ) -> None:
        self.playbook_dir = playbook_dir
        self.inventory = list(inventory)
        self._lock = threading.Lock()
        self._jobs: dict[int, Job] = {}
        # Ids never restart, even across reset(): a stale id from an earlier test then
        # finds nothing instead of silently naming somebody else's job.
        self._ids = itertools.count(1)

    def launch(
        self, template: JobTemplate, *, limit: str, extra_vars: Mapping[str, Any],
        server_vars: Mapping[str, Any] | None = None, request: Any = None,
    ) -> Job:  # fmt: skip
        """Create and start a job.

        `extra_vars` are the job's own (what the API shows); `server_vars` (fleet_url)
        are given to Ansible as well, underneath them, but not shown.
        """
        with self._lock:
            job_id = next(self._ids)
        common: dict[str, Any] = {
            "limit": limit, "extra_vars": dict(extra_vars), "request": request,
        }  # fmt: skip
        job: Job
        if template.script is not None:
            job = ScriptedJob(job_id, template, **common)
        else:
            assert template.playbook is not None
            job = PlaybookJob(
                job_id, template, playbook=self.playbook_dir / template.playbook,
                inventory=self.inventory, ansible_vars={**(server_vars or {}), **extra_vars},
                **common,
            )  # fmt: skip
        with self._lock:
            self._jobs[job_id] = job
        return job

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self, template_id: int | None = None) -> list[Job]:
        """All jobs, oldest first, optionally of one template."""
        with self._lock:
            jobs = list(self._jobs.values())
        return [j for j in jobs if template_id is None or j.template.id == template_id]

    def reset(self) -> None:
        """Kill running playbooks and forget every job."""
        with self._lock:
            jobs, self._jobs = list(self._jobs.values()), {}
        for job in jobs:
            job.kill()


def utc_time(value: datetime | None) -> str | None:
    """The wire timestamp of both products: UTC, microseconds, 'Z'."""
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def same_secret(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode(), expected.encode())


class JobServer(SandboxServer):
    """Base of AwxServer and SemaphoreServer. Subclasses set `launch_path` (a regex)."""

    launch_path = ""

    def __init__(
        self,
        templates: Iterable[JobTemplate],
        *,
        extra_vars: Mapping[str, Any] | None,
        inventory: Sequence[str],
    ) -> None:
        self.engine = JobEngine(inventory=inventory)
        self._initial = ({t.id: t for t in templates}, dict(extra_vars or {}))
        self.templates: dict[int, JobTemplate] = dict(self._initial[0])
        # Server-side vars given to every playbook run (e.g. fleet_url), not shown in jobs.
        self.extra_vars: dict[str, Any] = dict(self._initial[1])
        self.cancel_requests: list[int] = []  # job ids, one entry per cancel/stop request
        super().__init__()

    @property
    def fleet_url(self) -> str | None:
        return self.extra_vars.get("fleet_url")

    @fleet_url.setter
    def fleet_url(self, url: str) -> None:
        self.extra_vars["fleet_url"] = url

    def add_template(self, template: JobTemplate) -> None:
        """Add or replace a template until the next reset."""
        self.templates[template.id] = template

    def jobs(self, template_id: int | None = None) -> list[Job]:
        return self.engine.jobs(template_id)

    def job(self, job_id: int | str) -> Job:
        job = self.engine.get(int(job_id))
        assert job is not None, f"{self.name}: no job {job_id}"
        return job

    def launches(self, template_id: int) -> int:
        """How many jobs this template has created."""
        return len(self.engine.jobs(template_id))

    def drop_after_launch(self, times: int = 1) -> Fault:
        """The next launch creates its job, then the connection closes unanswered."""
        return self.inject(method="POST", path=self.launch_path, mode="drop_after", times=times)

    def reset(self) -> None:
        """Back to the configuration the server was built with; running jobs killed."""
        super().reset()
        self.engine.reset()
        self.templates = dict(self._initial[0])
        self.extra_vars = dict(self._initial[1])
        self.cancel_requests.clear()

    def on_stop(self) -> None:
        self.engine.reset()

    def authed(
        self, handler: Callable[[Request], Response]
    ) -> Callable[[Request], Response]:  # fmt: skip
        """Wrap a route handler so it runs only for authenticated requests."""

        def guarded(req: Request) -> Response:
            return self.authenticate(req) or handler(req)

        return guarded

    def authenticate(self, req: Request) -> Response | None:
        """None when `req` may proceed, else the product's refusal."""
        raise NotImplementedError

    def control_routes(self) -> None:
        """Control endpoints common to both servers."""
        self.route("POST", "/_control/templates", self._control_template)
        self.route("POST", "/_control/drop_after_launch", self._control_drop)

    def _control_template(self, req: Request) -> Response:
        self.add_template(JobTemplate(**req.json()))  # playbook templates (scripts: Python)
        return Response(204)

    def _control_drop(self, req: Request) -> Response:
        self.drop_after_launch((req.json() or {}).get("times", 1))
        return Response(204)
