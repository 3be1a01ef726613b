"""Stage 1 against its floor, over Debian's real Prometheus at 100, 1,000 and 10,000 hosts.

Subject: the detection stage as the cycle runs it — the `gather_checks` task (every check's
query at once), `core.detect.evaluate`, and the ledger dedup tasks
(`close_cleared_episodes`, `claim_new_issues`) — timed inside one Prefect flow run (an
async flow on a local Prefect server), on a SQLite ledger whose open episodes were already
reported (the steady state of a fleet with persisting issues: each repetition reads and
drops them). Baseline (the floor): each of the same PromQL queries issued alone, directly
with httpx (form POST to /api/v1/query, body read), one after another; the floor is the
slowest of them — no implementation can answer the checks faster than its slowest query.
A second baseline issues the same queries all at once with httpx (`asyncio.gather`, body
read): the floor that Prometheus's own CPU allows — on 2 cores the queries of a large
fleet do not run side by side, so the slowest-alone floor may be out of reach for anyone.
The three rotate order each repetition, after one warm-up of each.

Fleets: 1% of hosts have a failed nginx.service, 0.5% a 95% full /var, 0.4% a CPU at 97%
for the whole history (about 1.9 issues per 100 hosts). 100 and 1,000 hosts: 6 min of
history backfilled (so the default 5 min rate windows are full) and then scraped live,
every 2 s (100) and 5 s (1,000), by a fleet exporter in its own process, queried at
"now". 10,000 hosts: 6 min backfilled at a 15 s step, no live scrape (live at that size
costs 2-3 GB and its rate windows fill only with time), queried at the history's end.

Also: pure evaluation (`evaluate` alone) of the last answers against one bare pass over
the same samples (read the host label and the value: the least any evaluation must do);
peak RSS of this process (which runs the flow) against its RSS before the stage, and
Prometheus's RSS. Targets: subject ≤ floor + 0.25 s at 100 and 1,000 hosts, ≤ 1.2× floor
at 10,000; evaluation of 10,000 hosts < 100 ms.

Run: `.venv/bin/python -m benchmarks.stage1 [--quick] [--sizes 100,1000,10000]`
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Run,
    alternate,
    compare,
    log,
    mib,
    prefect_api,
    proc_status,
    reset_peak_rss,
    stats,
)
from benchmarks.stack import PrometheusWithHistory

LIVE_INTERVAL = {100: 2.0, 1000: 5.0}  # others: backfill only
TARGET_GAP_S = 0.25
TARGET_RATIO_10K = 1.2
TARGET_EVAL_10K_S = 0.100


def bare_pass(answers: dict[str, Any]) -> int:
    """The baseline of evaluation: touch every sample's host label and value once."""
    n = 0
    for answer in answers.values():
        for s in answer.samples or ():
            if s.labels.get("instance") is not None and s.value == s.value:
                n += 1
    return n


