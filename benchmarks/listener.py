"""The approval listener's poll cost with 100 pending approvals, and a paused run's memory.

Poll cost. Subject: one `poll_once(poller)` (`flows.approval_listener`, as `run_listener`
calls it every `poll_seconds`) with 100 actions awaiting approval — the pending-approval
cap raised to 150 for the run — each a PAUSED `remediate-action` flow run on the local
Prefect server with its request in the sandbox Discord (the bot's ✅/❌ on it, no human
reaction yet, deadlines an hour away). Baseline: the same poll by a second listener whose
ledger holds nothing pending (same Prefect server, same Discord), i.e. the poll's fixed
cost. Polls alternate (ABBA). Also counted per poll: Prefect API requests and Discord
requests.

Of the 100 paused runs, `--procs` (default 5) are real: `remediate_action` started in
processes of their own (`python -m tests.flows.launch_action_process`, as a worker would
start a deployment run), each posting its request and pausing (pause poll 2 s, heartbeat
10 s, the defaults). The rest are flow runs of the same flow put in PAUSED through the
API with the ledger records and Discord messages a real run leaves: the listener cannot
tell them apart, and 100 processes would not fit beside the other work on 2 cores.

Memory. Each real paused process's RSS and PSS (from /proc), against a process that
imported the same modules (`flows.remediate_action`) and sleeps: what a paused run adds
to its interpreter. The total for 100 paused runs is extrapolated from the measured
processes (median × 100) and labelled so.

Run: `.venv/bin/python -m benchmarks.listener [--quick] [--procs N] [--pending N]`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
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
    save_listener_blocks,
    stats,
)

SETTINGS = {"pause_poll_seconds": 2.0, "pause_grace_seconds": 600}
IDLE_SCRIPT = (
    "import sys, time\n"
    "import flows.remediate_action  # noqa: F401\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"
)


def bench_policy() -> dict[str, Any]:
    from tests.flows.actions import policy_with

    long_low = {
        "emoji": "🟢",
        "color": 0x2ECC71,
        "deadline_seconds": 3600,
        "default_at_deadline": "skip",
    }
    return policy_with(
        "noop_fix",
        max_pending_approvals=150,
        max_actions_per_cycle=150,
        risk={"low": long_low},
    )


def names(prefix: str) -> Any:
    from blocks.names import BlockNames

    return BlockNames(
        prometheus="l-prometheus",
        loki="l-loki",
        discord="l-discord",
        claude="l-claude",
        awx="l-awx",
        semaphore="l-semaphore",
        ledger=f"{prefix}-ledger",
    )


async def save_blocks(discord_api: str, ledgers: dict[str, str]) -> None:
    """One set of listener blocks per ledger (they differ only in the ledger block)."""
    for prefix, url in ledgers.items():
        await save_listener_blocks(names(prefix), discord_api, url)


def actions(policy: dict[str, Any], n: int) -> list[Any]:
    from tests.flows.actions import proposal

    tag = uuid.uuid4().hex[:6]
    return [proposal(policy, host=f"host-{i:04d}", cycle_id=f"bench-{tag}") for i in range(n)]


async def api_paused(action: Any, policy: dict[str, Any], ledger: Any, discord: Any) -> None:
    """What a paused `remediate_action` run leaves, made directly: the flow run PAUSED in
    Prefect, the request in Discord with the bot's ✅/❌, the ledger records."""
    from prefect.client.orchestration import get_client
    from prefect.states import Paused, Running

    from core.approval import APPROVE, REJECT
    from core.records import ApprovalRequest
    from flows.remediate_action import remediate_action
    from tests.fixtures.loki_discord import CHANNEL_ID

    key = f"approve-{action.action_id}"
    async with get_client() as client:
        run = await client.create_flow_run(
            remediate_action,
            name=f"{action.host}-{action.catalog_key}",
            parameters={"action": action.model_dump(mode="json"), "policy": policy},
            tags=["remediation-action", f"action:{action.action_id}"],
        )
        await client.set_flow_run_state(run.id, Running(), force=True)
        await client.set_flow_run_state(
            run.id, Paused(timeout_seconds=3600, pause_key=key), force=True
        )
    message = await discord.create_message(CHANNEL_ID, content=f"approve {action.action_id}?")
    for emoji in (APPROVE, REJECT):
        await discord.add_reaction(CHANNEL_ID, message.id, emoji)
    now = datetime.now(UTC)
    await ledger.actions.record_actions([action], now=now)
    await ledger.actions.record_approval_request(
        ApprovalRequest(
            action_id=action.action_id,
            channel_id=CHANNEL_ID,
            message_id=message.id,
            flow_run_id=str(run.id),
            risk=action.risk,
            deadline=now + timedelta(hours=1),
            policy_hash=action.policy_hash,
            requested_at=now,
            pause_key=key,
        )
    )


