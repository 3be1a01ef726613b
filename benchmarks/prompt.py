"""Prompt size and cost: input tokens for 1-1,000 issues over 10,000 hosts, the cached
prefix, and Claude calls over a simulated day with and without dedup.

Tokens are counted by the sandbox Anthropic server (`sandbox.anthropic`: ceil(chars / 4)
of the rendered request — tools, system, messages — the same rule as
`core.prompt.estimate_tokens`; an estimate, not Claude's tokenizer), from the `usage` of
real Messages API calls made with the project's `ClaudeClient` (the anthropic SDK). The
sandbox caches like the API (a prefix at a `cache_control` breakpoint; minimum 1,024
tokens here, as for Sonnet) but never expires an entry.

Prompt size. Subject: `core.prompt.build_analysis_request` for 1, 10, 100 and 1,000 issues
drawn at random over 10,000 hosts (40% failed units out of 30 unit names, 25% full /var,
20% CPU, 10% memory, 5% I/O pressure), with log context for the failed units (cut at
3,000 characters) and the top processes, under the default budget (24,000 tokens).
Baseline: the same request with every issue listed on its own and no budget (what a
prompt without grouping and budget would send; counted with `count_tokens`). Each
repetition draws new issues (5 seeds); subject and baseline alternate. Cached-prefix
share: of the subject's input tokens, those read from the cache on a second identical
call (the first call writes them).

Simulated day: 96 cycles 15 minutes apart on a virtual clock, one issue that persists all
day, dedup through `clients.ledger.Ledger` on SQLite (`close_cleared`, `claim_issues`,
`confirm_reported` with `now` advanced): each cycle in which the issue is new sends the
analysis request to the sandbox. Subject: the default dedup TTL (6 h); baseline: TTL 0
(no dedup: one call per cycle). The sandbox cache is cleared before a call made more than
5 minutes (Anthropic's ephemeral TTL) of virtual time after the previous one, so every
cycle's call writes the prefix again, as it would 15 minutes apart. Cost with
`core.cost.estimate_cost` at the default model's list prices (an estimate).

Run: `.venv/bin/python -m benchmarks.prompt [--quick]` (no Prefect server needed)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import Run, alternate, compare, log, stats

FLEET = 10_000
COUNTS = (1, 10, 100, 1000)
UNITS = [f"app{i:02d}.service" for i in range(27)] + [
    "nginx.service",
    "cron.service",
    "ssh.service",
]
MIN_CACHEABLE = 1024
CACHE_TTL_S = 300
CYCLE_S = 900
CYCLES_PER_DAY = 96


def make_issues(count: int, seed: int) -> list[Any]:
    """`count` issues on distinct hosts of a 10,000-host fleet, shaped as `evaluate` makes
    them (labels, unit, operator, summary)."""
    from core.models import CheckName, Issue, Severity

    rng = random.Random(seed)
    hosts = [f"host-{i:05d}" for i in range(1, FLEET + 1)]
    now = datetime.now(UTC)
    out = []
    for host in rng.sample(hosts, count):
        base = {"instance": host, "job": "node"}
        r = rng.random()
        if r < 0.40:
            unit = rng.choice(UNITS)
            check, subject, sev, value, thr, op, u = (
                CheckName.FAILED_UNIT,
                unit,
                Severity.CRITICAL,
                1.0,
                1.0,
                "==",
                "",
            )
            labels = {**base, "name": unit, "state": "failed", "type": "simple"}
            summary = f"Unit failed: {unit}"
        elif r < 0.65:
            check, subject, sev, value, thr, op, u = (
                CheckName.DISK,
                "/var",
                Severity.CRITICAL,
                rng.uniform(90, 99),
                90.0,
                ">",
                "% used",
            )
            labels = {**base, "mountpoint": "/var", "device": "/dev/vdb1", "fstype": "xfs"}
            summary = f"Disk used on /var {value:.1f}% (> 90)"
        elif r < 0.85:
            check, subject, sev, value, thr, op, u = (
                CheckName.CPU,
                "-",
                Severity.WARNING,
                rng.uniform(90, 100),
                90.0,
                ">",
                "%",
            )
            labels = base
            summary = f"CPU used {value:.1f}% (> 90 for 5m)"
        elif r < 0.95:
            check, subject, sev, value, thr, op, u = (
                CheckName.MEMORY,
                "-",
                Severity.CRITICAL,
                rng.uniform(1, 10),
                10.0,
                "<",
                "% available",
            )
            labels = base
            summary = f"Memory available {value:.1f}% (< 10)"
        else:
            check, subject, sev, value, thr, op, u = (
                CheckName.IO_PRESSURE,
                "-",
                Severity.WARNING,
                rng.uniform(25, 60),
                25.0,
                ">",
                "% of time waiting",
            )
            labels = base
            summary = f"I/O pressure {value:.1f}% (> 25)"
        out.append(
            Issue(
                host=host,
                check=check,
                subject=subject,
                severity=sev,
                value=value,
                threshold=thr,
                operator=op,
                unit=u,
                labels=labels,
                observed_at=now,
                summary=summary,
            )
        )
    return out


def log_context(issues: list[Any]) -> Any:
    """The Loki context the cycle would build for the failed units (journal lines)."""
    from core.logs import LogSettings, format_context
    from core.wire import LogEntry, LogStream
    from sandbox.fleet_journal import unit_journal

    streams = []
    t = time.time_ns()
    for i in issues:
        if i.check.value != "failed_unit":
            continue
        lines = unit_journal(i.subject, "active", "failed", False)
        entries = [LogEntry(ts_ns=t + k, line=line) for k, line in enumerate(lines)]
        streams.append(LogStream(labels={"host": i.host, "unit": i.subject}, entries=entries))
    return format_context(streams, LogSettings())


def top_processes(issues: list[Any]) -> tuple[list[Any], list[Any]]:
    from core.detect import ProcessUsage

    hosts = sorted({i.host for i in issues})[:5]
    cpu = [ProcessUsage(host=h, process="java", value=1.5 - k * 0.1) for k, h in enumerate(hosts)]
    mem = [
        ProcessUsage(host=h, process="postgres", value=2e9 - k * 1e8) for k, h in enumerate(hosts)
    ]
    return cpu, mem


def naive_messages(request: Any, issues: list[Any]) -> list[dict[str, Any]]:
    """The subject's messages with every issue listed on its own and nothing omitted."""
    from core.prompt import _issue_entry  # the prompt's own per-issue entry

    cached, user = request.messages[0]["content"]
    head, rest = user["text"].split("<issues>\n", 1)
    after = rest.split("\n</issues>", 1)[1]
    if request.omitted_summary:
        after = after.replace("\n\n" + request.omitted_summary, "", 1)
    text = head + "<issues>\n" + json.dumps([_issue_entry(i) for i in issues], indent=0)
    text += "\n</issues>" + after
    return [{"role": "user", "content": [cached, {"type": "text", "text": text}]}]


