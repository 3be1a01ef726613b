"""Approval concurrency: 1, 5 and 20 actions each approved after the same delay.

A trial is one Prefect flow run (a stand-in for the cycle's dispatch step) that calls
`flows.dispatch.dispatch_actions(mode="inline")`: one `remediate_action` subflow per
action, gathered concurrently in the process, each posting its approval request to the
sandbox Discord and pausing (`pause_poll_seconds` 2, the default). A simulated approver
reacts ✅ on each request exactly `--delay` seconds (default 20) after the request was
recorded; the approval listener (`run_listener`, poll 2 s) resumes the runs; each then
launches the AWX sandbox's scripted job (~0.3 s; job poll 0.5 s), verifies (Prometheus
re-check, Loki, the sandbox model; settle time 0) and reports. The policy is the test
suite's scripted catalog entry with the caps raised for the run: pending approvals,
actions per cycle and running jobs 25 (defaults 10, 10 and 5). Each action is on its own
host of a 20-host fleet (a real Prometheus, 6 min backfilled then scraped every 2 s).

Measured: the time from the dispatch until every action's run has ended. Baseline: the
1-action trial (its median); the chart's sequential loop (ask, wait, run, one action
after another) would take N times it. Target: 5 actions ≤ 1.1× one action. Trials of
1, 5 and 20 actions are interleaved (the order rotates each round). For each action the
reaction-to-resume latency (the Prefect state after the pause, server clock) is also
recorded, under the load of its trial.

Alongside the trials, the listener's reaction-to-resume latency at polls of 2 s and 20 s,
p50/p95: `benchmarks/listener_latency.py` run as it is (see its docstring) in a process of
its own with its own Prefect test server, so the two share only the CPU — which keeps
`make bench` within 15 minutes and makes its figures upper bounds.

Run: `.venv/bin/python -m benchmarks.approvals [--quick] [--rounds N] [--delay 20]`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import Run, log, prefect_api, server_lock_errors, stats

SIZES = (1, 5, 20)
HOSTS = [f"host-{i:04d}" for i in range(1, 21)]
TARGET_RATIO_AT_5 = 1.1
LISTENER_POLL = 2.0
SETTINGS: dict[str, Any] = {
    "pause_poll_seconds": 2.0,
    "pause_grace_seconds": 120,
    "job_poll_seconds": 0.5,
    "settle_seconds": 0,
}


def bench_policy() -> dict[str, Any]:
    from tests.flows.actions import policy_with

    caps = {"max_pending_approvals": 25, "max_actions_per_cycle": 25, "max_running_jobs": 25}
    return policy_with("noop_fix", **caps)


def build_trial_flow() -> Any:
    from prefect import flow

    from blocks.names import BlockNames
    from core.vetting import ProposedAction
    from flows.dispatch import dispatch_actions
    from tasks.connections import open_connections

    @flow(name="bench-approval-trial", retries=0)
    async def approval_trial(
        actions: list[dict[str, Any]],
        policy: dict[str, Any],
        blocks: dict[str, Any],
        settings: dict[str, Any],
    ) -> dict[str, Any]:
        proposals = [ProposedAction.model_validate(a) for a in actions]
        conns = await open_connections(BlockNames.model_validate(blocks), ("ledger",))
        async with conns:
            t = time.perf_counter()
            started = datetime.now(UTC)
            result = await dispatch_actions(
                proposals,
                mode="inline",
                options={"policy": policy, "blocks": blocks, "settings": settings},
                ledger=conns.ledger,
            )
            total = time.perf_counter() - t
        statuses = {
            k: v.get("status") if isinstance(v, dict) else getattr(v, "status", None)
            for k, v in result.results.items()
        }
        return {
            "total_s": total,
            "started_at": started.timestamp(),
            "runs": result.dispatched,
            "statuses": statuses,
            "errors": result.errors,
        }

    return approval_trial


class Approver:
    """Reacts ✅ as alice on each watched action's request, `delay` s after it was recorded.

    Polls the ledger every 0.5 s only for requests not yet seen, then sleeps until each
    one is due (so it adds next to no load of its own)."""

    def __init__(self, ledger: Any, discord: Any, delay: float) -> None:
        self.ledger, self.discord, self.delay = ledger, discord, delay
        self.watch: set[str] = set()
        self.reacted: dict[str, float] = {}  # action id -> unix time of the reaction
        self._scheduled: set[str] = set()
        self._timers: list[asyncio.Task[None]] = []
        self._stop = False

    async def _react(self, action_id: str, message_id: str, due: float) -> None:
        from tests.fixtures.loki_discord import CHANNEL_ID

        await asyncio.sleep(max(0.0, due - time.time()))
        self.discord.react(CHANNEL_ID, message_id, "✅", "alice")
        self.reacted[action_id] = time.time()

    async def run(self) -> None:
        while not self._stop:
            for action_id in sorted(self.watch - self._scheduled):
                record = await self.ledger.actions.get_action(action_id)
                req = record.request if record else None
                if req is None or req.message_id is None:
                    continue
                self._scheduled.add(action_id)
                due = req.requested_at.timestamp() + self.delay
                self._timers.append(
                    asyncio.create_task(self._react(action_id, req.message_id, due))
                )
            await asyncio.sleep(0.5)

    def stop(self) -> None:
        self._stop = True
        for timer in self._timers:
            timer.cancel()


async def timeline(run_id: str) -> dict[str, float | None]:
    """Server times (unix) of a run's first PAUSED state, the state after its last PAUSED
    one (the resume), and its final state."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    async with get_client() as client:
        states = sorted(
            await client.read_flow_run_states(uuid.UUID(run_id)), key=lambda s: s.timestamp
        )
    paused = [i for i, s in enumerate(states) if s.type == StateType.PAUSED]
    resumed = states[paused[-1] + 1] if paused and paused[-1] + 1 < len(states) else None
    return {
        "paused": states[paused[0]].timestamp.timestamp() if paused else None,
        "resumed": resumed.timestamp.timestamp() if resumed else None,
        "ended": states[-1].timestamp.timestamp() if states else None,
    }


