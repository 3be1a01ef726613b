"""Domain models shared by every stage (pydantic, frozen, timezone-aware datetimes).

`CheckName` is the check registry's key enum (`core.checks`); it is re-exported here with
`Frozen` and `Severity` (`core.base`) for the modules that have always imported them here.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, field_validator

from core.base import Frozen, Severity
from core.checks import CheckName

__all__ = ["CheckName", "Frozen", "Issue", "Risk", "Severity", "fingerprint", "require_aware"]


def require_aware(value: datetime) -> datetime:
    """Reject naive datetimes: every time in this project carries its zone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware")
    return value


# What verification concludes about an action (`core.verify`).
Verdict = Literal["effective", "ineffective", "inconclusive"]


class Risk(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return {"low": 0, "medium": 1, "high": 2}[self.value]

    @staticmethod
    def max(*risks: Risk) -> Risk:
        return max(risks, key=lambda r: r.rank)


def fingerprint(host: str, check: str, subject: str) -> str:
    """The stable identity of an issue: `host|check|subject`."""
    return f"{host}|{check}|{subject}"


class Issue(Frozen):
    """One breached rule on one host, with its evidence."""

    host: str
    check: CheckName
    subject: str = Field(description="What on the host: a unit, a mountpoint, or '-'")
    severity: Severity
    value: float | None = None
    threshold: float | None = None
    operator: str | None = None
    unit: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    observed_at: datetime
    summary: str = ""

    _aware = field_validator("observed_at")(require_aware)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.host, self.check.value, self.subject)

    def evidence(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "threshold": self.threshold,
            "operator": self.operator,
            "unit": self.unit,
            "labels": self.labels,
            "observed_at": self.observed_at.isoformat(),
        }