def input_cost(usage: Any, model: str) -> float:
    """Estimated cost of the input side only (the output is the sandbox model's)."""
    from core.cost import estimate_cost

    return estimate_cost(usage.model_copy(update={"output_tokens": 0}), model)


def total_input(usage: Any) -> int:
    return usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens


async def prompt_sizes(claude: Any, server: Any, reps: int) -> dict[str, Any]:
    from core.policy import Policy
    from core.prompt import build_analysis_request

    policy = Policy()
    out: dict[str, Any] = {}
    for count in COUNTS:
        subj: list[float] = []
        naive: list[float] = []
        cached_share: list[float] = []
        estimate_gap: list[float] = []
        build_s: list[float] = []
        included: list[int] = []
        cost_cold: list[float] = []
        cost_warm: list[float] = []
        output: list[float] = []
        for rep in range(reps):
            issues = make_issues(count, seed=1000 * count + rep)
            logs = log_context(issues)
            cpu, mem = top_processes(issues)
            t = time.perf_counter()
            request = build_analysis_request(
                issues, policy=policy, logs=logs, top_cpu=cpu, top_memory=mem
            )
            build_s.append(time.perf_counter() - t)
            included.append(request.issues_included)
            call = {
                "system": request.system,
                "messages": request.messages,
                "tools": request.tools,
                "tool_choice": request.tool_choice,
            }

            for which in alternate(rep, "subject", "baseline"):
                if which == "subject":
                    server.clear_cache()
                    cold = await claude.create(**call)
                    warm = await claude.create(**call)
                    subj.append(total_input(cold.usage))
                    cached_share.append(
                        warm.usage.cache_read_input_tokens / total_input(warm.usage)
                    )
                    cost_cold.append(input_cost(cold.usage, cold.model))
                    cost_warm.append(input_cost(warm.usage, warm.model))
                    output.append(cold.usage.output_tokens)
                else:
                    naive.append(
                        await claude.count_tokens(
                            system=request.system,
                            messages=naive_messages(request, issues),
                            tools=request.tools,
                        )
                    )
            estimate_gap.append(request.estimated_tokens - subj[-1])
        out[str(count)] = {
            "input_tokens": compare(
                subj,
                naive,
                unit="tokens",
                what=f"input tokens of the analysis request, {count} issue(s) over {FLEET} hosts",
                baseline_is="the same request with every issue listed and no budget",
            ),
            "within_budget": max(subj) <= policy.prompt_token_budget,
            "budget_tokens": policy.prompt_token_budget,
            "issues_included": stats(included),
            "cached_prefix_share": stats(cached_share),
            "input_cost_usd_per_call": compare(
                cost_warm,
                cost_cold,
                unit="USD",
                what="estimated input-side cost of one call, prefix read from the cache",
                baseline_is="the same call writing the cache (first call, or after 5 min)",
            ),
            "output_tokens_sandbox_model": stats(output),
            "local_estimate_minus_server_count": stats(estimate_gap),
            "build_seconds": stats(build_s),
        }
    return out


