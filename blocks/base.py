"""What every block of this project shares."""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import SecretStr


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
