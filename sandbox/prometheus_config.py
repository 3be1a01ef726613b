"""The Prometheus side of the sandbox: finding the binaries and writing the scrape config.

One target per fleet host, blackbox-exporter style: the target address is the host
name, relabelled into `__param_target` (so the scrape asks `/metrics?target=HOST`) and
`instance`, while `__address__` becomes the fleet exporter. Each host thus gets its own
`instance` label and its own real `up` series.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from typing import Any

JOB = "node"


class PrometheusNotInstalled(RuntimeError):
    """The `prometheus` (or `promtool`) binary is not on PATH."""


def find_binary(name: str = "prometheus") -> str:
    """Absolute path of a Prometheus binary, or a clear error saying how to get it."""
    path = shutil.which(name)
    if path is None:
        raise PrometheusNotInstalled(
            f"`{name}` not found on PATH; install Debian's package: apt-get install prometheus"
        )
    return path


def duration(seconds: float) -> str:
    """A Prometheus duration string (whole milliseconds)."""
    return f"{max(1, round(seconds * 1000))}ms"


def scrape_config(
    targets: Sequence[str],
    exporter: str,
    *,
    scrape_interval: float = 1.0,
    scrape_timeout: float | None = None,
    job: str = JOB,
) -> dict[str, Any]:
    """A Prometheus config scraping `exporter` (host:port) once per target host."""
    timeout = min(scrape_interval, scrape_timeout or 10.0)
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": duration(scrape_interval),
            "scrape_timeout": duration(timeout),
            "evaluation_interval": duration(max(scrape_interval, 1.0)),
        },
        "scrape_configs": [],
    }
    if targets:
        config["scrape_configs"].append(
            {
                "job_name": job,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": list(targets)}],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__address__"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": exporter},
                ],
            }
        )
    return config
