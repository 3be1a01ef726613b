"""Sandbox Semaphore UI: the task endpoints of Semaphore's REST API (v2.x).

Endpoints (all need `Authorization: Bearer <token>`):
    POST /api/project/{pid}/tasks                 -> 201 Task (body: template_id, debug,
         dry_run, diff, playbook, environment (a JSON *string* of extra vars), limit,
         git_branch, message, arguments, inventory_id)
    GET  /api/project/{pid}/tasks                 -> tasks, newest first (at most 1000)
    GET  /api/project/{pid}/tasks/last?limit=N    -> the N newest (default and max 200)
    GET  /api/project/{pid}/templates/{id}/tasks[/last]
    GET  /api/project/{pid}/tasks/{tid}           -> Task (status waiting → starting →
                                                     running → success | error | stopped)
    POST /api/project/{pid}/tasks/{tid}/stop      -> 204; the body must be JSON, even {}
    GET  /api/project/{pid}/tasks/{tid}/output    -> [{"task_id","task","time","output"}]
    GET  /api/project/{pid}/tasks/{tid}/raw_output -> text/plain
Control API (besides the base's): GET /_control/jobs, POST /_control/templates,
POST /_control/drop_after_launch.

Error answers follow Semaphore's Go handlers: 401, a malformed body, an unknown or
malformed task id (400, not 404) and an unknown project or template (404) come with an
EMPTY body; validation errors with `{"error": "..."}`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sandbox.http import Request, Response
from sandbox.jobs import DEFAULT_INVENTORY, Job, JobTemplate, Phase
from sandbox.jobs_server import JobServer, same_secret, utc_time

# Engine phases in Semaphore's words (pkg/task_logger); other scripted words verbatim.
SEMAPHORE_STATUS = {
    Phase.QUEUED: "waiting",
    Phase.STARTING: "starting",
    Phase.RUNNING: "running",
    Phase.CANCELING: "stopping",
    Phase.SUCCESSFUL: "success",
    Phase.FAILED: "error",
    Phase.ERROR: "error",
    Phase.CANCELED: "stopped",
}
# Task fields and their JSON types, as Go's decoder would insist on them.
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "template_id": int,
    "debug": bool,
    "dry_run": bool,
    "diff": bool,
    "playbook": str,
    "environment": str,
    "limit": str,
    "git_branch": (str, type(None)),
    "message": str,
    "arguments": (str, type(None)),
    "inventory_id": (int, type(None)),
}
DEFAULT_PROJECT = 1


class SemaphoreServer(JobServer):
    """Serves Semaphore projects whose templates run real playbooks or scripts."""

    name = "semaphore"
    launch_path = r"/api/project/\d+/tasks"

    def __init__(
        self,
        projects: Mapping[int, Iterable[JobTemplate]] | None = None,
        *,
        token: str | None = None,
        extra_vars: Mapping[str, Any] | None = None,
        inventory: Sequence[str] = DEFAULT_INVENTORY,
    ) -> None:
        projects = projects or {DEFAULT_PROJECT: ()}
        self.token = token
        self._initial_projects = {
            pid: {t.id for t in templates} for pid, templates in projects.items()
        }
        self.projects = {pid: set(ids) for pid, ids in self._initial_projects.items()}
        # Real lists embed each task's environment; turn off to exercise detail fetches.
        self.list_includes_environment = True
        templates = [t for ts in projects.values() for t in ts]
        super().__init__(templates, extra_vars=extra_vars, inventory=inventory)

    def add_template(self, template: JobTemplate, project_id: int = DEFAULT_PROJECT) -> None:
        super().add_template(template)
        self.projects.setdefault(project_id, set()).add(template.id)

    def reset(self) -> None:
        super().reset()
        self.projects = {pid: set(ids) for pid, ids in self._initial_projects.items()}
        self.list_includes_environment = True

    # --- routes ------------------------------------------------------------------------
    def setup_routes(self) -> None:
        p = "/api/project/{pid}"
        self.route("GET", "/api/ping", lambda req: Response(200, "pong"))
        self.route("POST", f"{p}/tasks", self.authed(self._launch))
        self.route("GET", f"{p}/tasks", self.authed(self._list))
        self.route("GET", f"{p}/tasks/last", self.authed(self._list))
        self.route("GET", f"{p}/templates/{{tpl}}/tasks", self.authed(self._list))
        self.route("GET", f"{p}/templates/{{tpl}}/tasks/last", self.authed(self._list))
        self.route("GET", f"{p}/tasks/{{tid}}", self.authed(self._task_route(self._detail)))
        self.route("POST", f"{p}/tasks/{{tid}}/stop", self.authed(self._task_route(self._stop)))
        self.route("GET", f"{p}/tasks/{{tid}}/output", self.authed(self._task_route(self._output)))
        raw = self._task_route(self._raw_output)
        self.route("GET", f"{p}/tasks/{{tid}}/raw_output", self.authed(raw))
        self.route("GET", "/_control/jobs", lambda req: Response(200, self._all_tasks()))
        self.control_routes()

    def not_found(self, req: Request, status: int = 404) -> Response:
        # gorilla/mux's defaults
        if status == 405:
            return Response(405)
        return Response(404, "404 page not found\n")

    def authenticate(self, req: Request) -> Response | None:
        if self.token is None:
            return None
        scheme, _, cred = req.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and same_secret(cred, self.token):
            return None
        return Response(401)

    def _project(self, req: Request) -> int | Response:
        pid = req.params["pid"]
        if not pid.isdigit():
            return Response(400)
        return int(pid) if int(pid) in self.projects else Response(404)

    def _task_route(self, handler: Any) -> Any:
        """Resolve project and task first, as Semaphore's task middleware does."""

        def resolved(req: Request) -> Response:
            pid = self._project(req)
            if isinstance(pid, Response):
                return pid
            tid = req.params["tid"]
            job = self.engine.get(int(tid)) if tid.isdigit() else None
            if job is None or job.template.id not in self.projects[pid]:
                return Response(400)  # Semaphore: "Cannot get task from database" → 400
            return handler(req, pid, job)

        return resolved

    # --- handlers ----------------------------------------------------------------------
    def _launch(self, req: Request) -> Response:
        pid = self._project(req)
        if isinstance(pid, Response):
            return pid
        try:
            body = req.json()
        except ValueError:
            return Response(400)  # helpers.Bind: the decoder failed, empty body
        if not _well_typed(body):
            return Response(400)
        template = self.templates.get(body.get("template_id", 0))
        if template is None or template.id not in self.projects[pid]:
            return Response(404)
        env_text = body.get("environment") or "{}"
        try:
            env = json.loads(env_text)
        except ValueError:
            env = None
        if not isinstance(env, dict):
            return Response(400, {"error": "environment must be a JSON object"})
        limit = body.get("limit", "") or template.limit
        job = self.engine.launch(
            template,
            limit=limit,
            extra_vars={**template.extra_vars, **env},
            server_vars=self.extra_vars,
            request=body,
        )
        return Response(201, self._task_json(job, pid))

    def _task_json(self, job: Job, pid: int) -> dict[str, Any]:
        phase, started, finished = job.snapshot()
        req = job.request if isinstance(job.request, dict) else {}
        return {
            "id": job.id,
            "template_id": job.template.id,
            "project_id": pid,
            "status": SEMAPHORE_STATUS.get(phase, phase),
            "debug": req.get("debug", False),
            "dry_run": req.get("dry_run", False),
            "diff": req.get("diff", False),
            "playbook": req.get("playbook", ""),
            "environment": req.get("environment", ""),
            "secret": "",
            "limit": job.limit,
            "arguments": req.get("arguments"),
            "git_branch": req.get("git_branch"),
            "user_id": 1,
            "schedule_id": None,
            "created": utc_time(job.created),
            "start": utc_time(started),
            "end": utc_time(finished),
            "message": req.get("message", ""),
            "commit_hash": None,
            "commit_message": "",
            "build_task_id": None,
            "version": None,
            "inventory_id": req.get("inventory_id"),
            "params": {},
        }

    def _list(self, req: Request) -> Response:
        pid = self._project(req)
        if isinstance(pid, Response):
            return pid
        tpl = req.params.get("tpl")
        if tpl is not None and not (tpl.isdigit() and int(tpl) in self.projects[pid]):
            return Response(404)
        count = 1000
        if req.path.endswith("/last"):
            raw = req.arg("limit", "") or ""
            count = int(raw) if raw.isdigit() and 0 < int(raw) <= 200 else 200
        jobs = [
            j
            for j in self.engine.jobs()
            if j.template.id in self.projects[pid] and (tpl is None or j.template.id == int(tpl))
        ]
        jobs.sort(key=lambda j: (j.created, j.id), reverse=True)
        return Response(200, [self._listed(j, pid) for j in jobs[:count]])

    def _listed(self, job: Job, pid: int) -> dict[str, Any]:
        """A TaskWithTpl: the task plus a few template fields."""
        t, task = job.template, self._task_json(job, pid)
        if not self.list_includes_environment:
            del task["environment"]
        return {
            **task,
            "tpl_playbook": t.playbook or "scripted.yml",
            "tpl_alias": t.name,
            "tpl_type": "",
            "tpl_app": "ansible",
            "user_name": "admin",
            "build_task": None,
        }

    def _all_tasks(self) -> list[dict[str, Any]]:
        owner = {tid: pid for pid, ids in self.projects.items() for tid in ids}
        return [self._task_json(j, owner.get(j.template.id, 0)) for j in self.engine.jobs()]

    def _detail(self, req: Request, pid: int, job: Job) -> Response:
        return Response(200, self._task_json(job, pid))

    def _stop(self, req: Request, pid: int, job: Job) -> Response:
        try:
            body = json.loads(req.body)  # Semaphore binds {"force": bool}: no body, no stop
        except ValueError:
            return Response(400)
        if not isinstance(body, dict):
            return Response(400)
        self.cancel_requests.append(job.id)
        job.cancel()  # a finished task stays as it was
        return Response(204)

    def _output(self, req: Request, pid: int, job: Job) -> Response:
        lines = [
            {"task_id": job.id, "task": "", "time": utc_time(at), "output": text}
            for at, text in job.lines()
        ]
        return Response(200, lines)

    def _raw_output(self, req: Request, pid: int, job: Job) -> Response:
        return Response(200, job.output, content_type="text/plain; charset=utf-8")


def _well_typed(body: Any) -> bool:
    """Would Go's JSON decoder accept `body` into a db.Task?"""
    if not isinstance(body, dict):
        return False
    for key, expected in _FIELDS.items():
        value = body.get(key)
        if key not in body:
            continue
        # A JSON true is a Python int, but never a Go int.
        if isinstance(value, bool) and expected is not bool:
            return False
        if not isinstance(value, expected):
            return False
    return True
