"""Shared by the reliability tests: running a cycle (with a Prometheus proxy in front if
need be), and reading what a human sees (Discord) and what the ledger holds afterwards
(every row of every table, read with sqlite3)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from sqlalchemy.engine import make_url

from blocks import PrometheusConnection
from blocks.names import BlockNames
from core.models import Issue
from core.report import CycleReport
from flows.remediation_cycle import remediation_cycle
from tests.fixtures.loki_discord import CHANNEL_ID
from tests.fixtures.stack import FAST_POLICY, NAMES, Stack, save_blocks
from tests.reliability.stand_ins import PrometheusProxy

NGINX = "web-02|failed_unit|nginx.service"
NGINX_FAILED = 'node_systemd_unit_state{instance="web-02",name="nginx.service",state="failed"} == 1'


async def cycle(
    stack: Stack,
    policy: dict[str, Any] | None = None,
    *,
    names: BlockNames | None = None,
    dispatch: str = "none",
    **kw: Any,
) -> CycleReport:
    return await remediation_cycle(
        policy=policy or FAST_POLICY, blocks=names or stack.names, dispatch=dispatch, **kw
    )


def posts(stack: Stack, title_prefix: str = "", *, channel: str = CHANNEL_ID) -> list[Any]:
    """Messages in the approvals channel whose first embed's title starts with the prefix."""
    return [
        m
        for m in stack.discord.messages(channel)
        if m.embeds and (m.embeds[0].get("title") or "").startswith(title_prefix)
    ]


def text(message: Any) -> str:
    """Everything a person reads in a message: content, titles, descriptions, fields."""
    parts = [message.content or ""]
    for e in message.embeds:
        parts += [e.get("title") or "", e.get("description") or ""]
        parts += [f"{f.get('name')}: {f.get('value')}" for f in e.get("fields") or []]
        parts.append((e.get("footer") or {}).get("text") or "")
    return "\n".join(parts)


def db_path(ledger_url: str) -> str:
    return make_url(ledger_url).database or ""


def rows(ledger_url: str, table: str) -> list[dict[str, Any]]:
    """Every row of a ledger table (SQLite), as dicts."""
    with sqlite3.connect(f"file:{db_path(ledger_url)}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(f"SELECT * FROM {table}")]


def dump(ledger_url: str) -> str:
    """The whole ledger as text (every row of every table)."""
    with sqlite3.connect(f"file:{db_path(ledger_url)}?mode=ro", uri=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return json.dumps({t: rows(ledger_url, t) for t in tables}, default=str)


async def seed_reported_episode(stack: Stack, issue: Issue) -> None:
    """An open episode reported by an earlier cycle (as if the unit had failed before)."""
    now = datetime.now(UTC)
    async with stack.ledger() as ledger:
        await ledger.episodes.claim_issues(
            [issue], cycle_id="earlier-cycle", now=now, ttl=timedelta(hours=6)
        )
        await ledger.episodes.confirm_reported(
            [issue.fingerprint], cycle_id="earlier-cycle", now=now
        )


async def open_fingerprints(stack: Stack) -> list[str]:
    async with stack.ledger() as ledger:
        return sorted(e["fingerprint"] for e in await ledger.episodes.open_episodes())


async def fresh_stack(
    *,
    prometheus: Any,
    fleet: Any,
    loki: Any,
    discord: Any,
    anthropic: Any,
    awx: Any,
    semaphore: Any,
    ledger_url: str,
) -> Stack:
    """What the `stack` fixture builds, from the session servers, for module-scoped
    fixtures (which cannot use the function-scoped one): servers reset, blocks saved
    under the stack's names, a fresh ledger. The fleet is left as it is."""
    for server in (loki, discord, anthropic, awx, semaphore):
        server.reset()
    servers = {"prometheus": prometheus, "loki": loki, "discord": discord,
               "anthropic": anthropic, "awx": awx, "semaphore": semaphore}  # fmt: skip
    await save_blocks(servers, ledger_url)
    return Stack(names=NAMES, ledger_url=ledger_url, fleet=fleet, prometheus=prometheus,
                 loki=loki, discord=discord, anthropic=anthropic, awx=awx,
                 semaphore=semaphore)  # fmt: skip


async def cycle_report_artifact(cycle_id: str) -> str:
    """The cycle report a person reads in the Prefect UI (the run's Markdown artifact)."""
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(cycle_id)]),
                key=ArtifactFilterKey(any_=["remediation-cycle-report"]),
            )
        )
    assert artifacts, f"no cycle report for {cycle_id}"
    return str(artifacts[0].data)


@asynccontextmanager
async def proxied_prometheus(stack: Stack) -> AsyncIterator[PrometheusProxy]:
    """A Prometheus in front of the real one, saved as the stack's Prometheus block."""
    server = PrometheusProxy(stack.prometheus.url).start()
    await PrometheusConnection(url=server.url, timeout_seconds=1).asave(
        stack.names.prometheus, overwrite=True
    )
    try:
        yield server
    finally:
        server.stop()
