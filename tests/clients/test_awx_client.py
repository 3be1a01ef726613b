"""AwxClient against the sandbox AWX server on loopback."""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from clients.awx import AwxClient
from clients.errors import AwxError, LaunchRefused
from core.wire import JobState
from sandbox.awx import AwxServer
from sandbox.jobs import JobTemplate, Phase, Script
from tests.fixtures.jobs import (
    AWX_PASSWORD,
    AWX_TEMPLATES,
    AWX_TOKEN,
    AWX_USERNAME,
    poll_to_end,
    wait_until,
)

SCRIPTED = AWX_TEMPLATES["scripted"]
NO_PROMPT = AWX_TEMPLATES["no_prompt"]
LAUNCH = r"/api/v2/job_templates/\d+/launch/"


@pytest.fixture
async def client(awx: AwxServer) -> AsyncIterator[AwxClient]:
    async with AwxClient(awx.url, token=AWX_TOKEN, timeout=5) as c:
        yield c


def use_script(awx: AwxServer, script: Script, template: int = SCRIPTED) -> None:
    awx.add_template(JobTemplate(template, "scripted", script=script))


async def test_launch_sends_limit_and_extra_vars_and_returns_a_ref(
    awx: AwxServer, client: AwxClient
) -> None:
    ref = await client.launch(SCRIPTED, limit="web-02", extra_vars={"unit": "nginx.service"})

    [job] = awx.jobs(SCRIPTED)
    assert (ref.runner, ref.job_id) == ("awx", str(job.id))
    assert ref.url == f"{awx.url}/#/jobs/playbook/{job.id}/output"
    [req] = awx.received("POST", LAUNCH)
    assert req.path == f"/api/v2/job_templates/{SCRIPTED}/launch/"
    assert req.headers["authorization"] == f"Bearer {AWX_TOKEN}"
    assert req.json() == {"limit": "web-02", "extra_vars": {"unit": "nginx.service"}}


async def test_basic_auth_client(awx: AwxServer) -> None:
    async with AwxClient(awx.url, username=AWX_USERNAME, password=AWX_PASSWORD) as client:
        await client.launch(SCRIPTED, limit="web-01", extra_vars={})

    [req] = awx.received("POST", LAUNCH)
    expected = base64.b64encode(f"{AWX_USERNAME}:{AWX_PASSWORD}".encode()).decode()
    assert req.headers["authorization"] == f"Basic {expected}"


@pytest.mark.parametrize(
    ("script", "final"),
    [
        (Script.succeed(), JobState.SUCCESSFUL),
        (Script.fail(), JobState.FAILED),
        (Script.error(), JobState.ERROR),
    ],
)
async def test_status_progresses_to_the_end(
    awx: AwxServer, client: AwxClient, script: Script, final: JobState
) -> None:
    use_script(awx, script)
    ref = await client.launch(SCRIPTED, limit="web-01", extra_vars={})

    seen = await poll_to_end(client, ref.job_id)

    states = [s.state for s in seen]
    assert states[0] == JobState.PENDING and JobState.RUNNING in states
    end = seen[-1]
    assert end.state == final and end.ref == ref
    assert end.started is not None and end.finished is not None
    assert end.elapsed == pytest.approx((end.finished - end.started).total_seconds(), abs=0.002)


async def test_output_is_the_job_stdout(awx: AwxServer, client: AwxClient) -> None:
    use_script(awx, Script.succeed(output=("PLAY [Restart a unit] ***", "changed: [web-01]")))
    ref = await client.launch(SCRIPTED, limit="web-01", extra_vars={})
    await poll_to_end(client, ref.job_id)

    text = await client.output(ref.job_id)

    assert text.startswith("PLAY [Restart a unit] ***\nchanged: [web-01]\n")
    [req] = awx.received("GET", r"/api/v2/jobs/\d+/stdout/")
    assert req.query == {"format": ["txt"]}


