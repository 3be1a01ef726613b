"""Reaction-to-resume latency of the approval listener, at listener polls of 2 s and 20 s.

Each sample: a fresh `remediate_action` run pauses (pause poll 2 s) with its request in
the sandbox Discord; a listener loop with the given poll interval runs in the background;
after a random part of one poll interval (so reactions fall at every phase of the
listener's cycle) alice reacts ❌ through the sandbox. Measured, from the moment of the
reaction:

- `resume_s`: until the run left PAUSED — the timestamp of the first state after the
  PAUSED one, read back through the Prefect API (the server's own clock, same host);
- `continued_s`: until the run's code went on — the `decision` audit event the run
  writes right after its pause returns (adds up to one pause poll).

❌ is used so a sample ends without a job; the listener's path is the same for ✅.
Target: latency ≤ listener poll + pause poll + 1 s. Samples alternate between the two
intervals. Percentiles are nearest-rank. Results: benchmarks/results/listener_latency.json.

Run: `.venv/bin/python benchmarks/listener_latency.py [--fast N] [--slow N]`
(starts its own Prefect test server; about 3 minutes with the defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="listener-latency-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.objects import StateType  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from benchmarks.common import save_listener_blocks  # noqa: E402
from blocks.names import BlockNames  # noqa: E402
from clients.ledger import Ledger  # noqa: E402
from core.analysis import ModelAction  # noqa: E402
from core.models import CheckName, Issue, Severity  # noqa: E402
from core.policy import load_policy, policy_hash  # noqa: E402
from core.settings import ListenerSettings  # noqa: E402
from core.vetting import ProposedAction, vet_actions  # noqa: E402
from flows.approval_listener import run_listener  # noqa: E402
from flows.remediate_action import remediate_action  # noqa: E402
from tests.fixtures.loki_discord import (  # noqa: E402
    CHANNEL_ID,
    make_discord_server,
)

PAUSE_POLL = 2.0
NAMES = BlockNames(
    prometheus="b-prometheus",
    loki="b-loki",
    discord="b-discord",
    claude="b-claude",
    awx="b-awx",
    semaphore="b-semaphore",
    ledger="b-ledger",
)
POLICY: dict[str, Any] = {
    "catalog": [
        {
            "key": "noop_check",
            "runner": "awx",
            "template_id": 30,
            "description": "A scripted sandbox job that changes nothing.",
            "addresses": ["failed_unit"],
        }
    ],
    "cooldown_seconds": 0,
}
SETTINGS = {"pause_poll_seconds": PAUSE_POLL, "pause_grace_seconds": 600}


def proposal(n: int) -> ProposedAction:
    checked = load_policy(POLICY)
    now = datetime.now(UTC)
    issue = Issue(
        host="web-02",
        check=CheckName.FAILED_UNIT,
        subject="nginx.service",
        severity=Severity.CRITICAL,
        value=1.0,
        observed_at=now,
        summary="nginx.service failed",
    )
    [action] = vet_actions(
        [ModelAction(catalog_key="noop_check", host="web-02", risk="low")],
        [issue],
        policy=checked,
        policy_hash=policy_hash(checked),
        history={},
        pending_approvals=0,
        cycle_id=f"bench-{n}-{uuid.uuid4().hex[:6]}",
        now=now,
    ).approved
    return action


async def wait_for(probe: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)


async def sample(n: int, poll: float, discord: Any, ledger: Ledger) -> dict[str, Any]:
    action = proposal(n)
    stopping = False
    listener = asyncio.create_task(
        run_listener(
            NAMES,
            load_policy(POLICY),
            ListenerSettings(poll_seconds=poll),
            stop=lambda: stopping,
        )
    )
    run = asyncio.create_task(
        remediate_action(
            action=action.model_dump(mode="json"),
            policy=POLICY,
            blocks=NAMES,
            settings=SETTINGS,
            return_state=True,
        )
    )

    async def paused() -> Any:
        record = await ledger.actions.get_action(action.action_id)
        if not record or not record.request or not record.request.message_id:
            return None
        async with get_client() as client:
            fr = await client.read_flow_run(uuid.UUID(record.request.flow_run_id))
        return record if fr.state and fr.state.type == StateType.PAUSED else None

    record = await wait_for(paused, 120, "run paused")
    await asyncio.sleep(random.uniform(0, poll))  # any phase of the listener's cycle
    reacted = datetime.now(UTC)
    discord.react(CHANNEL_ID, record.request.message_id, "❌", "alice")
    state = await asyncio.wait_for(run, timeout=poll + 60)
    stopping = True
    await asyncio.wait_for(listener, timeout=poll + 30)
    async with get_client() as client:
        states = sorted(
            await client.read_flow_run_states(uuid.UUID(record.request.flow_run_id)),
            key=lambda s: s.timestamp,
        )
    last_pause = max(i for i, s in enumerate(states) if s.type == StateType.PAUSED)
    left = states[last_pause + 1].timestamp
    trail = await ledger.operations.audit_trail(action_id=action.action_id)
    continued = next(e["at"] for e in trail if e["event"] == "decision")
    result = await state.result()
    assert result.status == "rejected", result
    return {
        "listener_poll_s": poll,
        "pause_poll_s": PAUSE_POLL,
        "resume_s": round(left.timestamp() - reacted.timestamp(), 3),
        "continued_s": round(continued.timestamp() - reacted.timestamp(), 3),
    }


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summarize(samples: list[dict[str, Any]], poll: float) -> dict[str, Any]:
    mine = [s for s in samples if s["listener_poll_s"] == poll]
    target = poll + PAUSE_POLL + 1.0
    out: dict[str, Any] = {"n": len(mine), "target_s": target}
    for key in ("resume_s", "continued_s"):
        values = [s[key] for s in mine]
        out[key] = {
            "p50": round(statistics.median(values), 3),
            "p95": round(nearest_rank(values, 0.95), 3),
            "max": round(max(values), 3),
            "within_target": all(v <= target for v in values),
        }
    return out


async def main_async(fast: int, slow: int) -> dict[str, Any]:
    discord = make_discord_server()
    discord.start()
    workdir = Path(tempfile.mkdtemp(prefix="listener-latency-"))
    ledger_url = f"sqlite+aiosqlite:///{workdir}/ledger.db"
    await save_listener_blocks(NAMES, discord.api_base, ledger_url)
    order = _interleave(fast, slow)
    samples = []
    async with Ledger(ledger_url) as ledger:
        try:
            for n, poll in enumerate(order):
                s = await sample(n, poll, discord, ledger)
                print(json.dumps(s), flush=True)
                samples.append(s)
        finally:
            discord.stop()
    return {
        "what": "reaction-to-resume latency of the approval listener",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "method": " ".join(__doc__.split("\n\n")[1:4]).replace("\n", " "),
        "pause_poll_s": PAUSE_POLL,
        "summary": {"2": summarize(samples, 2.0), "20": summarize(samples, 20.0)},
        "samples": samples,
    }


def _interleave(fast: int, slow: int) -> list[float]:
    """`fast` 2 s and `slow` 20 s samples, the slow ones spread evenly."""
    order: list[float] = []
    every = max(1, round((fast + slow) / max(slow, 1)))
    f, s = fast, slow
    while f or s:
        if s and (len(order) % every == every - 1 or not f):
            order.append(20.0)
            s -= 1
        else:
            order.append(2.0)
            f -= 1
    return order


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", type=int, default=8, help="samples at a 2 s listener poll")
    parser.add_argument("--slow", type=int, default=4, help="samples at a 20 s listener poll")
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "listener_latency.json")
    )
    args = parser.parse_args()
    with prefect_test_harness(server_startup_timeout=90):
        result = asyncio.run(main_async(args.fast, args.slow))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
