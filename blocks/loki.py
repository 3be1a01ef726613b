"""Loki connection block."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from blocks.base import RemediationBlock, reveal
from clients.loki import LokiClient


class LokiConnection(RemediationBlock):
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
    bearer_token: SecretStr | None = Field(
        default=None, description="Optional bearer token sent as `Authorization: Bearer`."
    )
    basic_auth_username: str | None = Field(
        default=None, description="Optional HTTP basic-auth user name."
    )
    basic_auth_password: SecretStr | None = Field(
        default=None, description="Password for HTTP basic auth (with the user name)."
    )
    verify_tls: bool = Field(default=True, description="Verify the server's TLS certificate.")
    timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout of every request, in seconds."
    )

    @model_validator(mode="after")
    def _auth_is_complete(self) -> LokiConnection:
        if (self.basic_auth_username is None) != (self.basic_auth_password is None):
            raise ValueError("basic_auth_username and basic_auth_password go together")
        return self

    def get_client(self) -> LokiClient:
        basic = (
            (self.basic_auth_username, reveal(self.basic_auth_password) or "")
            if self.basic_auth_username
            else None
        )
        return LokiClient(
            self.url,
            tenant_id=self.tenant_id,
            bearer_token=reveal(self.bearer_token),
            basic_auth=basic,
            verify=self.verify_tls,
            timeout=self.timeout_seconds,
        )
