"""SemaphoreClient against the sandbox Semaphore server on loopback."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from clients.errors import LaunchRefused, SemaphoreError
from clients.semaphore import SemaphoreClient
from core.wire import JobState
from sandbox.jobs import JobTemplate, Phase, Script
from sandbox.semaphore import SemaphoreServer
from tests.fixtures.jobs import (
    SEMAPHORE_PROJECT,
    SEMAPHORE_TEMPLATES,
    SEMAPHORE_TOKEN,
    poll_to_end,
    wait_until,
)

SCRIPTED = SEMAPHORE_TEMPLATES["scripted"]
TASKS = f"/api/project/{SEMAPHORE_PROJECT}/tasks"


@pytest.fixture
async def client(semaphore: SemaphoreServer) -> AsyncIterator[SemaphoreClient]:
    async with SemaphoreClient(
        semaphore.url, token=SEMAPHORE_TOKEN, project_id=SEMAPHORE_PROJECT, timeout=5
    ) as c:
        yield c


def use_script(semaphore: SemaphoreServer, script: Script, template: int = SCRIPTED) -> None:
    semaphore.add_template(JobTemplate(template, "scripted", script=script))


async def test_launch_sends_the_environment_as_a_json_string(
    semaphore: SemaphoreServer, client: SemaphoreClient
) -> None:
    ref = await client.launch(SCRIPTED, limit="web-02", extra_vars={"unit": "nginx.service"})

    [job] = semaphore.jobs(SCRIPTED)
    assert (ref.runner, ref.job_id) == ("semaphore", str(job.id))
    assert ref.url == f"{semaphore.url}/project/{SEMAPHORE_PROJECT}/history?t={job.id}"
    [req] = semaphore.received("POST", TASKS)
    assert req.headers["authorization"] == f"Bearer {SEMAPHORE_TOKEN}"
    body = req.json()
    assert (body["template_id"], body["limit"]) == (SCRIPTED, "web-02")
    assert json.loads(body["environment"]) == {"unit": "nginx.service"}
    assert job.extra_vars == {"unit": "nginx.service"}


@pytest.mark.parametrize(
    ("script", "final"),
    [
        (Script.succeed(), JobState.SUCCESSFUL),
        (Script.fail(), JobState.FAILED),
        (Script.error(), JobState.FAILED),  # Semaphore says "error" for both
    ],
)
async def test_status_progresses_to_the_end(
    semaphore: SemaphoreServer, client: SemaphoreClient, script: Script, final: JobState
) -> None:
    use_script(semaphore, script)
    ref = await client.launch(SCRIPTED, limit="web-01", extra_vars={})

    seen = await poll_to_end(client, ref.job_id)

    states = [s.state for s in seen]
    assert states[0] == JobState.PENDING and JobState.RUNNING in states
    end = seen[-1]
    assert end.state == final and end.ref == ref
    assert end.started is not None and end.finished is not None
    assert end.elapsed == (end.finished - end.started).total_seconds()


async def test_output_joins_the_lines(semaphore: SemaphoreServer, client: SemaphoreClient) -> None:
    use_script(semaphore, Script.succeed(output=("PLAY [Restart a unit] ***", "ok: [web-01]")))
    ref = await client.launch(SCRIPTED, limit="web-01", extra_vars={})
    await poll_to_end(client, ref.job_id)

    text = await client.output(ref.job_id)

    assert text.startswith("PLAY [Restart a unit] ***\nok: [web-01]\n")
    assert semaphore.received("GET", rf"{TASKS}/\d+/output")


async def test_cancel_stops_the_task_with_a_json_body(
    semaphore: SemaphoreServer, client: SemaphoreClient
) -> None:
    use_script(semaphore, Script.stuck())
    ref = await client.launch(SCRIPTED, limit="web-01", extra_vars={})
    wait_until(lambda: semaphore.job(ref.job_id).status == Phase.RUNNING, what="running")

    await client.cancel(ref.job_id)

    [stop] = semaphore.received("POST", rf"{TASKS}/\d+/stop")
    assert stop.json() == {}
    assert semaphore.cancel_requests == [int(ref.job_id)]
    assert (await client.status(ref.job_id)).state == JobState.CANCELED


@pytest.mark.parametrize("list_has_env", [True, False])
async def test_find_by_marker_matches_the_environment_client_side(
    semaphore: SemaphoreServer, client: SemaphoreClient, list_has_env: bool
) -> None:
    other = 31
    use_script(semaphore, Script.succeed(), other)
    old = await client.launch(SCRIPTED, limit="web-01", extra_vars={"action_id": "a-1"})
    since = semaphore.job(old.job_id).created + timedelta(microseconds=1)
    wanted = await client.launch(SCRIPTED, limit="web-01", extra_vars={"action_id": "a-1"})
    await client.launch(SCRIPTED, limit="web-01", extra_vars={"action_id": "a-2"})
    await client.launch(other, limit="web-01", extra_vars={"action_id": "a-1"})
    semaphore.list_includes_environment = list_has_env

    found = await client.find_by_marker(SCRIPTED, key="action_id", value="a-1", since=since)
    missing = await client.find_by_marker(SCRIPTED, key="action_id", value="a-9", since=since)

    assert found == wanted and missing is None
    lists = semaphore.received("GET", rf"{TASKS}/last")
    assert lists[0].query == {"limit": ["200"]}
    details = semaphore.received("GET", rf"{TASKS}/\d+")
    assert bool(details) is not list_has_env


async def test_find_by_marker_refuses_to_guess_past_one_page(
    semaphore: SemaphoreServer, client: SemaphoreClient
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    for i in range(201):
        semaphore.engine.launch(semaphore.templates[SCRIPTED], limit="web-01", extra_vars={"n": i})

    with pytest.raises(SemaphoreError, match="more than 200 tasks"):
        await client.find_by_marker(SCRIPTED, key="action_id", value="x", since=since)


async def test_a_changed_limit_is_refused_and_the_task_stopped(
    semaphore: SemaphoreServer, client: SemaphoreClient
) -> None:
    use_script(semaphore, Script.stuck())
    semaphore.inject(
        method="POST", path=TASKS, status=201, body={"id": 4242, "limit": "", "status": "waiting"}
    )

    with pytest.raises(LaunchRefused, match="got limit ''"):
        await client.launch(SCRIPTED, limit="web-02", extra_vars={})

    assert semaphore.received("POST", rf"{TASKS}/4242/stop")


async def test_wrong_token_is_401(semaphore: SemaphoreServer) -> None:
    async with SemaphoreClient(semaphore.url, token="nope-nope", project_id=1) as client:
        with pytest.raises(SemaphoreError) as caught:
            await client.launch(SCRIPTED, limit="web-01", extra_vars={})

    assert caught.value.status_code == 401
    assert semaphore.jobs() == []


async def test_unknown_task_is_a_400_with_an_empty_body(client: SemaphoreClient) -> None:
    with pytest.raises(SemaphoreError) as caught:
        await client.status("424242")

    assert caught.value.status_code == 400
    assert caught.value.detail == "Bad Request (empty body)"


async def test_400_error_body_becomes_the_detail(
    semaphore: SemaphoreServer, client: SemaphoreClient
) -> None:
    semaphore.inject(path=TASKS, status=400, body={"error": "Invalid environment"})

    with pytest.raises(SemaphoreError) as caught:
        await client.launch(SCRIPTED, limit="web-01", extra_vars={})

    assert (caught.value.status_code, caught.value.detail) == (400, "Invalid environment")


async def test_5xx_on_launch(semaphore: SemaphoreServer, client: SemaphoreClient) -> None:
    semaphore.inject(path=TASKS, status=500, body={"error": f"boom {SEMAPHORE_TOKEN}"})

    with pytest.raises(SemaphoreError) as caught:
        await client.launch(SCRIPTED, limit="web-01", extra_vars={})

    assert caught.value.status_code == 500 and caught.value.request_sent
    assert SEMAPHORE_TOKEN not in str(caught.value)
    assert semaphore.jobs() == []


async def test_connection_refused_means_the_request_was_never_sent() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with SemaphoreClient(
        f"http://127.0.0.1:{port}", token=SEMAPHORE_TOKEN, project_id=1, timeout=2
    ) as client:
        with pytest.raises(SemaphoreError) as caught:
            await client.launch(SCRIPTED, limit="web-01", extra_vars={})

    assert caught.value.request_sent is False


async def test_dropped_connection_after_launch_leaves_exactly_one_task(
    semaphore: SemaphoreServer, client: SemaphoreClient
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    semaphore.drop_after_launch()

    with pytest.raises(SemaphoreError) as caught:
        await client.launch(SCRIPTED, limit="web-01", extra_vars={"action_id": "a-7"})

    assert caught.value.request_sent is True
    [job] = semaphore.jobs(SCRIPTED)
    found = await client.find_by_marker(SCRIPTED, key="action_id", value="a-7", since=since)
    assert found is not None and found.job_id == str(job.id)


@pytest.mark.parametrize(
    ("word", "state"),
    [
        ("waiting_confirmation", JobState.PENDING),
        ("confirmed", JobState.PENDING),
        ("rejected", JobState.CANCELED),
    ],
)
async def test_confirmation_words(
    semaphore: SemaphoreServer, client: SemaphoreClient, word: str, state: JobState
) -> None:
    use_script(semaphore, Script.of(word))
    ref = await client.launch(SCRIPTED, limit="web-01", extra_vars={})

    assert (await client.status(ref.job_id)).state == state


async def test_unknown_status_word_raises(
    semaphore: SemaphoreServer, client: SemaphoreClient
) -> None:
    use_script(semaphore, Script.of("bogus"))
    ref = await client.launch(SCRIPTED, limit="web-01", extra_vars={})

    with pytest.raises(SemaphoreError, match="unknown Semaphore status 'bogus'"):
        await client.status(ref.job_id)