def build_flow() -> Any:
    import httpx
    from prefect import flow

    from clients.ledger import Ledger
    from clients.prometheus import PrometheusClient
    from core.checks import build_queries
    from core.detect import evaluate
    from core.policy import load_policy
    from tasks.detection import gather_checks
    from tasks.ledger import claim_new_issues, close_cleared_episodes

    @flow(name="bench-stage1", retries=0, log_prints=False)
    async def stage1_flow(
        prom_url: str, ledger_url: str, at_ts: float | None, reps: int, eval_reps: int
    ) -> dict[str, Any]:
        policy = load_policy(None)
        settings = policy.detection
        queries = build_queries(settings)
        at = datetime.fromtimestamp(at_ts, UTC) if at_ts is not None else None
        form_time = {"time": f"{at_ts:.3f}"} if at_ts is not None else {}
        async with (
            PrometheusClient(prom_url, timeout=120.0) as prom,
            Ledger(ledger_url) as ledger,
            httpx.AsyncClient(base_url=prom_url, timeout=120.0) as raw,
        ):
            last: dict[str, Any] = {}

            async def subject(cycle_id: str) -> dict[str, float]:
                now = datetime.now(UTC)
                t0 = time.perf_counter()
                answers = await gather_checks(prom, queries, at)
                t1 = time.perf_counter()
                detection = evaluate(settings, answers, now)
                t2 = time.perf_counter()
                current = {i.fingerprint for i in detection.issues}
                await close_cleared_episodes(
                    ledger, current, set(detection.checks_ok), set(detection.hosts_up), now
                )
                decision = await claim_new_issues(
                    ledger, detection.issues, cycle_id, now, policy.dedup_ttl
                )
                t3 = time.perf_counter()
                errors = {n: a.error for n, a in answers.items() if a.error}
                if errors:
                    raise RuntimeError(f"checks failed: {errors}")
                last.update(answers=answers, detection=detection, decision=decision)
                return {"total": t3 - t0, "gather": t1 - t0, "evaluate": t2 - t1, "dedup": t3 - t2}

            async def floor() -> dict[str, float]:
                times = {}
                for name, q in queries.items():
                    t = time.perf_counter()
                    resp = await raw.post("/api/v1/query", data={"query": q, **form_time})
                    resp.raise_for_status()
                    times[name] = time.perf_counter() - t
                return times

            # warm-up; the issues found are then reported (the steady state)
            await floor()
            await subject("warm-up")
            new = [i.fingerprint for i in last["decision"].new]
            await ledger.episodes.confirm_reported(new, cycle_id="warm-up", now=datetime.now(UTC))

            rss_before = proc_status()["VmRSS"]
            reset_peak_rss()
            subj: list[dict[str, float]] = []
            flr: list[dict[str, float]] = []
            together: list[float] = []

            async def all_at_once() -> float:
                async def one(q: str) -> None:
                    resp = await raw.post("/api/v1/query", data={"query": q, **form_time})
                    resp.raise_for_status()

                t = time.perf_counter()
                await asyncio.gather(*(one(q) for q in queries.values()))
                return time.perf_counter() - t

            await all_at_once()
            for rep in range(reps):
                cycle = f"bench-{uuid.uuid4().hex[:8]}"
                calls = [(subj, lambda c=cycle: subject(c)), (flr, floor), (together, all_at_once)]
                for into, call in calls[rep % 3 :] + calls[: rep % 3]:
                    into.append(await call())
            peak = proc_status()["VmHWM"]

            answers, detection = last["answers"], last["detection"]
            ev: list[float] = []
            bare: list[float] = []
            now = datetime.now(UTC)
            for rep in range(eval_reps):
                pair = alternate(
                    rep,
                    (ev, lambda: evaluate(settings, answers, now)),
                    (bare, lambda: bare_pass(answers)),
                )
                for into, fn in pair:
                    t = time.perf_counter()
                    fn()
                    into.append(time.perf_counter() - t)
        return {
            "subject": subj,
            "floor": flr,
            "together": together,
            "evaluate": ev,
            "bare_pass": bare,
            "rss_before": rss_before,
            "rss_peak": peak,
            "samples_per_check": {n: len(a.samples or []) for n, a in answers.items()},
            "issues": len(detection.issues),
            "dropped_as_reported": len(last["decision"].dropped),
            "new_in_timed_reps": len(last["decision"].new),
            "hosts_up": len(detection.hosts_up),
            "queries": queries,
        }

    return stage1_flow