async def simulated_day(claude: Any, server: Any, reps: int, workdir: Path) -> dict[str, Any]:
    from clients.ledger import Ledger
    from core.cost import estimate_cost
    from core.policy import Policy
    from core.prompt import build_analysis_request

    policy = Policy()
    [issue] = make_issues(1, seed=7)
    request = build_analysis_request([issue], policy=policy, logs=log_context([issue]))
    call = {
        "system": request.system,
        "messages": request.messages,
        "tools": request.tools,
        "tool_choice": request.tool_choice,
    }
    runs: dict[str, list[dict[str, Any]]] = {"dedup": [], "none": []}

    async def day(kind: str, rep: int) -> None:
        ttl = policy.dedup_ttl if kind == "dedup" else timedelta(0)
        start = datetime(2026, 11, 26, tzinfo=UTC) + timedelta(minutes=rep)
        calls, tokens, cost, in_cost, last = 0, 0, 0.0, 0.0, None
        t = time.perf_counter()
        async with Ledger(f"sqlite+aiosqlite:///{workdir}/day-{kind}-{rep}.db") as ledger:
            for k in range(CYCLES_PER_DAY):
                now = start + timedelta(seconds=k * CYCLE_S)
                seen = issue.model_copy(update={"observed_at": now})
                cycle = f"{kind}-{rep}-{k}"
                await ledger.episodes.close_cleared(
                    {issue.fingerprint},
                    checks_ok={issue.check.value},
                    hosts_up={issue.host},
                    now=now,
                )
                decision = await ledger.episodes.claim_issues(
                    [seen], cycle_id=cycle, now=now, ttl=ttl
                )
                if not decision.new:
                    continue
                if last is None or (now - last).total_seconds() > CACHE_TTL_S:
                    server.clear_cache()
                reply = await claude.create(**call)
                last = now
                calls += 1
                tokens += total_input(reply.usage)
                cost += estimate_cost(reply.usage, reply.model)
                in_cost += input_cost(reply.usage, reply.model)
                await ledger.episodes.confirm_reported([issue.fingerprint], cycle_id=cycle, now=now)
        runs[kind].append(
            {
                "claude_calls": calls,
                "input_tokens": tokens,
                "cost_usd": cost,
                "input_cost_usd": in_cost,
                "seconds": time.perf_counter() - t,
            }
        )

    for rep in range(reps):
        for kind in alternate(rep, "dedup", "none"):
            await day(kind, rep)

    def pick(kind: str, key: str) -> list[float]:
        return [r[key] for r in runs[kind]]

    return {
        "issue": issue.fingerprint,
        "cycles": CYCLES_PER_DAY,
        "dedup_ttl_s": policy.dedup_ttl_seconds,
        "claude_calls_per_day": compare(
            pick("dedup", "claude_calls"),
            pick("none", "claude_calls"),
            unit="calls",
            what="Claude calls in a day (96 cycles) with one persisting issue, dedup on",
            baseline_is="no dedup (TTL 0): one call per cycle",
            note="deterministic: the same in every repetition",
        ),
        "input_tokens_per_day": compare(
            pick("dedup", "input_tokens"),
            pick("none", "input_tokens"),
            unit="tokens",
            what="input tokens per day, dedup on",
            baseline_is="no dedup",
        ),
        "input_cost_usd_per_day": compare(
            pick("dedup", "input_cost_usd"),
            pick("none", "input_cost_usd"),
            unit="USD",
            what="estimated input-side Claude cost per day, dedup on",
            baseline_is="no dedup",
        ),
        "cost_usd_per_day": compare(
            pick("dedup", "cost_usd"),
            pick("none", "cost_usd"),
            unit="USD",
            what="estimated Claude cost per day incl. the sandbox model's output, dedup on",
            baseline_is="no dedup",
        ),
        "simulation_seconds": compare(
            pick("dedup", "seconds"),
            pick("none", "seconds"),
            what="wall time of the simulated day (ledger on SQLite + sandbox calls)",
            baseline_is="the same without dedup",
        ),
    }


