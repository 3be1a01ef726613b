"""Which saved block documents a flow uses (flow parameters carry names, never secrets)."""

from __future__ import annotations

from typing import TypeVar

from prefect.blocks.core import Block
from pydantic import BaseModel, ConfigDict, Field

from core.errors import ConfigError

B = TypeVar("B", bound=Block)


class BlockNames(BaseModel):
    """Names of the block documents to load (see `remediation-blocks --help`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prometheus: str = Field(default="remediation-prometheus", description="PrometheusConnection")
    loki: str = Field(default="remediation-loki", description="LokiConnection")
    discord: str = Field(default="remediation-discord", description="DiscordBot")
    claude: str = Field(default="remediation-claude", description="ClaudeCredentials")
    awx: str | None = Field(default="remediation-awx", description="AwxConnection (optional)")
    semaphore: str | None = Field(
        default="remediation-semaphore", description="SemaphoreConnection (optional)"
    )
    ledger: str = Field(default="remediation-ledger", description="LedgerDatabase")
    policy: str | None = Field(
        default=None,
        description="RemediationPolicy (`remediation-policy apply`); None: the `policy` "
        "parameter, or the built-in defaults when that is empty too",
    )


async def load_block(cls: type[B], name: str, field: str) -> B:
    """Load a saved block; a missing or invalid one is a ConfigError naming the field."""
    try:
        return await cls.aload(name)
    except ValueError as exc:
        raise ConfigError(f"blocks.{field}", f"cannot load {cls.__name__} {name!r}: {exc}") from exc
    except RuntimeError as exc:  # failed validation of a stored document
        raise ConfigError(f"blocks.{field}", f"{cls.__name__} {name!r}: {exc}") from exc