def measure(size: int, reps: int, eval_reps: int, workdir: Path) -> dict[str, Any]:
    log(f"stage1: {size} hosts: setting up Prometheus")
    setup = PrometheusWithHistory(size, live_interval=LIVE_INTERVAL.get(size)).start()
    try:
        flow = build_flow()
        ledger_url = f"sqlite+aiosqlite:///{workdir}/ledger-{size}.db"
        at_ts = setup.at.timestamp() if setup.at else None
        log(f"stage1: {size} hosts: {reps} repetitions")
        t = time.monotonic()
        raw = asyncio.run(flow(setup.url, ledger_url, at_ts, reps, eval_reps))
        flow_s = time.monotonic() - t
        prom_rss = setup.rss_bytes()
    finally:
        setup.stop()
    totals = [s["total"] for s in raw["subject"]]
    floors = [max(f.values()) for f in raw["floor"]]
    slowest = [max(f, key=f.get) for f in raw["floor"]]
    target = (
        {"kind": "ratio", "max_ratio": TARGET_RATIO_10K}
        if size >= 10_000
        else {"kind": "gap", "max_gap_s": TARGET_GAP_S}
    )
    figure = compare(
        totals,
        floors,
        what=f"detection stage wall time at {size} hosts (gather_checks + evaluate + dedup)",
        baseline_is="slowest single raw PromQL query of the same set, issued alone with httpx",
    )
    if target["kind"] == "ratio":
        met = figure["ratio_median"] <= TARGET_RATIO_10K
    else:
        met = figure["gap_median"] <= TARGET_GAP_S
    figure["target"] = {**target, "met_at_median": met}
    out: dict[str, Any] = {
        "hosts": size,
        "data": setup.describe(),
        "setup": setup.timings,
        "stage": figure,
        "stage_vs_concurrent_raw": compare(
            totals,
            raw["together"],
            what=f"the same detection stage at {size} hosts",
            baseline_is="the same queries sent at once with httpx (no Prefect, no parsing)",
        ),
        "stage_parts_s": {
            part: stats([s[part] for s in raw["subject"]])
            for part in ("gather", "evaluate", "dedup")
        },
        "floor_parts": {
            "slowest_query_names": slowest,
            "sum_of_all_queries_alone": stats([sum(f.values()) for f in raw["floor"]]),
            "per_query_median_s": {
                n: stats([f[n] for f in raw["floor"]])["median"] for n in raw["floor"][0]
            },
        },
        "evaluation": compare(
            raw["evaluate"],
            raw["bare_pass"],
            what=f"core.detect.evaluate of the answers for {size} hosts",
            baseline_is="one bare pass over the same samples (host label and value)",
        ),
        "memory": {
            "what": "peak RSS of the process running the flow during the timed repetitions",
            "baseline_is": "its RSS just before them (everything imported, warmed up)",
            "subject_peak_rss_mib": mib(raw["rss_peak"]),
            "baseline_rss_mib": mib(raw["rss_before"]),
            "prometheus_rss_mib": mib(prom_rss),
        },
        "answers": {
            "samples_per_check": raw["samples_per_check"],
            "issues": raw["issues"],
            "dropped_as_reported": raw["dropped_as_reported"],
            "new_in_timed_reps": raw["new_in_timed_reps"],
            "hosts_up": raw["hosts_up"],
        },
        "flow_run_wall_s": round(flow_s, 1),
    }
    if size >= 10_000:
        out["evaluation"]["target"] = {
            "max_median_s": TARGET_EVAL_10K_S,
            "met_at_median": out["evaluation"]["subject"]["median"] < TARGET_EVAL_10K_S,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 hosts, 5 reps")
    parser.add_argument("--sizes", help="comma-separated host counts (default 100,1000,10000)")
    parser.add_argument("--reps", type=int, help="repetitions per size (default 7; quick 5)")
    parser.add_argument("--out", type=Path, help="results directory")
    args = parser.parse_args(argv)
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else ([100, 1000] if args.quick else [100, 1000, 10_000])
    )
    reps = args.reps or (5 if args.quick else 7)
    run = Run("stage1", quick=args.quick, method=__doc__.split("\n\n", 1)[1].rsplit("\n\n", 1)[0])
    run.data["repetitions"] = reps
    workdir = Path(tempfile.mkdtemp(prefix="bench-stage1-"))
    with prefect_api():
        run.data["sizes"] = {}
        for size in sizes:
            # 10,000 hosts: fewer repetitions (each is seconds), never under 5
            n = max(5, reps - 2) if size >= 10_000 else reps
            run.data["sizes"][str(size)] = measure(size, n, 21, workdir)
            run.finish(args.out)  # partial results survive a later failure
    if 10_000 not in sizes:
        run.data["skipped"] = {"10000": "not run in this mode (--quick or --sizes)"}
    path = run.finish(args.out)
    log(f"stage1: wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
