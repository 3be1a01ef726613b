"""Ledger database block."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from blocks.base import RemediationBlock, reveal
from clients.ledger import Ledger


def default_ledger_url() -> SecretStr:
    """A SQLite file under the Prefect home (shared by worker and flow processes)."""
    from prefect.settings import PREFECT_HOME

    home = Path(PREFECT_HOME.value()).expanduser()
    return SecretStr(f"sqlite+aiosqlite:///{home / 'remediation-ledger.db'}")


class LedgerDatabase(RemediationBlock):
    """The SQL database holding dedup state, actions, decisions, jobs and the audit trail.

    SQLite (default) suits one machine; use PostgreSQL
    (`postgresql+asyncpg://user:password@host:5432/db`) when workers run on several.

    Example:
        ```python
        from blocks import LedgerDatabase
        ledger = LedgerDatabase.load("remediation-ledger").get_client()
        ```
    """

    _block_type_name = "Remediation Ledger"
    _block_type_slug = "remediation-ledger"
    _description = "SQLAlchemy URL of the remediation ledger (SQLite or PostgreSQL)."

    url: SecretStr = Field(
        default_factory=default_ledger_url,
        description="SQLAlchemy async URL (sqlite+aiosqlite:/// or postgresql+asyncpg://).",
    )

    def get_client(self) -> Ledger:
        return Ledger(reveal(self.url) or "")
