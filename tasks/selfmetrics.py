"""Publishing the self-metrics: a textfile for node_exporter, optionally a Pushgateway.

The textfile is written atomically: to a hidden temporary file in the same directory
(node_exporter's textfile collector only reads `*.prom`), flushed and fsynced, then
renamed over the target, so a scrape never sees a half-written file.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from clients.pushgateway import PushgatewayClient


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # node_exporter often runs as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@task(name="write-metrics-textfile", cache_policy=NO_CACHE, retries=0)
async def write_metrics_textfile(path: str, text: str) -> str:
    """Replace `path` with `text` atomically; returns the absolute path written."""
    target = Path(path).expanduser().resolve()
    await asyncio.to_thread(_write_atomically, target, text)
    return str(target)


@task(
    name="push-metrics",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=1,
)
async def push_metrics(url: str, job: str, text: str, timeout_seconds: float = 5.0) -> None:
    """Replace the metrics of group `job` on a Pushgateway (a PUT: a retry cannot
    double-count). Raises `PushgatewayError`."""
    async with PushgatewayClient(url, timeout=timeout_seconds) as pushgateway:
        await pushgateway.replace_group(job, text)
