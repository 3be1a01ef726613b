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
approve — the same path to the launch); measured from that call until the AWX sandbox
has the job's launch (polled every 50 ms in this process). Paused: the process notices
within its pause poll; suspended: the run is rescheduled, the worker picks it up at its
next poll, starts a process, re-runs the flow from the top (the ledger says it was
decided) and launches. Target: suspended ≤ worker poll + 5 s. Each approval's timeline
comes from Prefect's state timestamps (same clock: server and benchmark share the box):
resume → Scheduled "Resuming" → Pending (the worker took it) → Running (the new process
imported Prefect and the flow and began) → the launch, with the run's own log lines
after Running; the load average is recorded beside each approval. The process-start
share is split by timing, at the same load, a fresh `python -c "import
prefect.flow_engine"` against one that also imports `flows.remediate_action`.

Memory is measured with `--paused`/`--suspended` runs; `--latency-only` skips it (each
phase dispatches just its `--latency` runs: a few minutes on a quiet box).

Run: `.venv/bin/python -m benchmarks.suspend [--paused 10] [--suspended 100]
[--latency 5] [--worker-poll 10] [--limit 10] [--latency-only]`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import PrefectServer, Run, log, mib, pss_bytes, stats

HOSTS = [f"host-{i:04d}" for i in range(1, 11)]  # latency runs each on a host of its own
SETTINGS: dict[str, Any] = {
    "pause_poll_seconds": 2.0,
    "pause_grace_seconds": 120,
    "job_poll_seconds": 0.5,
    "settle_seconds": 0,
}
DEPLOYMENT_NAME = "bench-suspend"
# The same deployment with the job variable `command` set: the worker starts the flow's
# engine directly instead of Prefect 3.9's default, a workspace supervisor process that
# imports Prefect, runs the pull step and then execs the engine (a second interpreter
# start on the critical path of a resumed suspended run).
DIRECT_DEPLOYMENT_NAME = "bench-suspend-direct"
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
    return [r.state for r in await flow_runs_of(run_ids)]


async def flow_runs_of(run_ids: list[str]) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    found: list[Any] = []
    async with get_client() as client:
        for i in range(0, len(run_ids), 100):
            chunk = [uuid.UUID(r) for r in run_ids[i : i + 100]]
            found += await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=len(chunk)
            )
    return found


