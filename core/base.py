"""The base of every core model, and the severity scale checks are declared with.

They live below `core.models` because the check registry (`core.checks`) needs them and
`core.models` needs the registry's `CheckName`; `core.models` re-exports both.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return 2 if self is Severity.CRITICAL else 1
