"""The sandbox AWX server: AWX's wire shapes for launch, jobs, cancel, stdout and lists."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sandbox.awx import AwxServer
from sandbox.jobs import JobTemplate, Phase, Script
from tests.fixtures.jobs import (
    AWX_PASSWORD,
    AWX_TEMPLATES,
    AWX_TOKEN,
    AWX_USERNAME,
    wait_until,
)

SCRIPTED = AWX_TEMPLATES["scripted"]
NO_PROMPT = AWX_TEMPLATES["no_prompt"]


@pytest.fixture
def api(awx: AwxServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {AWX_TOKEN}"}
    with httpx.Client(base_url=awx.url, headers=headers, timeout=5) as client:
        yield client


def launch(api: httpx.Client, template: int, **body: object) -> httpx.Response:
    return api.post(f"/api/v2/job_templates/{template}/launch/", json=body)


def statuses_until_end(api: httpx.Client, job_id: int) -> tuple[list[str], dict]:
    """Poll the job until it ends; the distinct statuses seen, in order, and the last body."""
    seen: list[str] = []

    def ended() -> dict | None:
        body = api.get(f"/api/v2/jobs/{job_id}/").json()
        if not seen or seen[-1] != body["status"]:
            seen.append(body["status"])
        return body if body["status"] in ("successful", "failed", "error", "canceled") else None

    return seen, wait_until(ended, what=f"job {job_id} to end")


def test_launch_answers_201_with_the_job_and_keeps_the_request(
    awx: AwxServer, api: httpx.Client
) -> None:
    vars_ = {"unit": "nginx.service", "remediation_action_id": "a-1"}
    r = launch(api, SCRIPTED, limit="web-02", extra_vars=vars_)

    assert r.status_code == 201
    body = r.json()
    assert body["job"] == body["id"]
    assert (body["type"], body["status"], body["ignored_fields"]) == ("job", "pending", {})
    assert body["url"] == f"/api/v2/jobs/{body['id']}/" == r.headers["Location"]
    assert body["limit"] == "web-02"
    assert json.loads(body["extra_vars"]) == vars_  # a JSON *string*, as AWX sends it
    assert body["job_template"] == SCRIPTED and body["started"] is None
    [req] = awx.received("POST", r"/api/v2/job_templates/\d+/launch/")
    assert req.headers["authorization"] == f"Bearer {AWX_TOKEN}"
    assert req.json() == {"limit": "web-02", "extra_vars": vars_}
    assert awx.launches(SCRIPTED) == 1
    assert awx.job(body["id"]).request == {"limit": "web-02", "extra_vars": vars_}


@pytest.mark.parametrize(
    ("script", "final", "failed"),
    [
        (Script.succeed(), "successful", False),
        (Script.fail(), "failed", True),
        (Script.error(), "error", True),
    ],
)
def test_scripted_job_walks_awx_statuses_to_its_end(
    awx: AwxServer, api: httpx.Client, script: Script, final: str, failed: bool
) -> None:
    awx.add_template(JobTemplate(SCRIPTED, "scripted", script=script))
    job_id = launch(api, SCRIPTED, limit="web-01").json()["id"]

    seen, body = statuses_until_end(api, job_id)

    assert seen[0] == "pending" and seen[-1] == final
    assert "running" in seen
    assert body["failed"] is failed
    started = datetime.fromisoformat(body["started"])
    finished = datetime.fromisoformat(body["finished"])
    assert finished >= started and body["elapsed"] == pytest.approx(
        (finished - started).total_seconds(), abs=0.002
    )


def test_launch_info_says_what_the_template_prompts_for(api: httpx.Client) -> None:
    prompting = api.get(f"/api/v2/job_templates/{SCRIPTED}/launch/").json()
    fixed = api.get(f"/api/v2/job_templates/{NO_PROMPT}/launch/").json()

    assert prompting["ask_limit_on_launch"] and prompting["ask_variables_on_launch"]
    assert not fixed["ask_limit_on_launch"] and not fixed["ask_variables_on_launch"]


def test_template_without_prompts_ignores_limit_and_vars_and_says_so(
    awx: AwxServer, api: httpx.Client
) -> None:
    awx.add_template(
        JobTemplate(
            NO_PROMPT, "no_prompt", script=Script.stuck(), ask_limit_on_launch=False,
            ask_variables_on_launch=False,
        )
    )  # fmt: skip
    r = launch(api, NO_PROMPT, limit="web-02", extra_vars={"unit": "nginx.service"})

    assert r.status_code == 201
    body = r.json()
    assert body["ignored_fields"] == {"limit": "web-02", "extra_vars": {"unit": "nginx.service"}}
    # The job runs the template's own values: no limit at all, i.e. every host.
    assert body["limit"] == "" and json.loads(body["extra_vars"]) == {}
    assert awx.job(body["id"]).limit == ""


def test_unknown_template_is_404_not_found(awx: AwxServer, api: httpx.Client) -> None:
    r = launch(api, 999, limit="web-01")

    assert (r.status_code, r.json()) == (404, {"detail": "Not found."})
    assert awx.jobs() == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"{not json", {"detail"}),
        (b'["a list"]', {"non_field_errors"}),
        (b'{"limit": "web-01", "extra_vars": [1, 2]}', {"extra_vars"}),
        (b'{"limit": "web-01", "extra_vars": "{broken"}', {"extra_vars"}),
        (b'{"limit": 5}', {"limit"}),
    ],
)
def test_bad_launch_body_is_400_in_drf_shape(
    awx: AwxServer, api: httpx.Client, content: bytes, expected: set[str]
) -> None:
    r = api.post(
        f"/api/v2/job_templates/{SCRIPTED}/launch/",
        content=content,
        headers={"Content-Type": "application/json"},
    )

    assert r.status_code == 400
    assert set(r.json()) == expected
    assert awx.jobs() == []


def test_extra_vars_may_be_a_json_string(api: httpx.Client) -> None:
    body = launch(api, SCRIPTED, limit="web-01", extra_vars='{"marker": "m1"}').json()
    assert json.loads(body["extra_vars"]) == {"marker": "m1"}


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "Authentication credentials were not provided."),
        ({"Authorization": "Bearer wrong-token"}, "Authentication credentials were not provided."),
        ({"Authorization": "Basic YWRtaW46d3Jvbmc="}, "Invalid username/password."),
    ],
)
def test_unauthenticated_requests_are_401_and_create_nothing(
    awx: AwxServer, headers: dict[str, str], detail: str
) -> None:
    r = httpx.post(
        f"{awx.url}/api/v2/job_templates/{SCRIPTED}/launch/",
        json={"limit": "web-01"},
        headers=headers,
    )

    assert (r.status_code, r.json()) == (401, {"detail": detail})
    assert r.headers["WWW-Authenticate"].startswith("Bearer realm=api")
    assert awx.jobs() == []


def test_basic_auth_with_the_right_password_launches(awx: AwxServer) -> None:
    r = httpx.post(
        f"{awx.url}/api/v2/job_templates/{SCRIPTED}/launch/",
        json={"limit": "web-01"},
        auth=(AWX_USERNAME, AWX_PASSWORD),
    )
    assert r.status_code == 201
    assert awx.launches(SCRIPTED) == 1


def test_cancel_stops_a_running_job_and_405s_once_it_ended(
    awx: AwxServer, api: httpx.Client
) -> None:
    awx.add_template(JobTemplate(SCRIPTED, "stuck", script=Script.stuck()))
    job_id = launch(api, SCRIPTED, limit="web-01").json()["id"]
    wait_until(lambda: awx.job(job_id).status == Phase.RUNNING, what="running")
    assert api.get(f"/api/v2/jobs/{job_id}/cancel/").json() == {"can_cancel": True}

    first = api.post(f"/api/v2/jobs/{job_id}/cancel/")
    job = api.get(f"/api/v2/jobs/{job_id}/").json()
    second = api.post(f"/api/v2/jobs/{job_id}/cancel/")

    assert first.status_code == 202 and first.content == b""
    assert (job["status"], job["failed"]) == ("canceled", True)
    assert job["canceled_on"] == job["finished"] is not None
    assert second.status_code == 405
    assert second.json() == {"detail": 'Method "POST" not allowed.'}
    assert api.get(f"/api/v2/jobs/{job_id}/cancel/").json() == {"can_cancel": False}
    assert awx.cancel_requests == [job_id, job_id]


def test_stdout_as_text_and_as_json(awx: AwxServer, api: httpx.Client) -> None:
    script = Script.succeed(output=("PLAY [all] ***", "ok: [web-01]"))
    awx.add_template(JobTemplate(SCRIPTED, "scripted", script=script))
    job_id = launch(api, SCRIPTED, limit="web-01").json()["id"]
    statuses_until_end(api, job_id)

    txt = api.get(f"/api/v2/jobs/{job_id}/stdout/", params={"format": "txt"})
    as_json = api.get(f"/api/v2/jobs/{job_id}/stdout/", params={"format": "json"}).json()

    assert txt.headers["content-type"].startswith("text/plain")
    assert txt.text.startswith("PLAY [all] ***\nok: [web-01]\n")
    assert as_json["content"] == txt.text
    assert as_json["range"] == {"start": 0, "end": 3, "absolute_end": 3}


def test_job_list_filters_orders_and_pages(awx: AwxServer, api: httpx.Client) -> None:
    other = 31
    awx.add_template(JobTemplate(other, "other", script=Script.succeed()))
    before = datetime.now(UTC) - timedelta(seconds=1)
    ids = [launch(api, SCRIPTED, limit=f"web-0{i}").json()["id"] for i in (1, 2, 3)]
    launch(api, other, limit="web-01")
    query = {
        "job_template": SCRIPTED,
        "created__gte": before.isoformat(),
        "order_by": "-created",
        "page_size": 2,
    }

    first = api.get("/api/v2/jobs/", params=query).json()
    second = api.get(first["next"]).json()
    future = api.get(
        "/api/v2/jobs/", params={**query, "created__gte": (before + timedelta(hours=1)).isoformat()}
    ).json()

    assert first["count"] == 3 and first["previous"] is None
    assert [j["id"] for j in first["results"] + second["results"]] == ids[::-1]
    assert second["next"] is None and second["previous"] is not None
    assert all("extra_vars" in j for j in first["results"])
    assert future == {"count": 0, "next": None, "previous": None, "results": []}


@pytest.mark.parametrize(
    "key", ["extra_vars", "extra_vars__contains", "extra_vars__icontains", "not__extra_vars"]
)
def test_filtering_on_extra_vars_is_403_as_in_awx(api: httpx.Client, key: str) -> None:
    launch(api, SCRIPTED, limit="web-01", extra_vars={"marker": "m1"})

    r = api.get("/api/v2/jobs/", params={key: "m1", "job_template": SCRIPTED})

    assert (r.status_code, r.json()) == (403, {"detail": "Filtering on extra_vars is not allowed."})


def test_list_without_extra_vars_when_configured(awx: AwxServer, api: httpx.Client) -> None:
    launch(api, SCRIPTED, limit="web-01", extra_vars={"marker": "m1"})
    awx.list_includes_extra_vars = False

    [job] = api.get("/api/v2/jobs/").json()["results"]

    assert "extra_vars" not in job


def test_drop_after_launch_creates_the_job_but_never_answers(
    awx: AwxServer, api: httpx.Client
) -> None:
    awx.drop_after_launch()

    with pytest.raises(httpx.TransportError):
        launch(api, SCRIPTED, limit="web-01", extra_vars={"marker": "m1"})

    [job] = awx.jobs(SCRIPTED)
    assert job.extra_vars == {"marker": "m1"}
    assert launch(api, SCRIPTED, limit="web-01").status_code == 201  # the fault is used up


def test_unknown_job_and_unknown_path_are_awx_404s(api: httpx.Client) -> None:
    assert api.get("/api/v2/jobs/424242/").json() == {"detail": "Not found."}
    assert api.post("/api/v2/jobs/424242/cancel/").status_code == 404
    assert api.get("/api/v2/jobs/1").status_code == 404  # no trailing slash


def test_control_api_adds_templates_and_lists_jobs(awx: AwxServer) -> None:
    template = {"id": 77, "name": "via-control", "playbook": "restart_unit.yml"}
    assert httpx.post(f"{awx.url}/_control/templates", json=template).status_code == 204

    assert awx.templates[77].playbook == "restart_unit.yml"
    assert httpx.get(f"{awx.url}/_control/jobs").json() == []
    awx.reset()
    assert 77 not in awx.templates