async def phase(
    wait: str, n: int, latency_n: int, stack: Any, names: Any, worker: WorkerProcess,
    server_pid: int | None, deployment: str = DEPLOYMENT_NAME,
) -> dict[str, Any]:  # fmt: skip
    from prefect.states import Cancelled

    from clients.ledger import Ledger
    from clients.prefect_runs import PrefectRuns
    from core.policy import load_policy
    from flows.dispatch import dispatch_actions
    from tests.flows.actions import SCRIPTED_TEMPLATE, proposal

    policy = bench_policy(wait)
    tag = uuid.uuid4().hex[:6]
    # Each phase's units are its own: a launch is recognised by its unit.
    unit_tag = f"{wait}.{letters(int(tag, 16))}"

    def action(i: int) -> Any:
        unit = f"{letters(i)}.{unit_tag}.service"
        return proposal(policy, host=HOSTS[i % len(HOSTS)], unit=unit, cycle_id=f"bench-{tag}")

    async def dispatch(batch: list[Any]) -> list[str]:
        async with Ledger(stack.ledger_url) as ledger:
            result = await dispatch_actions(
                batch,
                mode="deployment",
                options={
                    "policy": policy,
                    "blocks": names.model_dump(),
                    "settings": {**SETTINGS, "deployment": f"remediate-action/{deployment}"},
                },
                ledger=ledger,
                suspended_risks=load_policy(policy).risk.waiting("suspend"),
            )
        assert not result.errors, result.errors
        return [result.dispatched[a.action_id] for a in batch]

    async def worker_idle() -> bool:
        return not worker.children()

    await wait_until(worker_idle, timeout=300, what="the worker's earlier runs to exit")
    await asyncio.sleep(3)
    before = used_memory()
    worker_before, _ = summed_pss(worker.proc.pid)
    server_before = summed_pss(server_pid)[0] if server_pid else None
    t0 = time.monotonic()
    actions = [action(i) for i in range(n)]
    run_ids = await dispatch(actions)
    replaced: list[str] = []

    async def all_waiting() -> bool:
        by_id = {str(r.id): r.state for r in await flow_runs_of(run_ids)}
        want = "Suspended" if wait == "suspend" else "Paused"
        done = sum(1 for st in by_id.values() if st is not None and st.name == want)
        # A run the worker could not submit (a 503 from a loaded SQLite server) is
        # Crashed before it ran: replaced by a new action, so `n` really wait.
        crashed = [i for i, r in enumerate(run_ids)
                   if (st := by_id.get(r)) is not None and st.name == "Crashed"]  # fmt: skip
        failed = [st.name for st in by_id.values() if st is not None and st.is_final()]
        if len(failed) > len(crashed):
            raise RuntimeError(f"runs ended while waiting: {failed[:5]}")
        if crashed:
            fresh = [action(n + len(replaced) + k) for k in range(len(crashed))]
            new_ids = await dispatch(fresh)
            for i, a, r in zip(crashed, fresh, new_ids, strict=True):
                replaced.append(run_ids[i])
                actions[i], run_ids[i] = a, r
            log(f"suspend: {len(crashed)} run(s) crashed at submission: replaced")
            return False
        return done == n and (wait == "pause" or not worker.children())

    await wait_until(all_waiting, timeout=60 + 15 * n, what=f"{n} runs {wait}d")
    waited_s = time.monotonic() - t0
    await asyncio.sleep(5)  # paused processes settle into their poll loop
    after = used_memory()
    pss_total, nprocs = summed_pss(worker.proc.pid)
    server_after = summed_pss(server_pid)[0] if server_pid else None
    load_waiting = [round(x, 2) for x in os.getloadavg()]
    log(f"suspend: {n} {wait}: machine +{mib(after - before)} MiB, PSS {mib(pss_total)} MiB")

    # latency: approve one at a time, as the listener applies a decision
    latencies: list[float] = []
    approved: list[tuple[str, datetime, datetime, list[float]]] = []
    async with PrefectRuns.open() as runs:
        for a, run_id in list(zip(actions, run_ids, strict=True))[:latency_n]:
            unit = a.parameters["unit"]
            load = [round(x, 2) for x in os.getloadavg()]
            resumed_at = datetime.now(UTC)
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
            approved.append((run_id, resumed_at, datetime.now(UTC), load))
            log(f"suspend: {wait} approval → launch {latencies[-1]:.1f} s at load {load[0]}")
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
    async with PrefectRuns.open() as runs:  # logs reach the API in batches: read them now
        timelines = [
            {"load_average": load, **await timeline(runs, run_id, resumed_at, launched_at)}
            for run_id, resumed_at, launched_at, load in approved
        ]
    return {
        "wait": wait,
        "deployment": deployment,
        "pending": n,
        "seconds_until_all_waiting": round(waited_s, 1),
        "crashed_at_submission_replaced": replaced,
        "load_average_waiting": load_waiting,
        "machine_used_before_mib": mib(before),
        "machine_used_waiting_mib": mib(after),
        "machine_added_mib": mib(after - before),
        "worker_tree_pss_before_mib": mib(worker_before),
        "worker_tree_pss_waiting_mib": mib(pss_total),
        "worker_tree_processes_waiting": nprocs,
        "pss_added_mib": mib(pss_total - worker_before),
        "prefect_server_pss_before_mib": mib(server_before),
        "prefect_server_pss_waiting_mib": mib(server_after),
        "prefect_server_pss_added_mib": mib(server_after - server_before)
        if server_after is not None and server_before is not None
        else None,
        "decision_to_launch_s": stats(latencies, 3),
        "decision_to_launch_raw_s": [round(x, 3) for x in latencies],
        "timelines": timelines,
    }


