"""Sandbox AWX: the slice of the AWX v2 REST API the remediation runner uses.

Endpoints (trailing slashes as in real AWX; every one needs auth when auth is set):
    GET  /api/v2/job_templates/{id}/launch/  -> what the template prompts for
    POST /api/v2/job_templates/{id}/launch/  -> 201 {"job", "id", "ignored_fields", ...job}
    GET  /api/v2/jobs/?job_template=&created__gte=&order_by=-created&page_size=&page=
    GET  /api/v2/jobs/{id}/                  -> the job (status pending → waiting → running
                                                → successful | failed | error | canceled)
    GET|POST /api/v2/jobs/{id}/cancel/       -> {"can_cancel"} | 202, or 405 when finished
    GET  /api/v2/jobs/{id}/stdout/?format=txt|ansi|json|txt_download
Control API (besides the base's): GET /_control/jobs, POST /_control/templates (a
JobTemplate as JSON, playbook templates only), POST /_control/drop_after_launch.

Error bodies are AWX's (Django REST framework): `{"detail": "..."}` or field errors such as
`{"extra_vars": ["..."]}`; filtering on extra_vars is 403, as AWX marks it prevent_search.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from sandbox.http import Request, Response
from sandbox.jobs import DEFAULT_INVENTORY, Job, JobTemplate, Phase
from sandbox.jobs_server import JobServer, same_secret, utc_time

# Engine phases in AWX's words; scripted non-phase words pass through verbatim.
AWX_STATUS = {
    Phase.QUEUED: "pending",
    Phase.STARTING: "waiting",
    Phase.RUNNING: "running",
    Phase.CANCELING: "running",  # AWX keeps "running" (cancel_flag set) until it stops
    Phase.SUCCESSFUL: "successful",
    Phase.FAILED: "failed",
    Phase.ERROR: "error",
    Phase.CANCELED: "canceled",
}
NOT_FOUND = {"detail": "Not found."}
NO_CREDENTIALS = {"detail": "Authentication credentials were not provided."}
_FILTERS = {"job_template", "created__gte", "created__gt", "status", "id"}
_LIST_CONTROLS = {"order_by", "page_size", "page", "format"}
_ORDERINGS = {"created", "-created", "id", "-id"}
MAX_PAGE_SIZE = 200


class AwxServer(JobServer):
    """Serves AWX job templates whose jobs are real playbook runs or scripts.

    Auth: `token` for `Authorization: Bearer`, and/or `username`/`password` for Basic;
    with neither, every request is let in.
    """

    name = "awx"
    launch_path = r"/api/v2/job_templates/\d+/launch/"

    def __init__(
        self,
        templates: Iterable[JobTemplate] = (),
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        extra_vars: Mapping[str, Any] | None = None,
        inventory: Sequence[str] = DEFAULT_INVENTORY,
    ) -> None:
        self.token, self.username, self.password = token, username, password
        # Real AWX lists include extra_vars; turn off to exercise clients' detail fetch.
        self.list_includes_extra_vars = True
        super().__init__(templates, extra_vars=extra_vars, inventory=inventory)

    def reset(self) -> None:
        super().reset()
        self.list_includes_extra_vars = True

    # --- routes ------------------------------------------------------------------------
    def setup_routes(self) -> None:
        launch = "/api/v2/job_templates/{tid}/launch/"
        self.route("GET", launch, self.authed(self._launch_info))
        self.route("POST", launch, self.authed(self._launch))
        self.route("GET", "/api/v2/jobs/", self.authed(self._list))
        self.route("GET", "/api/v2/jobs/{jid}/", self.authed(self._detail))
        self.route("GET", "/api/v2/jobs/{jid}/cancel/", self.authed(self._can_cancel))
        self.route("POST", "/api/v2/jobs/{jid}/cancel/", self.authed(self._cancel))
        self.route("GET", "/api/v2/jobs/{jid}/stdout/", self.authed(self._stdout))
        self.route("GET", "/_control/jobs", self._control_jobs)
        self.control_routes()

    def not_found(self, req: Request, status: int = 404) -> Response:
        if status == 405:
            return Response(405, {"detail": f'Method "{req.method}" not allowed.'})
        return Response(404, NOT_FOUND)

    def authenticate(self, req: Request) -> Response | None:
        if self.token is None and self.username is None:
            return None
        scheme, _, cred = req.headers.get("authorization", "").partition(" ")
        challenge = {"WWW-Authenticate": "Bearer realm=api authorization_url=/api/o/authorize/"}
        if scheme.lower() == "basic" and self.username is not None:
            try:
                user, _, pw = base64.b64decode(cred).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user = pw = ""
            if same_secret(user, self.username) and same_secret(pw, self.password):
                return None
            return Response(401, {"detail": "Invalid username/password."}, challenge)
        if scheme.lower() == "bearer" and same_secret(cred, self.token):
            return None
        # An unknown bearer token reads as "no credentials" in AWX (OAuth2 backend).
        return Response(401, NO_CREDENTIALS, challenge)

    def _template(self, req: Request) -> JobTemplate | None:
        tid = req.params["tid"]
        return self.templates.get(int(tid)) if tid.isdigit() else None

    def _job(self, req: Request) -> Job | None:
        jid = req.params["jid"]
        return self.engine.get(int(jid)) if jid.isdigit() else None

    def _launch_info(self, req: Request) -> Response:
        t = self._template(req)
        if t is None:
            return Response(404, NOT_FOUND)
        return Response(
            200,
            {
                "can_start_without_user_input": True,
                "passwords_needed_to_start": [],
                "ask_variables_on_launch": t.ask_variables_on_launch,
                "ask_limit_on_launch": t.ask_limit_on_launch,
                "survey_enabled": False,
                "variables_needed_to_start": [],
                "defaults": {"extra_vars": json.dumps(dict(t.extra_vars)), "limit": t.limit},
                "job_template_data": {"id": t.id, "name": t.name, "description": ""},
            },
        )

    def _launch(self, req: Request) -> Response:
        t = self._template(req)
        if t is None:
            return Response(404, NOT_FOUND)
        try:
            body = req.json() if req.body.strip() else {}
        except ValueError as exc:
            return Response(400, {"detail": f"JSON parse error - {exc}"})
        if not isinstance(body, dict):
            kind = type(body).__name__
            msg = f"Invalid data. Expected a dictionary, but got {kind}."
            return Response(400, {"non_field_errors": [msg]})
        launch_vars, problem = _parse_vars(body.get("extra_vars", {}))
        if problem:
            return Response(400, {"extra_vars": [problem]})
        if "limit" in body and not isinstance(body["limit"], str):
            return Response(400, {"limit": ["Not a valid string."]})
        # Without "prompt on launch", AWX runs the template's own values and says so only
        # in ignored_fields: the job then targets the template's limit (often: everything).
        ignored: dict[str, Any] = {}
        limit, job_vars = t.limit, dict(t.extra_vars)
        if "limit" in body:
            if t.ask_limit_on_launch:
                limit = body["limit"]
            else:
                ignored["limit"] = body["limit"]
        if launch_vars:
            if t.ask_variables_on_launch:
                job_vars.update(launch_vars)
            else:
                ignored["extra_vars"] = launch_vars
        job = self.engine.launch(
            t, limit=limit, extra_vars=job_vars, server_vars=self.extra_vars, request=body
        )
        payload = {"job": job.id, "ignored_fields": ignored, **self._job_json(job)}
        return Response(201, payload, {"Location": f"/api/v2/jobs/{job.id}/"})

    def _job_json(self, job: Job, *, with_vars: bool = True) -> dict[str, Any]:
        phase, started, finished = job.snapshot()
        status = AWX_STATUS.get(phase, phase)
        elapsed = (finished - started).total_seconds() if started and finished else 0.0
        t, base = job.template, f"/api/v2/jobs/{job.id}/"
        body: dict[str, Any] = {
            "id": job.id,
            "type": "job",
            "url": base,
            "related": {"stdout": f"{base}stdout/", "cancel": f"{base}cancel/"},
            "summary_fields": {"job_template": {"id": t.id, "name": t.name}},
            "created": utc_time(job.created),
            "modified": utc_time(finished or started or job.created),
            "name": t.name,
            "job_type": "run",
            "launch_type": "manual",
            "playbook": t.playbook or "scripted.yml",
            "job_template": t.id,
            "limit": job.limit,
            "status": status,
            "failed": status in ("failed", "error", "canceled"),
            "started": utc_time(started),
            "finished": utc_time(finished),
            "canceled_on": utc_time(finished) if status == "canceled" else None,
            "elapsed": round(elapsed, 3),
            "job_explanation": "",
        }
        if with_vars:
            body["extra_vars"] = json.dumps(job.extra_vars)
        return body

    def _detail(self, req: Request) -> Response:
        job = self._job(req)
        return Response(200, self._job_json(job)) if job else Response(404, NOT_FOUND)

    def _can_cancel(self, req: Request) -> Response:
        job = self._job(req)
        if job is None:
            return Response(404, NOT_FOUND)
        return Response(200, {"can_cancel": not job.terminal})

    def _cancel(self, req: Request) -> Response:
        job = self._job(req)
        if job is None:
            return Response(404, NOT_FOUND)
        self.cancel_requests.append(job.id)
        if job.cancel():
            return Response(202)
        # AWX answers a finished job's cancel with DRF's http_method_not_allowed.
        return Response(405, {"detail": 'Method "POST" not allowed.'})

    def _stdout(self, req: Request) -> Response:
        job = self._job(req)
        if job is None:
            return Response(404, NOT_FOUND)
        fmt, text = req.arg("format", "json"), job.output
        if fmt in ("txt", "ansi"):
            return Response(200, text, content_type="text/plain; charset=utf-8")
        if fmt == "txt_download":
            headers = {"Content-Disposition": f'attachment; filename="job_{job.id}.txt"'}
            return Response(200, text, headers, "text/plain; charset=utf-8")
        if fmt == "json":
            end = text.count("\n")
            rng = {"start": 0, "end": end, "absolute_end": end}
            return Response(200, {"range": rng, "content": text})
        return Response(404, NOT_FOUND)

    def _list(self, req: Request) -> Response:
        for key in req.query:
            field = key
            for prefix in ("not__", "or__", "chain__"):
                field = field.removeprefix(prefix)
            if field.split("__")[0] == "extra_vars":
                return Response(403, {"detail": "Filtering on extra_vars is not allowed."})
            if key not in _FILTERS | _LIST_CONTROLS:
                return Response(400, {"detail": f"Cannot resolve keyword {key!r} into field."})
        try:
            jobs = self._filtered(req)
        except ValueError as exc:
            return Response(400, {"detail": str(exc)})
        order = req.arg("order_by", "id") or "id"
        if order not in _ORDERINGS:
            return Response(400, {"detail": f"Cannot resolve keyword {order!r} into field."})
        jobs.sort(key=lambda j: (j.created, j.id), reverse=order.startswith("-"))
        size_arg, page_arg = req.arg("page_size", "25") or "25", req.arg("page", "1") or "1"
        if not (size_arg.isdigit() and page_arg.isdigit()) or int(page_arg) < 1:
            return Response(404, {"detail": "Invalid page."})
        size, page = min(max(int(size_arg), 1), MAX_PAGE_SIZE), int(page_arg)
        chunk = jobs[(page - 1) * size : page * size]
        if page > 1 and not chunk:
            return Response(404, {"detail": "Invalid page."})

        def link(n: int) -> str:
            query = {k: v[-1] for k, v in req.query.items() if k != "page"}
            return "/api/v2/jobs/?" + urlencode({**query, "page": n})

        return Response(
            200,
            {
                "count": len(jobs),
                "next": link(page + 1) if page * size < len(jobs) else None,
                "previous": link(page - 1) if page > 1 else None,
                "results": [
                    self._job_json(j, with_vars=self.list_includes_extra_vars) for j in chunk
                ],
            },
        )

    def _filtered(self, req: Request) -> list[Job]:
        jobs = self.engine.jobs()
        if (tid := req.arg("job_template")) is not None:
            jobs = [j for j in jobs if str(j.template.id) == tid]
        if (jid := req.arg("id")) is not None:
            jobs = [j for j in jobs if str(j.id) == jid]
        if (status := req.arg("status")) is not None:
            jobs = [j for j in jobs if AWX_STATUS.get(j.status, j.status) == status]
        for key, strict in (("created__gte", False), ("created__gt", True)):
            if (raw := req.arg(key)) is not None:
                since = _parse_time(raw)
                jobs = [j for j in jobs if j.created > since or (not strict and j.created == since)]
        return jobs

    # --- control -----------------------------------------------------------------------
    def _control_jobs(self, req: Request) -> Response:
        return Response(200, [self._job_json(j) for j in self.engine.jobs()])


def _parse_vars(raw: Any) -> tuple[dict[str, Any], str | None]:
    """AWX accepts extra_vars as an object or as a JSON string of one."""
    if isinstance(raw, dict):
        return raw, None
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            return {}, f"Cannot parse as JSON (error: {exc}) or YAML."
        if isinstance(parsed, dict):
            return parsed, None
    return {}, f"Input type `{type(raw).__name__}` is not a dictionary"


def _parse_time(raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{raw!r} value has an invalid format.") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
