"""Cycle overhead: a no-issue `remediation_cycle` end to end against the sum of its raw I/O.

Subject: `await remediation_cycle(blocks=..., dispatch="none")` called in this process
against a local Prefect server (`prefect server start`, SQLite) — from the call until it
returns: the flow run's creation and states, loading five blocks, the dead-man's-switch
checks, Stage 1 over a real Prometheus (100 quiet hosts: 6 min backfilled, then scraped
live every 2 s), the dedup, the report and self-metrics artifacts, the heartbeat.

Baseline: the same external I/O without Prefect — the ledger calls the cycle makes, in the
same order and with the same arguments' shapes, through `clients.ledger.Ledger` on the
same SQLite ledger (a new `Ledger` per cycle, as the cycle opens its connections), and
the nine PromQL queries at once with httpx (the cycle's `gather_checks`). One cycle and one
baseline are then re-run with every client call recorded, to check that both made the
same calls (`calls_match`); that run also counts the Prefect API requests the cycle made.
Subject and baseline alternate (ABBA) after a warm-up of each.

Prefect's share = (cycle − raw I/O) / cycle, at the medians; it also holds the project's
own Python (parsing, evaluation, the report), which `non_io_parts` bounds.

Run: `.venv/bin/python -m benchmarks.cycle [--quick] [--reps N]`
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import Run, alternate, compare, log, prefect_api
from benchmarks.stack import Stack

HOSTS = 100


class Recorder:
    """Records calls of the clients' public coroutine methods and Prefect API requests."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.api: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        self._undo: list[Callable[[], None]] = []

    def wrap_clients(self, classes: list[type]) -> None:
        for cls in classes:
            for name in dir(cls):
                fn = getattr(cls, name)
                if name.startswith("_") or name == "aclose" or not inspect.iscoroutinefunction(fn):
                    continue
                if name == "ensure_schema":
                    continue  # called by every method before its transaction
                self._patch(cls, name, self._recording(f"{cls.__name__}.{name}", fn))

    def wrap_prefect_api(self) -> None:
        from prefect.client.base import PrefectHttpxAsyncClient, PrefectHttpxSyncClient

        recorder = self

        def timed(fn: Any, is_async: bool) -> Any:
            if is_async:

                @functools.wraps(fn)
                async def send(self: Any, request: Any, *a: Any, **k: Any) -> Any:
                    t = time.perf_counter()
                    try:
                        return await fn(self, request, *a, **k)
                    finally:
                        recorder._api(request, time.perf_counter() - t)

                return send

            @functools.wraps(fn)
            def send_sync(self: Any, request: Any, *a: Any, **k: Any) -> Any:
                t = time.perf_counter()
                try:
                    return fn(self, request, *a, **k)
                finally:
                    recorder._api(request, time.perf_counter() - t)

            return send_sync

        self._patch(PrefectHttpxAsyncClient, "send", timed(PrefectHttpxAsyncClient.send, True))
        self._patch(PrefectHttpxSyncClient, "send", timed(PrefectHttpxSyncClient.send, False))

    def _api(self, request: Any, seconds: float) -> None:
        path = request.url.path.split("/api/", 1)[-1]
        parts = ["{id}" if len(p) == 36 and p.count("-") == 4 else p for p in path.split("/")]
        with self._lock:
            self.api.append((f"{request.method} /{'/'.join(parts)}", seconds))

    def _recording(self, label: str, fn: Any) -> Any:
        recorder = self

        @functools.wraps(fn)
        async def call(*a: Any, **k: Any) -> Any:
            with recorder._lock:
                recorder.calls.append(label)
            return await fn(*a, **k)

        return call

    def _patch(self, cls: type, name: str, new: Any) -> None:
        old = cls.__dict__.get(name)
        setattr(cls, name, new)
        if old is None:
            self._undo.append(lambda: delattr(cls, name))
        else:
            self._undo.append(lambda: setattr(cls, name, old))

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()


async def raw_cycle(prom_url: str, ledger_url: str, queries: dict[str, str]) -> None:
    """The no-issue cycle's external I/O, made directly, in the cycle's order."""
    import httpx

    from clients.ledger import Ledger
    from core.deadman import CYCLE_ALERT
    from core.records import ActionStatus
    from tasks.cycle import PROMETHEUS_ALERT

    now = datetime.now(UTC)
    cycle_id = f"raw-{uuid.uuid4()}"
    async with Ledger(ledger_url) as ledger, httpx.AsyncClient(base_url=prom_url) as http:
        await ledger.operations.record_cycle_start(cycle_id, flow_run_id=None, now=now)
        # the dead-man's switch, as the cycle checks it (the listener's side)
        await ledger.operations.heartbeat_detail("listener")
        await ledger.actions.actions_with_status(ActionStatus.AWAITING_APPROVAL)
        answers = await asyncio.gather(
            *(http.post("/api/v1/query", data={"query": q}) for q in queries.values())
        )
        for resp in answers:
            resp.raise_for_status()
        await ledger.operations.set_alert_state(PROMETHEUS_ALERT, firing=False, now=now, detail="")
        await ledger.episodes.close_cleared(set(), checks_ok=set(queries), hosts_up=set(), now=now)
        await ledger.episodes.claim_issues([], cycle_id=cycle_id, now=now, ttl=timedelta(hours=6))
        await ledger.operations.record_cycle_end(
            cycle_id, actions_dispatched=0, report={"outcome": "no issues"}, now=now
        )
        await ledger.operations.claim_cycle_summary(cycle_id, now=now)
        await ledger.operations.heartbeat("cycle", now=now, detail='{"stale_after_seconds": 1800}')
        await ledger.operations.set_alert_state(CYCLE_ALERT, firing=False, now=now)
        await ledger.operations.metric_facts(now=now, window=timedelta(days=1))