async def concurrency(rounds: int, delay: float, workdir: Path) -> dict[str, Any]:
    from benchmarks.stack import Stack
    from clients.ledger import Ledger
    from core.policy import load_policy
    from core.settings import ListenerSettings
    from flows.approval_listener import run_listener
    from tests.flows.actions import proposal

    policy = bench_policy()
    stack = Stack(HOSTS, live_interval=2.0, issues=False).start()
    trials: list[dict[str, Any]] = []
    try:
        stack.awx.fleet_url = stack.prometheus.fleet_url
        ledger_url = f"sqlite+aiosqlite:///{workdir}/ledger.db"
        names = await stack.save_blocks(ledger_url)
        flow = build_trial_flow()
        async with Ledger(ledger_url) as ledger:
            approver = Approver(ledger, stack.discord, delay)
            stopping = False
            listener = asyncio.create_task(
                run_listener(
                    names,
                    load_policy(policy),
                    ListenerSettings(poll_seconds=LISTENER_POLL),
                    stop=lambda: stopping,
                )
            )
            approving = asyncio.create_task(approver.run())
            try:
                order = [list(SIZES[r % 3 :] + SIZES[: r % 3]) for r in range(rounds)]
                for r, sizes in enumerate(order):
                    for n in sizes:
                        cycle = f"bench-{r}-{n}-{uuid.uuid4().hex[:6]}"
                        actions = [
                            proposal(policy, host=HOSTS[i], cycle_id=cycle) for i in range(n)
                        ]
                        approver.watch |= {a.action_id for a in actions}
                        log(f"approvals: round {r + 1}/{rounds}: {n} action(s)")
                        locks = server_lock_errors()
                        out = await flow(
                            [a.model_dump(mode="json") for a in actions],
                            policy,
                            names.model_dump(),
                            SETTINGS,
                        )
                        bad = {k: v for k, v in out["statuses"].items() if v != "finished"}
                        if bad or out["errors"]:
                            raise RuntimeError(f"trial of {n}: {bad} {out['errors']}")
                        t0 = out["started_at"]
                        latencies, to_pause, after_resume = [], [], []
                        for a in actions:
                            tl = await timeline(out["runs"][a.action_id])
                            if tl["resumed"] is not None and a.action_id in approver.reacted:
                                latencies.append(tl["resumed"] - approver.reacted[a.action_id])
                            if tl["paused"] is not None:
                                to_pause.append(round(tl["paused"] - t0, 3))
                            if tl["resumed"] is not None and tl["ended"] is not None:
                                after_resume.append(round(tl["ended"] - tl["resumed"], 3))
                        waits = [approver.reacted[a.action_id] - out["started_at"] for a in actions]
                        trials.append(
                            {
                                "round": r,
                                "actions": n,
                                "total_s": round(out["total_s"], 3),
                                "reaction_to_resume_s": [round(x, 3) for x in latencies],
                                "dispatch_to_reaction_s": [round(x, 3) for x in waits],
                                "dispatch_to_paused_s": to_pause,
                                "resume_to_end_s": after_resume,
                                "prefect_server_lock_errors": None
                                if locks is None
                                else server_lock_errors() - locks,
                            }
                        )
            finally:
                stopping = True
                approver.stop()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(listener, timeout=30)
                approving.cancel()
                with contextlib.suppress(BaseException):
                    await approving
    finally:
        stack.stop()

    def totals(n: int) -> list[float]:
        return [t["total_s"] for t in trials if t["actions"] == n]

    one = stats(totals(1))
    out: dict[str, Any] = {"trials": trials, "by_actions": {}}
    for n in SIZES:
        s = stats(totals(n))
        lat = [x for t in trials if t["actions"] == n for x in t["reaction_to_resume_s"]]
        waits = [x for t in trials if t["actions"] == n for x in t["dispatch_to_reaction_s"]]
        out["by_actions"][str(n)] = {
            "total_s": s,
            "baseline_one_action_s": {k: one[k] for k in ("n", "median", "p95")},
            "ratio_to_one_median": round(s["median"] / one["median"], 3),
            "ratio_to_one_p95": round(s["p95"] / one["p95"], 3),
            "sequential_loop_model_s": round(n * one["median"], 1),
            "reaction_to_resume_s_under_load": stats(lat),
            "dispatch_to_last_reaction_s": stats(
                [max(t["dispatch_to_reaction_s"]) for t in trials if t["actions"] == n]
            ),
            "dispatch_to_reaction_s_all": stats(waits),
            "dispatch_to_paused_s": stats(
                [x for t in trials if t["actions"] == n for x in t["dispatch_to_paused_s"]]
            ),
            "resume_to_end_s": stats(
                [x for t in trials if t["actions"] == n for x in t["resume_to_end_s"]]
            ),
            "prefect_server_lock_errors_per_trial": [
                t["prefect_server_lock_errors"] for t in trials if t["actions"] == n
            ],
        }
    five = out["by_actions"]["5"]["ratio_to_one_median"]
    out["target"] = {
        "max_ratio_at_5": TARGET_RATIO_AT_5,
        "met_at_median": five <= TARGET_RATIO_AT_5,
    }
    return out


