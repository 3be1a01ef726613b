"""The local Ansible runner (prefect-shell): real `ansible-playbook` runs of the sandbox
playbooks against the simulated fleet — success, failure with its output (stderr
included), cancel, a refused limit — and what a restarted process can know of them."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clients.errors import AnsibleError
from core.wire import JobState, JobStatus
from sandbox.fleet import Fleet
from sandbox.jobs import PLAYBOOK_DIR
from tasks.runners import AnsibleRunner, LocalJobLost, PlaybookNotFound

PLAYBOOK_TIMEOUT = 60.0  # generous: two busy cores shared with other test runs


@pytest.fixture
async def runner(fleet_reset: Fleet) -> AsyncIterator[AnsibleRunner]:
    local = AnsibleRunner(
        extra_vars={
            "fleet_url": fleet_reset.url,
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
        },
        playbook_dir=str(PLAYBOOK_DIR),
    )
    try:
        yield local
    finally:
        await local.aclose()


async def until_terminal(runner: AnsibleRunner, job_id: str) -> JobStatus:
    deadline = time.monotonic() + PLAYBOOK_TIMEOUT
    while True:
        status = await runner.status(job_id)
        if status.state.terminal:
            return status
        assert time.monotonic() < deadline, f"job {job_id} still {status.state}"
        await asyncio.sleep(0.1)


async def test_a_real_playbook_runs_to_success_on_the_one_host(
    runner: AnsibleRunner, fleet_reset: Fleet
) -> None:
    fleet_reset.patch("web-02", {"units": {"nginx.service": {"state": "failed"}}})
    ref = await runner.launch(
        "restart_unit.yml", limit="web-02", extra_vars={"unit": "nginx.service"}
    )
    assert ref.runner == "ansible" and ref.job_id.startswith("local-")
    status = await until_terminal(runner, ref.job_id)
    assert status.state is JobState.SUCCESSFUL, await runner.output(ref.job_id)
    assert status.elapsed is not None and status.elapsed > 0
    assert await runner.return_code(ref.job_id) == 0
    output = await runner.output(ref.job_id)
    assert "RESULT web-02 restart_unit nginx.service" in output
    assert "PLAY RECAP" in output
    assert fleet_reset.state("web-02").units["nginx.service"].state == "active"


async def test_a_failing_playbook_is_failed_with_its_output_and_stderr(
    runner: AnsibleRunner, tmp_path: Path
) -> None:
    # The assert in restart_unit.yml fails without `unit` (output on stdout) ...
    ref = await runner.launch("restart_unit.yml", limit="web-01", extra_vars={})
    status = await until_terminal(runner, ref.job_id)
    assert status.state is JobState.FAILED
    assert await runner.return_code(ref.job_id) == 2
    assert "restart_unit.yml needs the extra var 'unit'" in await runner.output(ref.job_id)
    # ... and a playbook Ansible cannot parse fails with its error on stderr, kept too.
    broken = tmp_path / "broken.yml"
    broken.write_text("- hosts: all\n  tasks: [ {\n")
    ref = await runner.launch(str(broken), limit="web-01", extra_vars={})
    status = await until_terminal(runner, ref.job_id)
    assert status.state is JobState.FAILED
    assert await runner.return_code(ref.job_id) not in (0, None)
    output = await runner.output(ref.job_id)
    assert "ERROR" in output and "broken.yml" in output, output


async def test_cancel_stops_the_playbook_and_its_process_group(
    runner: AnsibleRunner, tmp_path: Path
) -> None:
    slow = tmp_path / "slow.yml"
    slow.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.debug: {msg: started}\n"
        "    - name: sleeping\n"
        "      ansible.builtin.command: sleep 120\n"
    )
    ref = await runner.launch(str(slow), limit="web-01", extra_vars={})
    pgid = int(ref.job_id.split("-")[1])
    deadline = time.monotonic() + PLAYBOOK_TIMEOUT
    while "TASK [sleeping]" not in await runner.output(ref.job_id):
        assert time.monotonic() < deadline, await runner.output(ref.job_id)
        await asyncio.sleep(0.1)
    assert (await runner.status(ref.job_id)).state is JobState.RUNNING
    await runner.cancel(ref.job_id)
    status = await until_terminal(runner, ref.job_id)
    assert status.state is JobState.CANCELED
    assert "started" in await runner.output(ref.job_id)  # output kept after the cancel
    deadline = time.monotonic() + 10
    while _group_alive(pgid):  # the `sleep 120` went with it
        assert time.monotonic() < deadline, "the playbook's process group outlived the cancel"
        await asyncio.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_only_one_host_and_existing_playbooks_are_launched(runner: AnsibleRunner) -> None:
    for limit in ("", "web-01,web-02", "all:!db-01", "web-*", "web-01 web-02"):
        with pytest.raises(AnsibleError, match="not one host") as refused:
            await runner.launch("restart_unit.yml", limit=limit, extra_vars={})
        assert refused.value.request_sent is False
    with pytest.raises(PlaybookNotFound) as missing:
        await runner.launch("no_such.yml", limit="web-01", extra_vars={})
    assert missing.value.request_sent is False


async def test_jobs_are_found_by_marker_only_in_the_process_that_started_them(
    runner: AnsibleRunner, fleet_reset: Fleet
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    ref = await runner.launch(
        "restart_unit.yml",
        limit="web-01",
        extra_vars={"unit": "cron.service", "remediation_action_id": "act-1"},
    )
    found = await runner.find_by_marker(
        "restart_unit.yml", key="remediation_action_id", value="act-1", since=since
    )
    assert found == ref
    assert (
        await runner.find_by_marker(
            "restart_unit.yml", key="remediation_action_id", value="act-2", since=since
        )
        is None
    )
    await until_terminal(runner, ref.job_id)
    # A restarted process (a new runner) knows nothing of it: it must not guess.
    restarted = AnsibleRunner(playbook_dir=str(PLAYBOOK_DIR))
    assert not restarted.knows(ref.job_id)
    assert (
        await restarted.find_by_marker(
            "restart_unit.yml", key="remediation_action_id", value="act-1", since=since
        )
        is None
    )
    with pytest.raises(LocalJobLost):
        await restarted.status(ref.job_id)