async def measure(reps: int, workdir: Path) -> dict[str, Any]:
    from clients.claude import ClaudeClient, default_model
    from sandbox.anthropic import AnthropicServer
    from tests.fixtures.anthropic import ANTHROPIC_TEST_KEY

    server = AnthropicServer(api_keys=[ANTHROPIC_TEST_KEY], min_cacheable_tokens=MIN_CACHEABLE)
    server.start()
    try:
        async with ClaudeClient(
            ANTHROPIC_TEST_KEY, model=default_model(), base_url=server.url, max_retries=0
        ) as claude:
            log("prompt: sizes")
            sizes = await prompt_sizes(claude, server, reps)
            log("prompt: simulated day")
            day = await simulated_day(claude, server, reps, workdir)
    finally:
        server.stop()
    return {
        "token_counter": "sandbox Anthropic server: ceil(chars/4) of the rendered request "
        "(an estimate, not Claude's tokenizer)",
        "model_priced": default_model(),
        "prompt_sizes": sizes,
        "simulated_day": day,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="same (it takes seconds)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (seeds), default 5")
    parser.add_argument("--out", type=Path, help="results directory")
    args = parser.parse_args(argv)
    run = Run("prompt", quick=args.quick, method=__doc__.split("\n\n", 1)[1].rsplit("\n\n", 1)[0])
    run.data["repetitions"] = args.reps
    workdir = Path(tempfile.mkdtemp(prefix="bench-prompt-"))
    run.data.update(asyncio.run(measure(args.reps, workdir)))
    path = run.finish(args.out)
    log(f"prompt: wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
