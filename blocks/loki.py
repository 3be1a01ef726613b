"""Loki connection block."""

from __future__ import annotations

from pydantic import Field

from blocks.base import HttpApiBlock, reveal
from clients.loki import LokiClient


class LokiConnection(HttpApiBlock):
    """Where the fleet's logs are queried (LogQL), and how to authenticate.

    Example:
        ```python
        from blocks import LokiConnection
        loki = LokiConnection.load("fleet-loki").get_client()
        ```
    """

    _block_type_name = "Remediation Loki"
    _block_type_slug = "remediation-loki"
    _description = "Loki HTTP API used to enrich failed units with logs and to verify fixes."

    url: str = Field(description="Base URL of the Loki HTTP API, e.g. http://loki:3100.")
    tenant_id: str | None = Field(
        default=None, description="Optional tenant id, sent as the `X-Scope-OrgID` header."
    )

    def get_client(self) -> LokiClient:
        return LokiClient(
            self.url,
            tenant_id=self.tenant_id,
            bearer_token=reveal(self.bearer_token),
            basic_auth=self.basic_auth(),
            verify=self.verify_tls,
            timeout=self.timeout_seconds,
        )
