"""What every block of this project shares."""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, model_validator


def reveal(secret: SecretStr | None) -> str | None:
    """Unwrap a secret — only ever inside `get_client()`."""
    return secret.get_secret_value() if secret is not None else None


class RemediationBlock(Block):
    """Base for the project's blocks: configuration and secrets that build a client.

    Block type slugs are set explicitly on every subclass and never renamed (the slug is
    the server-side key of saved documents). Every field added later has a default, so
    documents saved by an older version keep loading.
    """

    _logo_url = None
    _documentation_url = None

    def get_client(self) -> Any:  # pragma: no cover - every subclass overrides
        raise NotImplementedError


def secret_values(block: Block) -> list[str]:
    """Every secret a block holds, so redaction can mask them wherever they appear."""
    out = []
    for name in type(block).model_fields:
        value = getattr(block, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            out.append(value.get_secret_value())
    return out


class HttpApiBlock(RemediationBlock):
    """Shared settings of an HTTP API reached with an optional bearer token or basic auth
    (Prometheus, Loki). Subclasses restate `url` with their own example."""

    url: str = Field(description="Base URL of the HTTP API.")
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
    def _auth_is_complete(self) -> HttpApiBlock:
        if (self.basic_auth_username is None) != (self.basic_auth_password is None):
            raise ValueError("basic_auth_username and basic_auth_password go together")
        if self.bearer_token is not None and self.basic_auth_username is not None:
            raise ValueError("set either bearer_token or basic auth, not both")
        return self

    def basic_auth(self) -> tuple[str, str] | None:
        """The (user, password) pair, unwrapped — only for `get_client()`."""
        if not self.basic_auth_username:
            return None
        return self.basic_auth_username, reveal(self.basic_auth_password) or ""