async def test_cancel_reaches_the_server_and_the_job_ends_canceled(
    awx: AwxServer, client: AwxClient
) -> None:
    use_script(awx, Script.stuck())
    ref = await client.launch(SCRIPTED, limit="web-01", extra_vars={})
    wait_until(lambda: awx.job(ref.job_id).status == Phase.RUNNING, what="running")

    await client.cancel(ref.job_id)

    assert awx.cancel_requests == [int(ref.job_id)]
    assert (await client.status(ref.job_id)).state == JobState.CANCELED
    await client.cancel(ref.job_id)  # AWX's 405 for a finished job is not an error
    assert awx.cancel_requests == [int(ref.job_id)] * 2


@pytest.mark.parametrize("list_has_vars", [True, False])
async def test_find_by_marker_matches_extra_vars_client_side(
    awx: AwxServer, client: AwxClient, list_has_vars: bool
) -> None:
    awx.list_includes_extra_vars = list_has_vars
    other = 31
    use_script(awx, Script.succeed(), other)
    old = await client.launch(SCRIPTED, limit="web-01", extra_vars={"action_id": "a-1"})
    since = awx.job(old.job_id).created + timedelta(microseconds=1)
    wanted = await client.launch(SCRIPTED, limit="web-01", extra_vars={"action_id": "a-1"})
    await client.launch(SCRIPTED, limit="web-01", extra_vars={"action_id": "a-2"})
    await client.launch(other, limit="web-01", extra_vars={"action_id": "a-1"})

    found = await client.find_by_marker(SCRIPTED, key="action_id", value="a-1", since=since)
    missing = await client.find_by_marker(SCRIPTED, key="action_id", value="a-9", since=since)

    assert found == wanted and missing is None
    lists = awx.received("GET", "/api/v2/jobs/")
    assert lists and all("extra_vars" not in key for r in lists for key in r.query)
    assert lists[0].query["job_template"] == [str(SCRIPTED)]
    assert lists[0].query["order_by"] == ["-created"]
    assert datetime.fromisoformat(lists[0].query["created__gte"][0]) == since
    details = awx.received("GET", r"/api/v2/jobs/\d+/")
    assert bool(details) is not list_has_vars  # detail fetched only when the list lacks vars


async def test_find_by_marker_follows_pages(awx: AwxServer, client: AwxClient) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    template = awx.templates[SCRIPTED]
    # Straight through the engine: 205 jobs need no HTTP launches. The wanted one is the
    # oldest, so it is on the second page of AWX's 200-job pages.
    wanted = awx.engine.launch(template, limit="web-01", extra_vars={"action_id": "first"})
    for i in range(204):
        awx.engine.launch(template, limit="web-01", extra_vars={"action_id": f"n{i}"})

    found = await client.find_by_marker(SCRIPTED, key="action_id", value="first", since=since)

    assert found is not None and found.job_id == str(wanted.id)
    assert [r.query.get("page") for r in awx.received("GET", "/api/v2/jobs/")] == [None, ["2"]]


