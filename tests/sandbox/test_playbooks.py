"""The sandbox playbooks, run for real by ansible-playbook behind the sandbox AWX and
Semaphore servers, against the simulated fleet (and, end to end, a real Prometheus).

Each Ansible run costs ~1-2.5 s, so every playbook runs once in the whole suite (half
through AWX, half through Semaphore), plus one run with a missing variable, the two
Prometheus end-to-end runs and three runs killed early (a refused launch, cancel, stop).
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from clients.awx import AwxClient
from clients.errors import LaunchRefused
from clients.jobs_common import JobRunnerClient
from clients.prometheus import PrometheusClient
from clients.semaphore import SemaphoreClient
from core.wire import JobState, JobStatus
from sandbox.awx import AwxServer
from sandbox.fleet import Fleet
from sandbox.fleet_state import HostState
from sandbox.jobs import Phase
from sandbox.jobs_ansible import PlaybookJob
from sandbox.semaphore import SemaphoreServer
from tests.fixtures.jobs import (
    AWX_TOKEN,
    SEMAPHORE_PROJECT,
    SEMAPHORE_TOKEN,
    TEMPLATE_IDS,
    job_templates,
    poll_to_end,
    wait_until,
)
from tests.fixtures.prometheus import converge

pytestmark = pytest.mark.slow
PLAYBOOK_TIMEOUT = 60.0  # generous: 2 busy cores shared with other test runs


@pytest.fixture
async def runners(
    wired_jobs: tuple[AwxServer, SemaphoreServer],
) -> AsyncIterator[dict[str, JobRunnerClient]]:
    awx, semaphore = wired_jobs
    async with (
        AwxClient(awx.url, token=AWX_TOKEN, timeout=5) as awx_client,
        SemaphoreClient(
            semaphore.url, token=SEMAPHORE_TOKEN, project_id=SEMAPHORE_PROJECT, timeout=5
        ) as semaphore_client,
    ):
        yield {"awx": awx_client, "semaphore": semaphore_client}


async def run(
    runner: JobRunnerClient, playbook: str, host: str, extra_vars: dict[str, Any]
) -> tuple[JobStatus, str]:
    """Launch a playbook's template on one host, wait for the end; (status, output)."""
    ref = await runner.launch(TEMPLATE_IDS[playbook], limit=host, extra_vars=extra_vars)
    end = (await poll_to_end(runner, ref.job_id, timeout=PLAYBOOK_TIMEOUT, interval=0.1))[-1]
    return end, await runner.output(ref.job_id)


@dataclass(frozen=True)
class Case:
    playbook: str
    runner: str
    host: str
    extra_vars: dict[str, Any]
    patch: dict[str, Any]  # the host's trouble before the run
    actions: list[str]  # what the fleet must have been asked, in order
    fixed: Callable[[HostState], bool]  # the host's state after the run
    result: str  # in the playbook's RESULT line


