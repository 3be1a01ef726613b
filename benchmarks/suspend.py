"""Pending approvals paused vs suspended: memory, and decision-to-launch latency.

Both modes run the same way, in the same run: a `process` work pool, one real
`prefect worker start` (`--limit`, polling every `--worker-poll` seconds; Prefect's
default is 10 s), the `remediate-action` deployment with prefect.yaml's pull step, and
`flows.dispatch.dispatch_actions(mode="deployment")` starting one run per action (the
cycle's dispatch). Each run posts its request to the sandbox Discord and waits: paused
(its process polls Prefect every `pause_poll_seconds`) or suspended (its process ends;
the run is a database row). The policy is the test suite's scripted catalog entry, low
risk with a one-hour deadline, `wait` set per phase, caps raised for the run.

Memory, measured once every run of a phase waits (and, suspended, once the worker has no
flow-run process left): the machine's used memory (MemTotal - MemAvailable, from
/proc/meminfo) against the same reading just before the phase's dispatch, and the summed
PSS of the worker and every process it started (from /proc/<pid>/smaps_rollup). The
machine figure includes everything else running on the box (shared with other work: read
it beside the PSS sum). Paused runs are measured at `--paused` (default 10) and
extrapolated linearly to 100 (labelled so); suspended runs at `--suspended` (default 100).

Latency: `--latency` runs of each phase (each on a host of its own) are approved one at a
time with the call the listener makes to apply a decision (`PrefectRuns.resume` with
"approve"; without the listener's ledger writes, so the run records it as a Prefect UI
approve — the same path to the launch); measured from that call until
the AWX sandbox has the job's launch (polled every 50 ms in this process). Paused: the
process notices within its pause poll; suspended: the run is rescheduled, the worker
picks it up at its next poll, starts a process, re-runs the flow from the top (the
ledger says it was decided) and launches. Target: suspended ≤ worker poll + 5 s.

Run: `.venv/bin/python -m benchmarks.suspend [--paused 10] [--suspended 100]
[--latency 5] [--worker-poll 10] [--limit 10]`
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import Run, log, mib, prefect_api, pss_bytes, stats

HOSTS = [f"host-{i:04d}" for i in range(1, 11)]  # latency runs each on a host of its own
SETTINGS: dict[str, Any] = {
    "pause_poll_seconds": 2.0,
    "pause_grace_seconds": 120,
    "job_poll_seconds": 0.5,
    "settle_seconds": 0,
}
DEPLOYMENT_NAME = "bench-suspend"
SUSPEND_TARGET_MB = 100  # 100 suspended approvals add at most this much


def bench_policy(wait: str) -> dict[str, Any]:
    from core.policy import RiskRegister
    from tests.flows.actions import policy_with

    low = {**RiskRegister().low.model_dump(), "deadline_seconds": 3600, "wait": wait}
    return policy_with(
        "noop_fix",
        max_pending_approvals=500,
        max_suspended_approvals=500,
        max_actions_per_cycle=500,
        max_actions_per_host=500,
        max_running_jobs=50,
        risk={"low": low},
    )


def letters(i: int) -> str:
    """0 -> "a", 25 -> "z", 26 -> "ba": unit names the catalog's pattern [a-z.]+ allows."""
    out = ""
    while True:
        out = chr(ord("a") + i % 26) + out
        i //= 26
        if i == 0:
            return out


def used_memory() -> int:
    """MemTotal - MemAvailable, in bytes."""
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        info[key] = int(value.split()[0]) * 1024
    return info["MemTotal"] - info["MemAvailable"]


def descendants(pid: int) -> list[int]:
    from sandbox.demo_procs import descendants as found

    return list(found(pid))


def summed_pss(pid: int) -> tuple[int, int]:
    """(summed PSS of `pid` and its descendants, how many processes)."""
    pids = [pid, *descendants(pid)]
    return sum(pss_bytes(p) or 0 for p in pids), len(pids)


class WorkerProcess:
    """`prefect worker start --pool P --limit L`, polling every `poll` seconds."""

    def __init__(self, pool: str, poll: float, limit: int, log_dir: Path) -> None:
        root = Path(__file__).resolve().parents[1]
        self.log_path = log_dir / "worker.log"
        env = {
            **os.environ,
            "REMEDIATION_CHECKOUT": str(root),
            "PREFECT_WORKER_QUERY_SECONDS": str(poll),
            "PYTHONPATH": str(root),
            "PREFECT_LOGGING_LEVEL": "INFO",
        }
        prefect = str(Path(sys.executable).parent / "prefect")
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [prefect, "worker", "start", "--pool", pool, "--limit", str(limit)],
                cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def children(self) -> list[int]:
        return descendants(self.proc.pid)

    def stop(self) -> None:
        import signal

        for pid in [*self.children(), self.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)


