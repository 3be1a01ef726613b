"""Shared by the reconciler tests: a flow or a reconciler in a process of its own (to
SIGKILL it), and reading the action runs and heartbeats they leave behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun, StateType

from tasks.connections import Connections, open_connections
from tests.fixtures.stack import Stack

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def module_process(
    module: str, api_url: str, payload: dict[str, Any], log: Path
) -> Iterator[subprocess.Popen]:
    """`python -m module` against the harness's API, `payload` as JSON on its stdin, its
    output in `log`; killed on the way out if it still runs."""
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PREFECT_API_URL": api_url},
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(payload).encode())
        proc.stdin.close()
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


def kill_9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


@asynccontextmanager
async def listener_connections(stack: Stack) -> AsyncIterator[Connections]:
    """What the approval listener holds: Discord and the ledger."""
    conns = await open_connections(stack.names, ("discord", "ledger"))
    async with conns:
        yield conns


async def action_runs(action_id: str) -> list[FlowRun]:
    async with get_client() as client:
        return await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"action:{action_id}"]))
        )


async def run_state(run_id: str) -> StateType:
    async with get_client() as client:
        run = await client.read_flow_run(UUID(run_id))
    assert run.state is not None
    return run.state.type


async def run_is(run_id: Any, state: StateType) -> bool:
    return await run_state(str(run_id)) is state


async def heartbeat(stack: Stack, action_id: str) -> tuple[datetime, str]:
    async with stack.ledger() as ledger:
        view = (await ledger.jobs.action_liveness([action_id]))[action_id]
    assert view.heartbeat_at is not None and view.heartbeat_by is not None
    return view.heartbeat_at, view.heartbeat_by