JAVA = {"processes": {"java": {"cpu_cores": 1.6, "rss_bytes": 3 << 30, "baseline_cores": 0.1}}}
CASES = [
    Case(
        # The restart does not fix this unit: the run still ends normally (verification
        # decides it was ineffective) and says what happened.
        "restart_unit", "awx", "web-02", {"unit": "nginx.service"},
        {"units": {"nginx.service": {"state": "failed", "restart_fixes": False}}},
        ["restart_unit"],
        lambda s: s.units["nginx.service"].state == "failed",
        "nginx.service failed to start again after restart",
    ),
    Case(
        "free_disk", "semaphore", "db-01", {"mountpoint": "/var"},
        {"mounts": {"/var": {"used_pct": 97.0, "freeable_pct": 30.0}}},
        ["free_disk"],
        lambda s: s.mounts["/var"].used_pct < 90,
        "freed 30% on /var",
    ),
    Case(
        "restart_process", "awx", "web-01", {"process": "java"}, JAVA,
        ["restart_process"],
        lambda s: s.processes["java"].cpu_cores == pytest.approx(0.1),
        "java restarted",
    ),
    Case(
        "kill_process", "semaphore", "web-01", {"process": "java"}, JAVA,
        ["kill_process"],
        lambda s: "java" not in s.processes,
        "killed java",
    ),
    Case(
        "reboot_host", "awx", "web-02", {},
        {"units": {"nginx.service": {"state": "failed"}}},
        ["reboot"],
        lambda s: s.units["nginx.service"].state == "active",
        "rebooted; all units active",
    ),
    Case(
        "fence_database", "semaphore", "db-01", {"process": "postgres", "confirm_host": "db-01"},
        {"processes": {"postgres": {"cpu_cores": 0.5, "rss_bytes": 1 << 30}}},
        ["kill_process", "reboot"],
        lambda s: "postgres" not in s.processes,
        "killed postgres; rebooted",
    ),
    Case(
        "restart_time_sync", "awx", "db-01", {"unit": "systemd-timesyncd.service"},
        {"clock": {"synced": False, "offset_seconds": 2.5}},
        ["restart_time_sync"],
        lambda s: s.clock.synced and s.clock.offset_seconds == 0,
        "systemd-timesyncd.service restarted; clock synchronised (offset was 2.5 s)",
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[f"{c.playbook}-via-{c.runner}" for c in CASES])
async def test_playbook_acts_on_the_limited_host_only(
    fleet_reset: Fleet, runners: dict[str, JobRunnerClient], case: Case
) -> None:
    fleet_reset.patch(case.host, case.patch)

    end, output = await run(runners[case.runner], case.playbook, case.host, case.extra_vars)

    assert end.state == JobState.SUCCESSFUL, output
    assert [(a.host, a.action) for a in fleet_reset.actions] == [
        (case.host, action) for action in case.actions
    ]
    assert case.fixed(fleet_reset.state(case.host))
    [line] = [ln for ln in output.splitlines() if "RESULT " in ln]
    assert f"RESULT {case.host} {case.playbook}" in line and case.result in line


async def test_missing_variable_fails_the_job_with_a_clear_message(
    fleet_reset: Fleet, runners: dict[str, JobRunnerClient]
) -> None:
    end, output = await run(runners["awx"], "restart_unit", "web-01", {})

    assert end.state == JobState.FAILED
    assert "restart_unit.yml needs the extra var 'unit'" in output
    assert fleet_reset.actions == []


async def test_refused_launch_is_canceled_before_it_touches_any_host(
    fleet_reset: Fleet,
    wired_jobs: tuple[AwxServer, SemaphoreServer],
    runners: dict[str, JobRunnerClient],
) -> None:
    awx, _ = wired_jobs
    no_prompt = TEMPLATE_IDS["no_prompt"]

    with pytest.raises(LaunchRefused):
        await runners["awx"].launch(no_prompt, limit="web-02", extra_vars={"unit": "x.service"})

    [job] = awx.jobs(no_prompt)
    assert job.wait(PLAYBOOK_TIMEOUT) == Phase.CANCELED
    # Left alone, this job would have restarted nginx.service on all three hosts.
    assert fleet_reset.actions == []


NGINX_STATE = 'node_systemd_unit_state{{instance="{host}",name="nginx.service",state="{state}"}}'


@pytest.mark.prometheus
@pytest.mark.parametrize(("runner", "host"), [("awx", "web-02"), ("semaphore", "db-01")])
async def test_restart_unit_clears_a_failed_unit_as_prometheus_sees_it(
    fleet_reset: Fleet,
    prometheus_client: PrometheusClient,
    runners: dict[str, JobRunnerClient],
    runner: str,
    host: str,
) -> None:
    fleet_reset.patch(host, {"units": {"nginx.service": {"state": "failed"}}})
    failed = NGINX_STATE.format(host=host, state="failed")
    await converge(prometheus_client, failed, lambda s: [x.value for x in s] == [1.0])

    end, output = await run(runners[runner], "restart_unit", host, {"unit": "nginx.service"})

    assert end.state == JobState.SUCCESSFUL, output
    await converge(prometheus_client, failed, lambda s: [x.value for x in s] == [0.0])
    active = NGINX_STATE.format(host=host, state="active")
    await converge(prometheus_client, active, lambda s: [x.value for x in s] == [1.0])


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A URL whose server accepts connections and never answers: a playbook task calling
    it hangs (until the uri module's 30 s timeout), so a cancel always finds it running."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def hanging_job(server: AwxServer, blackhole: str) -> PlaybookJob:
    server.fleet_url = blackhole
    template = server.templates[TEMPLATE_IDS["restart_unit"]]
    job = server.engine.launch(
        template, limit="web-01", extra_vars={"unit": "nginx.service"},
        server_vars=server.extra_vars,
    )  # fmt: skip
    assert isinstance(job, PlaybookJob)
    wait_until(lambda: "TASK [Restart the unit]" in job.output, timeout=PLAYBOOK_TIMEOUT)
    return job


def assert_group_gone(pgid: int | None) -> None:
    assert pgid is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


async def test_cancel_terminates_the_ansible_process_group(awx: AwxServer, blackhole: str) -> None:
    job = hanging_job(awx, blackhole)

    async with AwxClient(awx.url, token=AWX_TOKEN, timeout=5) as client:
        await client.cancel(str(job.id))
        end = (await poll_to_end(client, str(job.id), timeout=10))[-1]

    assert end.state == JobState.CANCELED
    assert_group_gone(job.pid)


def test_stopping_the_server_kills_running_playbooks(blackhole: str) -> None:
    server = AwxServer(job_templates())
    server.start()
    try:
        job = hanging_job(server, blackhole)
    finally:
        server.stop()

    assert job.status == Phase.CANCELED
    assert_group_gone(job.pid)