async def paused_count(ledger: Any, listener: Any) -> int:
    from core.records import ActionStatus

    waiting = await ledger.actions.actions_with_status(ActionStatus.AWAITING_APPROVAL)
    runs = await listener.runs.paused_action_runs(
        r.request.flow_run_id for r in waiting if r.request and r.request.flow_run_id
    )
    return len(runs)


async def measure(pending: int, procs: int, polls: int, workdir: Path) -> dict[str, Any]:
    from prefect.client.orchestration import get_client

    from benchmarks.cycle import Recorder
    from clients.discord import DiscordClient
    from clients.ledger import Ledger
    from clients.prefect_runs import PrefectRuns
    from core.policy import load_policy
    from core.settings import ListenerSettings
    from flows.approval_listener import poll_once
    from tasks.approvals import ApprovalPoller
    from tasks.connections import open_connections
    from tests.fixtures.loki_discord import BOT_TOKEN, make_discord_server

    policy = bench_policy()
    checked = load_policy(policy)
    discord_server = make_discord_server().start()
    urls = {
        "subject": f"sqlite+aiosqlite:///{workdir}/pending.db",
        "base": f"sqlite+aiosqlite:///{workdir}/empty.db",
    }
    children: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {}
    try:
        await save_blocks(discord_server.api_base, urls)
        proposals = actions(policy, pending)
        real, fake = proposals[:procs], proposals[procs:]
        # the real paused runs, each in a process of its own
        log(f"listener: starting {len(real)} remediate_action processes")
        children.extend(await asyncio.to_thread(spawn, real, policy))
        idle = children[-1]
        async with (
            Ledger(urls["subject"]) as ledger,
            Ledger(urls["base"]) as empty,
            DiscordClient(BOT_TOKEN, api_base=discord_server.api_base) as discord,
        ):
            await empty.ensure_schema()
            log(f"listener: {len(fake)} runs paused through the API")
            for a in fake:
                await api_paused(a, policy, ledger, discord)
            conns_s = await open_connections(names("subject"), ("discord", "ledger"))
            conns_b = await open_connections(names("base"), ("discord", "ledger"))
            async with conns_s, conns_b, get_client() as client:
                settings = ListenerSettings(poll_seconds=2.0)
                runs = PrefectRuns(client)
                subject = ApprovalPoller(conns_s, checked, settings, runs)
                baseline = ApprovalPoller(conns_b, checked, settings, runs)
                deadline = time.monotonic() + 300
                while (n := await paused_count(ledger, subject)) < pending:
                    dead = [c.returncode for c in children[:-1] if c.poll() is not None]
                    if dead or time.monotonic() > deadline:
                        raise RuntimeError(f"{n}/{pending} paused; exited processes: {dead}")
                    await asyncio.sleep(1.0)
                log(f"listener: {pending} runs paused; measuring memory and {polls} polls each")
                await asyncio.sleep(5)  # the processes settle into their pause loop
                assert idle.stdout is not None
                idle.stdout.readline()
                mem = [
                    {"pid": c.pid, "rss": proc_status(c.pid).get("VmRSS"), "pss": pss(c.pid)}
                    for c in children[:-1]
                ]
                idle_mem = {"rss": proc_status(idle.pid).get("VmRSS"), "pss": pss(idle.pid)}

                rec = Recorder()
                rec.wrap_prefect_api()
                times: dict[str, list[float]] = {"subject": [], "base": []}
                api: dict[str, list[int]] = {"subject": [], "base": []}
                discord_calls: dict[str, list[int]] = {"subject": [], "base": []}
                seen: dict[str, list[int]] = {"subject": [], "base": []}
                try:
                    for rep in range(polls + 1):
                        pair = alternate(rep, ("subject", subject), ("base", baseline))
                        for which, listener in pair:
                            rec.api.clear()
                            before = len(discord_server.received())
                            t = time.perf_counter()
                            poll = await poll_once(listener)
                            elapsed = time.perf_counter() - t
                            if poll.errors or poll.resumed:
                                raise RuntimeError(f"unexpected poll: {poll}")
                            if rep == 0:
                                continue  # warm-up
                            times[which].append(elapsed)
                            api[which].append(len(rec.api))
                            discord_calls[which].append(len(discord_server.received()) - before)
                            seen[which].append(poll.paused_runs)
                finally:
                    rec.restore()
        result = {
            "poll": compare(
                times["subject"],
                times["base"],
                what=f"one listener poll with {pending} pending approvals",
                baseline_is="the same poll with nothing pending (empty ledger)",
                per_pending_s=round(
                    (stats(times["subject"])["median"] - stats(times["base"])["median"]) / pending,
                    5,
                ),
            ),
            "paused_runs_seen_per_poll": stats(seen["subject"]),
            "prefect_api_requests_per_poll": compare(api["subject"], api["base"], unit="req"),
            "discord_requests_per_poll": compare(
                discord_calls["subject"], discord_calls["base"], unit="req"
            ),
            "pending": pending,
            "real_paused_processes": len(real),
            "api_paused_runs": len(fake),
            "memory": memory_summary(mem, idle_mem, pending),
        }
    finally:
        await asyncio.to_thread(stop_children, children)
        discord_server.stop()
    return result