async def measure(reps: int, workdir: Path) -> dict[str, Any]:
    from clients.ledger import REPOSITORIES
    from clients.prometheus import PrometheusClient
    from core.checks import build_queries
    from core.policy import load_policy
    from flows.remediation_cycle import remediation_cycle

    stack = Stack(HOSTS, live_interval=2.0, issues=False).start()
    try:
        ledger_url = f"sqlite+aiosqlite:///{workdir}/ledger.db"
        names = await stack.save_blocks(ledger_url)
        prom_url = stack.prometheus.url
        queries = build_queries(load_policy(None).detection)

        async def subject() -> float:
            t = time.perf_counter()
            report = await remediation_cycle(blocks=names, dispatch="none")
            elapsed = time.perf_counter() - t
            if report.outcome.value != "no issues":
                raise RuntimeError(f"expected a no-issue cycle, got {report.outcome.value}")
            return elapsed

        async def baseline() -> float:
            t = time.perf_counter()
            await raw_cycle(prom_url, ledger_url, queries)
            return time.perf_counter() - t

        log("cycle: warm-up")
        await subject()
        await baseline()
        cycles: list[float] = []
        raws: list[float] = []
        log(f"cycle: {reps} repetitions")
        for rep in range(reps):
            for into, fn in alternate(rep, (cycles, subject), (raws, baseline)):
                into.append(await fn())

        log("cycle: recording the calls of one cycle and one baseline")
        rec = Recorder()
        rec.wrap_clients([*REPOSITORIES.values(), PrometheusClient])
        rec.wrap_prefect_api()
        try:
            await subject()
            cycle_calls, api = list(rec.calls), list(rec.api)
            rec.calls.clear()
            await baseline()
            raw_calls = list(rec.calls)
        finally:
            rec.restore()
        # the baseline sends its queries with httpx, the cycle through PrometheusClient
        raw_calls[raw_calls.index("ActionRepository.actions_with_status") + 1 : 1] = [
            "PrometheusClient.query"
        ] * len(queries)
        api_by_route: dict[str, list[float]] = {}
        for route, seconds in api:
            api_by_route.setdefault(route, []).append(seconds)
    finally:
        stack.stop()

    figure = compare(
        cycles,
        raws,
        what=f"no-issue remediation_cycle end to end (in-process call, {HOSTS} hosts)",
        baseline_is="the same ledger calls and PromQL queries made directly (no Prefect)",
    )
    share = (figure["subject"]["median"] - figure["baseline"]["median"]) / figure["subject"][
        "median"
    ]
    return {
        "cycle": figure,
        "prefect_share_at_median": round(share, 3),
        "prefect_overhead_median_s": figure["gap_median"],
        "calls_match": cycle_calls == raw_calls,
        "client_calls_per_cycle": cycle_calls,
        "prefect_api_requests_per_cycle": {
            "count": len(api),
            "total_request_seconds": round(sum(s for _, s in api), 4),
            "by_route": {
                r: {"n": len(v), "total_s": round(sum(v), 4)}
                for r, v in sorted(api_by_route.items(), key=lambda kv: -sum(kv[1]))
            },
            "note": "requests overlap (the engine's background threads), so their total "
            "may exceed the wall time they add",
        },
        "fleet": f"{HOSTS} hosts, {stack.prometheus.describe()}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 repetitions")
    parser.add_argument("--reps", type=int, help="repetitions (default 7; quick 5)")
    parser.add_argument("--out", type=Path, help="results directory")
    args = parser.parse_args(argv)
    reps = args.reps or (5 if args.quick else 7)
    run = Run("cycle", quick=args.quick, method=__doc__.split("\n\n", 1)[1].rsplit("\n\n", 1)[0])
    run.data["repetitions"] = reps
    workdir = Path(tempfile.mkdtemp(prefix="bench-cycle-"))
    with prefect_api():
        run.data.update(asyncio.run(measure(reps, workdir)))
    path = run.finish(args.out)
    log(f"cycle: wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