async def test_find_by_marker_refuses_to_guess_past_its_page_budget(
    awx: AwxServer, client: AwxClient
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    for i in range(1001):
        awx.engine.launch(awx.templates[SCRIPTED], limit="web-01", extra_vars={"n": i})

    with pytest.raises(AwxError, match="more than 1000 jobs"):
        await client.find_by_marker(SCRIPTED, key="action_id", value="x", since=since)


async def test_template_that_ignores_limit_is_refused_and_its_job_canceled(
    awx: AwxServer, client: AwxClient
) -> None:
    awx.add_template(
        JobTemplate(
            NO_PROMPT, "no_prompt", script=Script.stuck(), ask_limit_on_launch=False,
            ask_variables_on_launch=False,
        )
    )  # fmt: skip

    with pytest.raises(LaunchRefused) as caught:
        await client.launch(NO_PROMPT, limit="web-02", extra_vars={"unit": "nginx.service"})

    [job] = awx.jobs(NO_PROMPT)
    assert awx.cancel_requests == [job.id]
    assert job.status == Phase.CANCELED
    message = str(caught.value)
    assert f"template {NO_PROMPT}" in message and "extra_vars and limit" in message
    assert "does not prompt on launch" in message and f"job {job.id} was canceled" in message


async def test_only_ignored_extra_vars_is_refused_too(awx: AwxServer, client: AwxClient) -> None:
    awx.add_template(
        JobTemplate(NO_PROMPT, "vars_fixed", script=Script.stuck(), ask_variables_on_launch=False)
    )

    with pytest.raises(LaunchRefused, match="for extra_vars"):
        await client.launch(NO_PROMPT, limit="web-02", extra_vars={"unit": "nginx.service"})

    assert awx.cancel_requests == [awx.jobs(NO_PROMPT)[0].id]


async def test_wrong_token_is_401_with_awx_detail(awx: AwxServer) -> None:
    async with AwxClient(awx.url, token="wrong-token-123456") as client:
        with pytest.raises(AwxError) as caught:
            await client.launch(SCRIPTED, limit="web-01", extra_vars={})

    assert caught.value.status_code == 401
    assert caught.value.detail == "Authentication credentials were not provided."
    assert awx.jobs() == []


async def test_unknown_template_is_404(awx: AwxServer, client: AwxClient) -> None:
    with pytest.raises(AwxError) as caught:
        await client.launch(999, limit="web-01", extra_vars={})

    assert (caught.value.status_code, caught.value.detail) == (404, "Not found.")


async def test_400_field_errors_become_the_detail(awx: AwxServer, client: AwxClient) -> None:
    awx.inject(path=LAUNCH, status=400, body={"extra_vars": ["Must be a valid JSON or YAML."]})

    with pytest.raises(AwxError) as caught:
        await client.launch(SCRIPTED, limit="web-01", extra_vars={})

    assert caught.value.status_code == 400
    assert caught.value.detail == "extra_vars: Must be a valid JSON or YAML."


async def test_5xx_on_launch_is_an_error_after_sending(awx: AwxServer, client: AwxClient) -> None:
    awx.inject(path=LAUNCH, status=503, body={"detail": f"upstream down, token {AWX_TOKEN}"})

    with pytest.raises(AwxError) as caught:
        await client.launch(SCRIPTED, limit="web-01", extra_vars={})

    assert caught.value.status_code == 503 and caught.value.request_sent
    assert AWX_TOKEN not in str(caught.value)  # the client's secrets are redacted
    assert awx.jobs() == []


async def test_connection_refused_means_the_request_was_never_sent() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    async with AwxClient(f"http://127.0.0.1:{port}", token=AWX_TOKEN, timeout=2) as client:
        with pytest.raises(AwxError) as caught:
            await client.launch(SCRIPTED, limit="web-01", extra_vars={})

    assert caught.value.request_sent is False


async def test_dropped_connection_after_launch_leaves_exactly_one_job(
    awx: AwxServer, client: AwxClient
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    awx.drop_after_launch()

    with pytest.raises(AwxError) as caught:
        await client.launch(SCRIPTED, limit="web-01", extra_vars={"action_id": "a-7"})

    assert caught.value.request_sent is True
    [job] = awx.jobs(SCRIPTED)
    found = await client.find_by_marker(SCRIPTED, key="action_id", value="a-7", since=since)
    assert found is not None and found.job_id == str(job.id)


async def test_unknown_status_word_raises(awx: AwxServer, client: AwxClient) -> None:
    use_script(awx, Script.of("bogus"))
    ref = await client.launch(SCRIPTED, limit="web-01", extra_vars={})

    with pytest.raises(AwxError, match="unknown AWX status 'bogus'"):
        await client.status(ref.job_id)


@pytest.mark.parametrize("word", ["new", "waiting"])
async def test_every_awx_pending_word_maps_to_pending(
    awx: AwxServer, client: AwxClient, word: str
) -> None:
    use_script(awx, Script.of(word))
    ref = await client.launch(SCRIPTED, limit="web-01", extra_vars={})

    assert (await client.status(ref.job_id)).state == JobState.PENDING


async def test_empty_limit_is_refused_before_any_request(awx: AwxServer, client: AwxClient) -> None:
    with pytest.raises(ValueError, match="limit"):
        await client.launch(SCRIPTED, limit=" ", extra_vars={})

    assert awx.received() == []


def test_client_needs_credentials() -> None:
    with pytest.raises(ValueError, match="token"):
        AwxClient("http://awx.invalid", username="admin")
