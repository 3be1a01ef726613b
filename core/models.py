"""Domain models shared by every stage (pydantic, frozen, timezone-aware datetimes)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def require_aware(value: datetime) -> datetime:
    """Reject naive datetimes: every time in this project carries its zone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware")
    return value


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return 2 if self is Severity.CRITICAL else 1


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


class CheckName(StrEnum):
    """The signals that can raise issues (top processes are context, not issues)."""

    CPU = "cpu"
    MEMORY = "memory"
    DISK = "disk"
    IO_PRESSURE = "io_pressure"
    FAILED_UNIT = "failed_unit"
    INACTIVE_UNIT = "inactive_unit"
    HOST_DOWN = "host_down"


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