async def timeline(
    runs: Any, run_id: str, resumed_at: datetime, launched_at: datetime
) -> dict[str, Any]:
    """Where one approval's time went, from Prefect's state timestamps (the server's clock,
    the same box): the resume call → Scheduled "Resuming" (suspended only) → Pending (the
    worker took it) → Running (its new process imported Prefect and the flow, and began;
    a paused run goes straight to Running) → the launch seen here; and the run's log lines
    from Running to the launch (what the re-run did before launching)."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    states = await runs.client.read_flow_run_states(uuid.UUID(run_id))
    later = sorted((st for st in states if st.timestamp >= resumed_at), key=lambda st: st.timestamp)

    def first(kind: str) -> Any:
        return next((st.timestamp for st in later if st.type.value == kind), None)

    points = {
        "resumed": resumed_at,
        "scheduled": first("SCHEDULED"),
        "pending": first("PENDING"),
        "running": first("RUNNING"),
        "launched": launched_at,
    }
    seen = [(k, t) for k, t in points.items() if t is not None]
    gaps = {
        f"{a}_to_{b}": round((tb - ta).total_seconds(), 2)
        for (a, ta), (b, tb) in itertools.pairwise(seen)
    }
    running = points["running"]
    lines: list[str] = []
    if running is not None:
        logs = await runs.client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(run_id)])),
            limit=200,
        )
        lines = [
            f"+{(lg.timestamp - running).total_seconds():.2f}s {lg.message[:90]}"
            for lg in sorted(logs, key=lambda lg: lg.timestamp)
            if running <= lg.timestamp <= launched_at
        ]
    return {"gaps_s": gaps, "rerun_log": lines}


def engine_command() -> str:
    """`<this interpreter> -m prefect.engine`: what the supervisor would exec."""
    return f"{sys.executable} -m prefect.engine"


async def import_costs(reps: int = 3) -> dict[str, Any]:
    """A resumed suspended run's new process imports Prefect's engine and then our flow:
    each timed in a fresh interpreter, alternately, at the load of the moment."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    codes = {
        "workspace_supervisor": "import prefect.runner._workspace_supervisor",
        "prefect_engine": "import prefect.flow_engine",
        "prefect_engine_and_flow": "import prefect.flow_engine, flows.remediate_action",
    }
    found: dict[str, list[float]] = {k: [] for k in codes}
    load = [round(x, 2) for x in os.getloadavg()]
    for _ in range(reps):
        for name, code in codes.items():
            t = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", code, cwd=root, env=env
            )
            await proc.wait()
            found[name].append(time.monotonic() - t)
    out: dict[str, Any] = {k: stats(v, 2) for k, v in found.items()}
    out["flow_share_median_s"] = round(
        out["prefect_engine_and_flow"]["median"] - out["prefect_engine"]["median"], 2
    )
    out["load_average"] = load
    return out


def worker_log(worker: WorkerProcess) -> str:
    try:
        return worker.log_path.read_text(errors="replace")[-3000:]
    except OSError:
        return ""


async def measure(
    args: argparse.Namespace, workdir: Path, server_pid: int | None
) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate, WorkPoolCreate
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
        direct = await deploy(
            remediate_action, DIRECT_DEPLOYMENT_NAME, pool, {"blocks": names.model_dump()}
        )
        async with get_client() as client:
            await client.update_deployment(
                direct, DeploymentUpdate(job_variables={"command": engine_command()})
            )
        worker = WorkerProcess(pool, args.worker_poll, args.limit, workdir)
        await asyncio.sleep(args.worker_poll + 5)  # registered and polling
        out: dict[str, Any] = {
            "worker_poll_seconds": args.worker_poll,
            "limit": args.limit,
            "latency_only": args.latency_only,
        }
        paused_n = args.latency if args.latency_only else args.paused
        suspended_n = args.latency if args.latency_only else args.suspended
        out["paused"] = await phase(
            "pause", paused_n, args.latency, stack, names, worker, server_pid
        )
        out["suspended"] = await phase(
            "suspend", suspended_n, args.latency, stack, names, worker, server_pid
        )
        out["suspended_direct_engine"] = await phase(
            "suspend", args.latency, args.latency, stack, names, worker, server_pid,
            deployment=DIRECT_DEPLOYMENT_NAME,
        )  # fmt: skip
        out["import_seconds"] = await import_costs()
        return out
    finally:
        if worker is not None:
            worker.stop()
        stack.stop()


