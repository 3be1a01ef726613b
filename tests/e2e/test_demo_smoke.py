"""`make demo`, shortened: the same driver with the `fast` profile, on a free port.

Separate processes, as in the demo: a Prefect server, the sandbox (real Prometheus),
a process worker running every flow from the deployments `prefect deploy` created, and
the listener; the simulated operator approves two actions, rejects one and leaves the
high-risk one to its deadline. Everything asserted is read back from the ledger and the
Prefect API by the driver's summary, not taken from the plan.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from core.settings import ActionSettings
from sandbox.demo import run_demo
from sandbox.demo_profile import PROFILES
from sandbox.http import free_port


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


@pytest.mark.slow
@pytest.mark.timeout(480)
async def test_the_fast_demo_ends_with_effective_rejected_and_deadline_default(
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    # in a thread: the driver runs its own event loops
    result = await asyncio.to_thread(
        run_demo, PROFILES["fast"], port=free_port(), workdir=tmp_path, say=lines.append
    )
    story = "\n".join(lines)

    by_action = {(v.p.catalog_key, v.p.host): v for v in result.views}
    assert set(by_action) == {
        ("restart_unit", "web-02"),
        ("free_disk", "db-01"),
        ("restart_unit", "db-01"),
        ("restart_process", "web-01"),
    }, story
    nginx, disk = by_action["restart_unit", "web-02"], by_action["free_disk", "db-01"]
    postgres, java = by_action["restart_unit", "db-01"], by_action["restart_process", "web-01"]

    # approved in Discord, run by AWX and Semaphore, verified effective
    for view, who, runner in ((nginx, "alice", "awx"), (disk, "bob", "semaphore")):
        assert view.record.decision.decider == who and view.record.decision.via == "discord"
        assert (view.record.job.runner, view.record.job.state) == (runner, "successful")
        assert view.verdict == "effective", story
    # The remediate-action deployment declares the fast profile's 2 s settle time and the
    # cycle passes only `settings: {deployment: ...}`: merged, the runs still settle 2 s,
    # not the 60 s default a replaced `settings` parameter used to leave them with.
    for view in (nginx, disk):
        waited = (view.verdict_at - view.record.job.finished_at).total_seconds()
        assert PROFILES["fast"].settle_seconds <= waited < ActionSettings().settle_seconds, story
    # rejected by a person: nothing launched
    assert (postgres.record.decision.decision, postgres.record.decision.decider) == (
        "reject",
        "carol",
    )
    assert postgres.record.job is None
    # high risk: one approver of two (mallory is no approver), so the deadline default
    # applied, and for high risk that means not run
    assert java.p.risk.value == "high"
    assert (java.record.decision.via, java.record.decision.decision) == ("deadline", "reject")
    assert java.record.job is None

    assert (result.effective, result.rejected, result.deadline_defaults) == (2, 1, 1)
    assert result.shows_the_whole_story()
    for text in (
        "approved by alice (Discord)",
        "rejected by carol (Discord)",
        "deadline default: not run",
        "effective",
    ):
        assert text in result.summary, result.summary
    assert all(v.run_state == "COMPLETED" for v in result.views), story
    assert "/v2/runs/flow-run/" in result.summary

    # everything it started is gone, stopped by PID
    assert len(result.stopped_pids) >= 4
    assert not [pid for pid in result.stopped_pids if alive(pid)]
