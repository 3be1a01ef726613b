"""`make bench`: every benchmark, one after another, then the README table.

    .venv/bin/python -m benchmarks.run [--quick] [--only stage1,cycle,...] [--out DIR]

Starts one local Prefect server (`prefect server start`, a fresh home) for all of them —
its database on a PostgreSQL server started for the run, the setup prefect-notes
(finding D) recommends once flow runs write concurrently; SQLite with `--prefect-db
sqlite`, or, said in run.json, when PostgreSQL cannot start. Runs each benchmark as its
own process (so memory figures and Prefect's client state are per benchmark) with a time
limit, writes `benchmarks/results/<name>.json` (a benchmark that fails writes its failure
and log tail there instead — never silently) and `benchmarks/results/run.json`
(durations, machine), and regenerates the results section of `benchmarks/README.md`.
Sized for about 13-14 minutes on a quiet 2-core machine (the approval trials alone wait
15 × 20 s for their simulated approvers); on a shared box the wall time grows with the
load. `--quick` runs a subset in about half the time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, ROOT, PrefectServer, load_average, log, machine_info, now_iso
from benchmarks.postgres import start_postgres

# name, needs the Prefect server, time limit (s) full / quick. Generous limits (a loaded
# box takes twice as long); the cycle and the approval trials go first, on a fresh server.
BENCHMARKS: list[tuple[str, bool, int, int]] = [
    ("prompt", False, 180, 180),
    ("cycle", True, 300, 240),
    ("approvals", True, 1500, 720),
    ("stage1", True, 720, 360),
    ("ledger", False, 480, 240),
    ("listener", True, 480, 300),
    ("suspend", True, 2400, 900),
]


def run_one(
    name: str, quick: bool, limit: int, env: dict[str, str], out: Path, logs: Path
) -> dict[str, object]:
    cmd = [sys.executable, "-m", f"benchmarks.{name}", "--out", str(out)]
    if quick:
        cmd.append("--quick")
    log_path = logs / f"{name}.log"
    t = time.monotonic()
    with log_path.open("wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            code = proc.wait(limit)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            code = "timeout"
    seconds = round(time.monotonic() - t, 1)
    entry: dict[str, object] = {
        "name": name,
        "seconds": seconds,
        "exit": code,
        "log": str(log_path),
    }
    if code != 0:
        tail = log_path.read_text(errors="replace")[-4000:]
        (out / f"{name}.json").write_text(
            json.dumps(
                {
                    "benchmark": name,
                    "measured_at": now_iso(),
                    "failed": f"exit {code} after {seconds} s (limit {limit} s)",
                    "log_tail": tail,
                    "machine": machine_info(),
                },
                indent=2,
            )
            + "\n"
        )
        entry["log_tail"] = tail[-1500:]
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a faster subset")
    parser.add_argument("--only", help="comma-separated benchmark names")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    parser.add_argument(
        "--prefect-db",
        choices=["postgresql", "sqlite"],
        default="postgresql",
        help="the Prefect server's database (default postgresql; falls back to sqlite, "
        "saying so, if PostgreSQL cannot start)",
    )
    args = parser.parse_args(argv)
    chosen = [b for b in BENCHMARKS if not args.only or b[0] in args.only.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    started = time.monotonic()
    summary: dict[str, object] = {
        "started_at": now_iso(),
        "quick": args.quick,
        "machine": machine_info(),
        "logs": str(logs),
        "benchmarks": [],
    }
    server = None
    database = None
    env = dict(os.environ)
    try:
        if any(needs for _, needs, _, _ in chosen):
            url = None
            if args.prefect_db == "postgresql":
                try:
                    database = start_postgres()
                    url = database.create_database()
                except Exception as exc:  # noqa: BLE001 - fall back, and say so
                    summary["prefect_db_fallback"] = f"PostgreSQL could not start ({exc}): sqlite"
                    log(f"run: {summary['prefect_db_fallback']}")
            log(f"run: starting the Prefect server ({'postgresql' if url else 'sqlite'})")
            server = PrefectServer(logs / "prefect", database_url=url).start()
            summary["prefect_server_start_s"] = server.start_seconds
            summary["prefect_server_database"] = server.database
            env.update(server.env)
            env["BENCH_PREFECT_SERVER_LOG"] = str(server.child.log if server.child else "")
            env["BENCH_PREFECT_DB"] = server.database
        for name, needs, full, quick in chosen:
            log(f"run: {name}")
            entry = run_one(
                name,
                args.quick,
                quick if args.quick else full,
                env if needs else dict(os.environ),
                args.out,
                logs,
            )
            summary["benchmarks"].append(entry)  # type: ignore[union-attr]
            log(f"run: {name}: exit {entry['exit']} in {entry['seconds']} s")
        if server is not None:
            summary["prefect_server_rss_mib_at_end"] = round(server.rss() / 1024**2, 1)
    finally:
        if server is not None:
            server.stop()
        if database is not None:
            database.stop()
    summary["total_s"] = round(time.monotonic() - started, 1)
    summary["load_average_after"] = load_average()
    (args.out / "run.json").write_text(json.dumps(summary, indent=2) + "\n")
    if not args.no_readme:
        from benchmarks.report import update_readme

        update_readme(args.out)
    failed = [b for b in summary["benchmarks"] if b["exit"] != 0]  # type: ignore[union-attr]
    log(f"run: done in {summary['total_s']} s; {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
