"""Prometheus connection block."""

from __future__ import annotations

from pydantic import Field

from blocks.base import HttpApiBlock, reveal
from clients.prometheus import PrometheusClient


class PrometheusConnection(HttpApiBlock):
    """Where the fleet's Prometheus answers PromQL, and how to authenticate.

    Example:
        ```python
        from blocks import PrometheusConnection
        prometheus = PrometheusConnection.load("fleet-prometheus").get_client()
        ```
    """

    _block_type_name = "Remediation Prometheus"
    _block_type_slug = "remediation-prometheus"
    _description = "Prometheus HTTP API used by the remediation cycle's eight checks."

    url: str = Field(
        description="Base URL of the Prometheus HTTP API, e.g. http://prometheus:9090."
    )

    def get_client(self) -> PrometheusClient:
        return PrometheusClient(
            self.url,
            bearer_token=reveal(self.bearer_token),
            basic_auth=self.basic_auth(),
            verify=self.verify_tls,
            timeout=self.timeout_seconds,
        )