async def wait_until(probe: Any, timeout: float, what: str, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


async def states_of(run_ids: list[str]) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    found: list[Any] = []
    async with get_client() as client:
        for i in range(0, len(run_ids), 100):
            chunk = [uuid.UUID(r) for r in run_ids[i : i + 100]]
            found += await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=len(chunk)
            )
    return [r.state for r in found]


async def phase(
    wait: str, n: int, latency_n: int, stack: Any, names: Any, worker: WorkerProcess
) -> dict[str, Any]:
    from prefect.states import Cancelled

    from clients.ledger import Ledger
    from clients.prefect_runs import PrefectRuns
    from core.policy import load_policy
    from flows.dispatch import dispatch_actions
    from tests.flows.actions import SCRIPTED_TEMPLATE, proposal

    policy = bench_policy(wait)
    tag = uuid.uuid4().hex[:6]
    actions = [
        proposal(policy, host=HOSTS[i % len(HOSTS)], unit=f"{letters(i)}.{wait}.service",
                 cycle_id=f"bench-{wait}-{tag}")
        for i in range(n)
    ]  # fmt: skip

    async def worker_idle() -> bool:
        return not worker.children()

    await wait_until(worker_idle, timeout=300, what="the worker's earlier runs to exit")
    await asyncio.sleep(3)
    before = used_memory()
    worker_before, _ = summed_pss(worker.proc.pid)
    t0 = time.monotonic()
    async with Ledger(stack.ledger_url) as ledger:
        result = await dispatch_actions(
            actions,
            mode="deployment",
            options={
                "policy": policy,
                "blocks": names.model_dump(),
                "settings": {**SETTINGS, "deployment": f"remediate-action/{DEPLOYMENT_NAME}"},
            },
            ledger=ledger,
            suspended_risks=load_policy(policy).risk.waiting("suspend"),
        )
    assert not result.errors, result.errors
    run_ids = [result.dispatched[a.action_id] for a in actions]

    async def all_waiting() -> bool:
        states = await states_of(run_ids)
        want = "Suspended" if wait == "suspend" else "Paused"
        done = sum(1 for s in states if s is not None and s.name == want)
        failed = [s.name for s in states if s is not None and s.is_final()]
        if failed:
            raise RuntimeError(f"runs ended while waiting: {failed[:5]}")
        return done == n and (wait == "pause" or not worker.children())

    await wait_until(all_waiting, timeout=60 + 15 * n, what=f"{n} runs {wait}d")
    waited_s = time.monotonic() - t0
    await asyncio.sleep(5)  # paused processes settle into their poll loop
    after = used_memory()
    pss_total, nprocs = summed_pss(worker.proc.pid)
    log(f"suspend: {n} {wait}: machine +{mib(after - before)} MiB, PSS {mib(pss_total)} MiB")

    # latency: approve one at a time, as the listener applies a decision
    latencies: list[float] = []
    breakdown: list[dict[str, float | None]] = []
    async with PrefectRuns.open() as runs:
        for a, run_id in list(zip(actions, run_ids, strict=True))[:latency_n]:
            unit = a.parameters["unit"]
            start = time.monotonic()
            answer = await runs.resume(run_id, "approve", "benchmark")
            assert answer.outcome.value == "applied", answer
            deadline = start + 180
            while not any(
                j.extra_vars.get("unit") == unit for j in stack.awx.engine.jobs(SCRIPTED_TEMPLATE)
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no launch for {run_id} in 180 s\n{worker_log(worker)}")
                await asyncio.sleep(0.05)
            latencies.append(time.monotonic() - start)
            launched_at = datetime.now(UTC)
            if wait == "suspend":
                breakdown.append(await resumed_path(runs, run_id, launched_at))
        for run_id in run_ids[latency_n:]:  # the rest: ended, as a clean-up
            if wait == "pause":
                await runs.resume(run_id, "reject", "benchmark clean-up")
            else:  # no process to tell: cancelled (a reject would start one per run)
                await runs.client.set_flow_run_state(
                    uuid.UUID(run_id), Cancelled(message="benchmark clean-up"), force=True
                )

    async def all_final() -> bool:
        return all(s is not None and s.is_final() for s in await states_of(run_ids))

    await wait_until(all_final, timeout=60 + 10 * n, what=f"{n} {wait} runs to end")
    return {
        "wait": wait,
        "pending": n,
        "seconds_until_all_waiting": round(waited_s, 1),
        "machine_used_before_mib": mib(before),
        "machine_used_waiting_mib": mib(after),
        "machine_added_mib": mib(after - before),
        "worker_tree_pss_before_mib": mib(worker_before),
        "worker_tree_pss_waiting_mib": mib(pss_total),
        "worker_tree_processes_waiting": nprocs,
        "pss_added_mib": mib(pss_total - worker_before),
        "decision_to_launch_s": stats(latencies, 3),
        "decision_to_launch_raw_s": [round(x, 3) for x in latencies],
        "suspended_path_s": breakdown,
    }


async def resumed_path(runs: Any, run_id: str, launched_at: datetime) -> dict[str, float | None]:
    """Where a resumed suspended run's time went (Prefect's state timestamps, server
    clock): resumed → picked up by the worker (Pending) → its new process running
    (Running) → the launch seen here."""
    states = await runs.client.read_flow_run_states(uuid.UUID(run_id))
    after = sorted(states, key=lambda st: st.timestamp)
    resumed = next((st for st in reversed(after) if st.name == "Resuming"), None)
    if resumed is None:
        return {}
    later = [st for st in after if st.timestamp >= resumed.timestamp]
    pending = next((st for st in later if st.type.value == "PENDING"), None)
    running = next((st for st in later if st.type.value == "RUNNING"), None)

    def gap(a: Any, b: Any) -> float | None:
        return round((b - a).total_seconds(), 2) if a is not None and b is not None else None

    return {
        "to_worker_pickup": gap(resumed.timestamp, pending and pending.timestamp),
        "to_process_running": gap(pending and pending.timestamp, running and running.timestamp),
        "flow_rerun_to_launch": gap(running and running.timestamp, launched_at),
    }


def worker_log(worker: WorkerProcess) -> str:
    try:
        return worker.log_path.read_text(errors="replace")[-3000:]
    except OSError:
        return ""


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    from benchmarks.stack import Stack
    from flows.remediate_action import remediate_action
    from tests.fixtures.workers import deploy

    stack = Stack(HOSTS, live_interval=2.0, issues=False).start()
    pool = f"bench-suspend-{uuid.uuid4().hex[:6]}"
    worker = None
    try:
        stack.awx.fleet_url = stack.prometheus.fleet_url
        stack.ledger_url = f"sqlite+aiosqlite:///{workdir}/ledger.db"
        names = await stack.save_blocks(stack.ledger_url)
        async with get_client() as client:
            await client.create_work_pool(
                WorkPoolCreate(
                    name=pool,
                    type="process",
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                )
            )
        await deploy(remediate_action, DEPLOYMENT_NAME, pool, {"blocks": names.model_dump()})
        worker = WorkerProcess(pool, args.worker_poll, args.limit, workdir)
        await asyncio.sleep(args.worker_poll + 5)  # registered and polling
        out: dict[str, Any] = {"worker_poll_seconds": args.worker_poll, "limit": args.limit}
        out["paused"] = await phase("pause", args.paused, args.latency, stack, names, worker)
        out["suspended"] = await phase(
            "suspend", args.suspended, args.latency, stack, names, worker
        )
        return out
    finally:
        if worker is not None:
            worker.stop()
        stack.stop()


def summarise(out: dict[str, Any]) -> dict[str, Any]:
    paused, suspended = out["paused"], out["suspended"]
    per_paused_pss = paused["pss_added_mib"] / paused["pending"]
    per_paused_machine = paused["machine_added_mib"] / paused["pending"]
    scale = 100 / suspended["pending"]
    suspended_100 = {
        "pss_mib": round(suspended["pss_added_mib"] * scale, 1),
        "machine_mib": round(suspended["machine_added_mib"] * scale, 1),
    }
    limit_s = out["worker_poll_seconds"] + 5
    return {
        "paused_per_approval_mib": {
            "pss": round(per_paused_pss, 1),
            "machine": round(per_paused_machine, 1),
        },
        "paused_100_mib": {
            "label": f"EXTRAPOLATED from {paused['pending']} measured paused runs to 100",
            "pss": round(per_paused_pss * 100, 1),
            "machine": round(per_paused_machine * 100, 1),
        },
        "suspended_100_mib": {
            "label": "measured"
            if suspended["pending"] == 100
            else f"EXTRAPOLATED from {suspended['pending']} suspended runs to 100",
            **suspended_100,
        },
        "target_suspended_100_mb": SUSPEND_TARGET_MB,
        "suspended_memory_target_met": max(suspended_100.values()) * 1.048576 <= SUSPEND_TARGET_MB,
        "suspend_latency_target_s": limit_s,
        "suspend_latency_target_met": suspended["decision_to_launch_s"]["median"] <= limit_s,
        "suspend_latency_p95_within_target": suspended["decision_to_launch_s"]["p95"] <= limit_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paused", type=int, default=10)
    parser.add_argument("--suspended", type=int, default=100)
    parser.add_argument("--latency", type=int, default=5)
    parser.add_argument("--worker-poll", type=float, default=10.0)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.paused, args.suspended, args.latency = 3, 20, 3
    run = Run("suspend", quick=args.quick, method=__doc__ or "")
    run.data["machine"]["load_average_before"] = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="bench-suspend-"))
    with prefect_api() as url:
        run.data["prefect_api"] = url
        out = asyncio.run(measure(args, workdir))
    run.data["results"] = out
    run.data["summary"] = summarise(out)
    path = run.finish(args.out)
    log(f"suspend: wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
