"""Stage 5 I/O: the re-check queries, logs since the job, and Claude's verdict."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE

from clients.errors import UpstreamError
from clients.loki import LokiClient
from clients.prometheus import PrometheusClient
from core.wire import ClaudeReply, LogStream, Sample

if TYPE_CHECKING:  # the SDK is imported only where Claude is called
    from clients.claude import ClaudeClient


@task(name="recheck-issue", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
async def recheck_issue(
    prometheus: PrometheusClient, queries: dict[str, str]
) -> tuple[dict[str, list[Sample]], list[str]]:
    """Run the re-check queries at once; failures are returned, never hidden."""
    names = list(queries)
    results = await asyncio.gather(
        *(prometheus.query(queries[n]) for n in names), return_exceptions=True
    )
    samples, errors = {}, []
    for name, result in zip(names, results, strict=True):
        if isinstance(result, UpstreamError):
            errors.append(str(result))
        elif isinstance(result, BaseException):
            raise result
        else:
            samples[name] = result
    return samples, errors


@task(name="fetch-logs-since-job", cache_policy=NO_CACHE, retries=0)
async def fetch_logs_since(
    loki: LokiClient, logql: str, start: datetime, end: datetime, limit: int = 100
) -> list[LogStream]:
    return await loki.query_range(logql, start, end, limit=limit)


@task(name="ask-claude-verdict", cache_policy=NO_CACHE, retries=0)
async def ask_verdict(claude: ClaudeClient, request: dict) -> ClaudeReply:
    return await claude.create(**request)
