"""The sandbox Semaphore server: Semaphore's task API shapes and its terse errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from sandbox.jobs import JobTemplate, Phase, Script
from sandbox.semaphore import SemaphoreServer
from tests.fixtures.jobs import SEMAPHORE_PROJECT, SEMAPHORE_TEMPLATES, SEMAPHORE_TOKEN, wait_until

SCRIPTED = SEMAPHORE_TEMPLATES["scripted"]
TASKS = f"/api/project/{SEMAPHORE_PROJECT}/tasks"
FINAL = ("success", "error", "stopped")


@pytest.fixture
def api(semaphore: SemaphoreServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {SEMAPHORE_TOKEN}"}
    with httpx.Client(base_url=semaphore.url, headers=headers, timeout=5) as client:
        yield client


def start(api: httpx.Client, template: int = SCRIPTED, **fields: object) -> httpx.Response:
    return api.post(TASKS, json={"template_id": template, **fields})


def statuses_until_end(api: httpx.Client, task_id: int) -> tuple[list[str], dict]:
    seen: list[str] = []

    def ended() -> dict | None:
        body = api.get(f"{TASKS}/{task_id}").json()
        if not seen or seen[-1] != body["status"]:
            seen.append(body["status"])
        return body if body["status"] in FINAL else None

    return seen, wait_until(ended, what=f"task {task_id} to end")


def test_new_task_is_201_with_the_task_and_keeps_the_request(
    semaphore: SemaphoreServer, api: httpx.Client
) -> None:
    env = json.dumps({"unit": "nginx.service", "remediation_action_id": "a-1"})
    body = {"template_id": SCRIPTED, "limit": "web-02", "environment": env, "debug": False}

    r = api.post(TASKS, json=body)

    assert r.status_code == 201
    task = r.json()
    assert (task["template_id"], task["project_id"], task["status"]) == (
        SCRIPTED,
        SEMAPHORE_PROJECT,
        "waiting",
    )
    assert task["limit"] == "web-02" and task["environment"] == env
    assert task["start"] is None and task["end"] is None and task["created"].endswith("Z")
    [req] = semaphore.received("POST", TASKS)
    assert req.headers["authorization"] == f"Bearer {SEMAPHORE_TOKEN}"
    assert req.json() == body
    assert semaphore.job(task["id"]).extra_vars == json.loads(env)
    assert semaphore.launches(SCRIPTED) == 1


@pytest.mark.parametrize(
    ("script", "final"),
    [(Script.succeed(), "success"), (Script.fail(), "error"), (Script.error(), "error")],
)
def test_scripted_task_walks_semaphore_statuses_to_its_end(
    semaphore: SemaphoreServer, api: httpx.Client, script: Script, final: str
) -> None:
    semaphore.add_template(JobTemplate(SCRIPTED, "scripted", script=script))
    task_id = start(api, limit="web-01").json()["id"]

    seen, task = statuses_until_end(api, task_id)

    assert seen[0] == "waiting" and seen[-1] == final
    assert "running" in seen
    assert task["start"] is not None and task["end"] >= task["start"]


def test_scripted_words_outside_the_engine_pass_through_verbatim(
    semaphore: SemaphoreServer, api: httpx.Client
) -> None:
    semaphore.add_template(JobTemplate(SCRIPTED, "s", script=Script.of("waiting_confirmation")))
    task_id = start(api, limit="web-01").json()["id"]

    assert api.get(f"{TASKS}/{task_id}").json()["status"] == "waiting_confirmation"


def test_stop_needs_a_json_body_then_stops_the_task(
    semaphore: SemaphoreServer, api: httpx.Client
) -> None:
    semaphore.add_template(JobTemplate(SCRIPTED, "stuck", script=Script.stuck()))
    task_id = start(api, limit="web-01").json()["id"]
    wait_until(lambda: semaphore.job(task_id).status == Phase.RUNNING, what="running")

    bare = api.post(f"{TASKS}/{task_id}/stop")
    still = api.get(f"{TASKS}/{task_id}").json()["status"]
    stopped = api.post(f"{TASKS}/{task_id}/stop", json={})
    task = api.get(f"{TASKS}/{task_id}").json()

    assert (bare.status_code, bare.content) == (400, b"")
    assert still == "running"
    assert (stopped.status_code, stopped.content) == (204, b"")
    assert task["status"] == "stopped" and task["end"] is not None
    assert semaphore.cancel_requests == [task_id]


def test_stopping_a_finished_task_changes_nothing(
    semaphore: SemaphoreServer, api: httpx.Client
) -> None:
    task_id = start(api, limit="web-01").json()["id"]
    statuses_until_end(api, task_id)

    assert api.post(f"{TASKS}/{task_id}/stop", json={"force": True}).status_code == 204
    assert api.get(f"{TASKS}/{task_id}").json()["status"] == "success"


def test_output_lines_and_raw_output(semaphore: SemaphoreServer, api: httpx.Client) -> None:
    script = Script.succeed(output=("PLAY [all] ***", "ok: [web-01]"))
    semaphore.add_template(JobTemplate(SCRIPTED, "scripted", script=script))
    task_id = start(api, limit="web-01").json()["id"]
    statuses_until_end(api, task_id)

    lines = api.get(f"{TASKS}/{task_id}/output").json()
    raw = api.get(f"{TASKS}/{task_id}/raw_output")

    assert [line["output"] for line in lines][:2] == ["PLAY [all] ***", "ok: [web-01]"]
    assert {line["task_id"] for line in lines} == {task_id}
    assert all(line["time"].endswith("Z") for line in lines)
    assert raw.headers["content-type"].startswith("text/plain")
    assert raw.text.splitlines() == [line["output"] for line in lines]


def test_task_lists_are_newest_first(semaphore: SemaphoreServer, api: httpx.Client) -> None:
    other = 31
    semaphore.add_template(JobTemplate(other, "other", script=Script.succeed()))
    ids = [start(api, limit="web-01").json()["id"] for _ in range(3)]
    other_id = start(api, other, limit="web-01").json()["id"]

    everything = api.get(TASKS).json()
    last_two = api.get(f"{TASKS}/last", params={"limit": 2}).json()
    of_template = api.get(f"/api/project/{SEMAPHORE_PROJECT}/templates/{SCRIPTED}/tasks").json()

    assert [t["id"] for t in everything] == [other_id, *ids[::-1]]
    assert [t["id"] for t in last_two] == [other_id, ids[-1]]
    assert [t["id"] for t in of_template] == ids[::-1]
    assert everything[0]["tpl_alias"] == "other" and "environment" in everything[0]


@pytest.mark.parametrize("task_id", ["424242", "abc"])
def test_unknown_or_malformed_task_id_is_a_bare_400(api: httpx.Client, task_id: str) -> None:
    for r in (
        api.get(f"{TASKS}/{task_id}"),
        api.get(f"{TASKS}/{task_id}/output"),
        api.post(f"{TASKS}/{task_id}/stop", json={}),
    ):
        assert (r.status_code, r.content) == (400, b"")


def test_unknown_project_or_template_is_a_bare_404(
    semaphore: SemaphoreServer, api: httpx.Client
) -> None:
    assert api.post("/api/project/99/tasks", json={"template_id": SCRIPTED}).status_code == 404
    r = start(api, 999, limit="web-01")
    assert (r.status_code, r.content) == (404, b"")
    assert semaphore.jobs() == []


@pytest.mark.parametrize(
    ("content", "validation_error"),
    [
        (b"{not json", False),  # Go's decoder fails: bare 400
        (b'{"template_id": "30"}', False),
        (b'{"template_id": 30, "environment": {"a": 1}}', False),
        (b'{"template_id": 30, "debug": 1}', False),
        (b'{"template_id": 30, "environment": "[1]"}', True),  # decodes, fails validation
    ],
)
def test_bad_task_body_is_400(
    semaphore: SemaphoreServer, api: httpx.Client, content: bytes, validation_error: bool
) -> None:
    r = api.post(TASKS, content=content, headers={"Content-Type": "application/json"})

    assert r.status_code == 400
    if validation_error:
        assert set(r.json()) == {"error"}
    else:
        assert r.content == b""
    assert semaphore.jobs() == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
def test_no_or_wrong_token_is_a_bare_401(semaphore: SemaphoreServer, headers: dict) -> None:
    r = httpx.post(f"{semaphore.url}{TASKS}", json={"template_id": SCRIPTED}, headers=headers)

    assert (r.status_code, r.content) == (401, b"")
    assert semaphore.jobs() == []


def test_drop_after_launch_creates_the_task_but_never_answers(
    semaphore: SemaphoreServer, api: httpx.Client
) -> None:
    semaphore.drop_after_launch()

    with pytest.raises(httpx.TransportError):
        start(api, limit="web-01", environment='{"marker": "m1"}')

    [job] = semaphore.jobs(SCRIPTED)
    assert job.extra_vars == {"marker": "m1"}
