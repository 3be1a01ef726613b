"""Stage 1 I/O: the checks' queries and the Loki context."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from clients.errors import UpstreamError
from clients.loki import LokiClient
from clients.prometheus import PrometheusClient
from core.detect import CheckAnswer
from core.logs import LogContext, LogSettings, format_context, log_queries, window
from core.models import Issue


async def _one(
    prometheus: PrometheusClient, name: str, query: str, at: datetime | None
) -> CheckAnswer:
    started = time.perf_counter()
    try:
        samples = await prometheus.query(query, time=at)
        return CheckAnswer(
            check=name, query=query, samples=samples, seconds=time.perf_counter() - started
        )
    except UpstreamError as exc:
        return CheckAnswer(
            check=name, query=query, error=str(exc), seconds=time.perf_counter() - started
        )


@task(name="gather-checks", cache_policy=NO_CACHE, retries=0)
async def gather_checks(
    prometheus: PrometheusClient, queries: dict[str, str], at: datetime | None = None
) -> dict[str, CheckAnswer]:
    """Run every check's query at once: one Prometheus round trip of wall time.

    A failing query becomes an answer with an error (the others proceed); reads are
    not cached because every cycle must see fresh data."""
    answers = await asyncio.gather(*(_one(prometheus, n, q, at) for n, q in queries.items()))
    log = get_run_logger()
    for a in answers:
        if a.error:
            log.warning("check %s failed: %s", a.check, a.error)
    return {a.check: a for a in answers}


@task(name="fetch-log-context", cache_policy=NO_CACHE, retries=0)
async def fetch_log_context(
    loki: LokiClient,
    issues: Sequence[Issue],
    settings: LogSettings,
    now: datetime,
    secrets: Iterable[str] = (),
) -> LogContext:
    """Loki context for failed/inactive-unit issues; Loki down gives "logs unavailable"."""
    queries = log_queries(issues, settings)
    if not queries:
        return LogContext(status="not_needed")
    start, end = window(now, settings.lookback)
    results = await asyncio.gather(
        *(loki.query_range(q.logql, start, end, limit=q.limit) for q in queries),
        return_exceptions=True,
    )
    streams, errors = [], []
    for q, result in zip(queries, results, strict=True):
        if isinstance(result, UpstreamError):
            errors.append(f"{q.host}: {result}")
        elif isinstance(result, BaseException):
            raise result
        else:
            streams.extend(result)
    if errors:
        get_run_logger().warning("Loki enrichment degraded: %s", "; ".join(errors))
    return format_context(streams, settings, secrets=secrets, errors=errors)