def pss(pid: int) -> int | None:
    from benchmarks.common import pss_bytes

    return pss_bytes(pid)


def memory_summary(mem: list[dict[str, Any]], idle: dict[str, Any], pending: int) -> dict:
    rss = [m["rss"] for m in mem if m["rss"]]
    pss_ = [m["pss"] for m in mem if m["pss"]]
    out: dict[str, Any] = {
        "what": "memory of each paused remediate_action process",
        "baseline_is": "an idle process that imported flows.remediate_action",
        "per_process_mib": [{"rss": mib(m["rss"]), "pss": mib(m["pss"])} for m in mem],
        "rss_mib": stats([mib(x) for x in rss]),
        "pss_mib": stats([mib(x) for x in pss_]),
        "baseline_rss_mib": mib(idle["rss"]),
        "baseline_pss_mib": mib(idle["pss"]),
    }
    if rss:
        med_rss = stats(rss)["median"]
        med_pss = stats(pss_)["median"] if pss_ else None
        out["extrapolated_to_pending"] = {
            "label": f"EXTRAPOLATED from {len(rss)} measured processes to {pending}",
            "rss_gib": round(med_rss * pending / 1024**3, 2),
            "pss_gib": round(med_pss * pending / 1024**3, 2) if med_pss else None,
        }
        out["added_by_pausing_mib"] = {
            "rss": round(mib(med_rss) - mib(idle["rss"]), 1),
            "pss": round(mib(med_pss) - mib(idle["pss"]), 1) if med_pss and idle["pss"] else None,
        }
    return out


def spawn(real: list[Any], policy: dict[str, Any]) -> list[subprocess.Popen[bytes]]:
    """One `remediate_action` process per action, then the idle baseline process (last)."""
    out = []
    for a in real:
        params = {
            "action": a.model_dump(mode="json"),
            "policy": policy,
            "blocks": names("subject").model_dump(),
            "settings": SETTINGS,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.flows.launch_action_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(params).encode())
        proc.stdin.close()
        out.append(proc)
    out.append(
        subprocess.Popen(
            [sys.executable, "-c", IDLE_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
    )
    return out


def stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    """Close the idle process's stdin; SIGTERM the paused runs (our own PIDs), then kill."""
    for c in children:
        if c.poll() is None:
            with contextlib.suppress(OSError):
                if c.stdin is not None and not c.stdin.closed:
                    c.stdin.close()
            c.terminate()
    deadline = time.monotonic() + 15
    for c in children:
        try:
            c.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            c.kill()
            c.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 real processes, 5 polls")
    parser.add_argument("--pending", type=int, default=100, help="pending approvals (100)")
    parser.add_argument("--procs", type=int, help="real paused processes (default 5; quick 3)")
    parser.add_argument("--polls", type=int, help="polls of each listener (default 5)")
    parser.add_argument("--out", type=Path, help="results directory")
    args = parser.parse_args(argv)
    procs = args.procs if args.procs is not None else (3 if args.quick else 5)
    polls = args.polls or 5
    run = Run("listener", quick=args.quick, method=__doc__.split("\n\n", 1)[1].rsplit("\n\n", 1)[0])
    run.data["polls"] = polls
    workdir = Path(tempfile.mkdtemp(prefix="bench-listener-"))
    with prefect_api():
        run.data.update(asyncio.run(measure(args.pending, procs, polls, workdir)))
    path = run.finish(args.out)
    log(f"listener: wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