class LatencyRun:
    """`benchmarks/listener_latency.py` in a process of its own, beside the trials.

    It starts its own Prefect test server, sandbox Discord and ledger, so it shares only
    the CPU with the trials; running it alongside keeps `make bench` within its budget.
    Its figures are therefore upper bounds (the trials' busy moments can delay a poll)."""

    def __init__(self, fast: int, slow: int) -> None:
        self.fast, self.slow = fast, slow
        self.dir = Path(tempfile.mkdtemp(prefix="bench-latency-"))
        self.out = self.dir / "listener_latency.json"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> LatencyRun:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env["PREFECT_HOME"] = str(self.dir / "home")
        script = Path(__file__).with_name("listener_latency.py")
        self.started = time.monotonic()
        with (self.dir / "log.txt").open("wb") as log_file:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(script),
                    "--fast",
                    str(self.fast),
                    "--slow",
                    str(self.slow),
                    "--out",
                    str(self.out),
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        return self

    def result(self, timeout: float = 600.0) -> dict[str, Any]:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            code = "timeout"
        seconds = round(time.monotonic() - self.started, 1)
        if code != 0 or not self.out.exists():
            tail = (self.dir / "log.txt").read_text(errors="replace")[-3000:]
            return {"failed": f"exit {code} after {seconds} s", "log_tail": tail}
        result = json.loads(self.out.read_text())
        return {
            "source": "benchmarks/listener_latency.py (its own process, Prefect test server, "
            "Discord and ledger), run alongside the concurrency trials: upper bounds",
            "seconds": seconds,
            "pause_poll_s": result["pause_poll_s"],
            "summary": result["summary"],
            "samples": result["samples"],
            "method": result["method"],
        }

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 5 actions only")
    parser.add_argument("--rounds", type=int, help="rounds of 1, 5, 20 actions (default 5)")
    parser.add_argument("--delay", type=float, default=20.0, help="approval delay, s (20)")
    parser.add_argument("--fast", type=int, help="latency samples at a 2 s poll (default 5)")
    parser.add_argument("--slow", type=int, help="latency samples at a 20 s poll (default 5)")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--out", type=Path, help="results directory")
    args = parser.parse_args(argv)
    global SIZES
    if args.quick:
        SIZES = (1, 5)
    rounds = args.rounds or 5
    run = Run(
        "approvals", quick=args.quick, method=__doc__.split("\n\n", 1)[1].rsplit("\n\n", 1)[0]
    )
    run.data.update(
        {
            "rounds": rounds,
            "approval_delay_s": args.delay,
            "listener_poll_s": LISTENER_POLL,
            "action_settings": SETTINGS,
        }
    )
    if args.quick:
        run.data["skipped"] = {"20 actions": "not run with --quick"}
    workdir = Path(tempfile.mkdtemp(prefix="bench-approvals-"))
    latency = None
    if not args.skip_latency:
        fast, slow = args.fast or 5, args.slow or 5
        log(f"approvals: listener latency ({fast} at 2 s, {slow} at 20 s) alongside")
        latency = LatencyRun(fast, slow).start()
    try:
        with prefect_api():
            run.data["concurrency"] = asyncio.run(concurrency(rounds, args.delay, workdir))
        run.finish(args.out)
        if latency is None:
            run.data["listener_latency"] = {"skipped": "--skip-latency"}
        else:
            log("approvals: waiting for the listener latency run")
            run.data["listener_latency"] = latency.result()
    finally:
        if latency is not None:
            latency.stop()
    path = run.finish(args.out)
    log(f"approvals: wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
