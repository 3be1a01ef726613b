"""Prometheus connection block."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from blocks.base import RemediationBlock, reveal
from clients.prometheus import PrometheusClient


class PrometheusConnection(RemediationBlock):
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
    def _auth_is_complete(self) -> PrometheusConnection:
        if (self.basic_auth_username is None) != (self.basic_auth_password is None):
            raise ValueError("basic_auth_username and basic_auth_password go together")
        if self.bearer_token is not None and self.basic_auth_username is not None:
            raise ValueError("set either bearer_token or basic auth, not both")
        return self

    def get_client(self) -> PrometheusClient:
        basic = (
            (self.basic_auth_username, reveal(self.basic_auth_password) or "")
            if self.basic_auth_username
            else None
        )
        return PrometheusClient(
            self.url,
            bearer_token=reveal(self.bearer_token),
            basic_auth=basic,
            verify=self.verify_tls,
            timeout=self.timeout_seconds,
        )