def summarise(out: dict[str, Any]) -> dict[str, Any]:
    paused, suspended = out["paused"], out["suspended"]
    limit_s = out["worker_poll_seconds"] + 5
    direct = out.get("suspended_direct_engine", {}).get("decision_to_launch_s", {})
    latency = {
        "suspend_latency_target_s": limit_s,
        "suspend_latency_target_met": suspended["decision_to_launch_s"]["median"] <= limit_s,
        "suspend_latency_p95_within_target": suspended["decision_to_launch_s"]["p95"] <= limit_s,
        "suspend_direct_engine_latency_target_met": direct.get("median", 1e9) <= limit_s,
        "suspend_direct_engine_p95_within_target": direct.get("p95", 1e9) <= limit_s,
    }
    if out.get("latency_only"):
        return latency
    per_paused_pss = paused["pss_added_mib"] / paused["pending"]
    per_paused_machine = paused["machine_added_mib"] / paused["pending"]
    scale = 100 / suspended["pending"]
    suspended_100 = {
        "pss_mib": round(suspended["pss_added_mib"] * scale, 1),
        "machine_mib": round(suspended["machine_added_mib"] * scale, 1),
    }
    server = suspended.get("prefect_server_pss_added_mib")
    return {
        "paused_per_approval_mib": {
            "pss": round(per_paused_pss, 1),
            "machine": round(per_paused_machine, 1),
        },
        "paused_100_mib": {
            "label": "measured"
            if paused["pending"] == 100
            else f"EXTRAPOLATED from {paused['pending']} measured paused runs to 100",
            "pss": round(per_paused_pss * 100, 1),
            "machine": round(per_paused_machine * 100, 1),
        },
        "suspended_100_mib": {
            "label": "measured"
            if suspended["pending"] == 100
            else f"EXTRAPOLATED from {suspended['pending']} suspended runs to 100",
            **suspended_100,
            "prefect_server_pss_mib": round(server * scale, 1) if server is not None else None,
        },
        "target_suspended_100_mb": SUSPEND_TARGET_MB,
        # The worker tree's PSS is what the suspended runs hold in processes; the machine
        # figure moves with everything else on a shared box (read it beside the PSS).
        "suspended_memory_target_met": suspended_100["pss_mib"] * 1.048576 <= SUSPEND_TARGET_MB,
        **latency,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paused", type=int, default=10)
    parser.add_argument("--suspended", type=int, default=100)
    parser.add_argument("--latency", type=int, default=5)
    parser.add_argument("--worker-poll", type=float, default=10.0)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="skip the memory measurement: each mode dispatches only its --latency runs",
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.paused, args.suspended, args.latency = 3, 20, 3
    name = "suspend_latency" if args.latency_only else "suspend"
    run = Run(name, quick=args.quick, method=__doc__ or "")
    run.data["machine"]["load_average_before"] = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="bench-suspend-"))
    with own_prefect_server() as (url, server_pid):
        run.data["prefect_api"] = url
        out = asyncio.run(measure(args, workdir, server_pid))
    run.data["results"] = out
    run.data["summary"] = summarise(out)
    path = run.finish(args.out)
    log(f"suspend: wrote {path}")
    return 0


@contextlib.contextmanager
def own_prefect_server() -> Iterator[tuple[str, int | None]]:
    """PREFECT_API_URL when set (no server PID: its memory is not measured), else a
    server started here, whose PSS is measured beside the worker's (suspended runs are
    rows in its database)."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        yield url, None
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = PrefectServer().start()
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            os.environ["PREFECT_API_URL"] = server.api_url  # for child processes
            yield server.api_url, server.child.pid if server.child else None
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
