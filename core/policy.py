"""Policy: everything a deployment may tune, validated when a flow starts.

Thresholds and checks (Stage 1), log enrichment, the action catalog, the risk register,
dedup and attempt limits, capacity, maintenance windows. `policy_hash` pins the exact
policy an action was approved under (shown in Discord and recorded in the ledger).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from core.catalog import DEFAULT_CATALOG, CatalogEntry
from core.checks import DetectionSettings
from core.errors import ConfigError
from core.logs import LogSettings
from core.models import Frozen, Risk

WaitMode = Literal["pause", "suspend"]


class RiskLevel(Frozen):
    """How one risk level is asked for, waited for and decided."""

    emoji: str
    color: int = Field(ge=0, le=0xFFFFFF, description="Discord embed colour.")
    deadline_seconds: int = Field(ge=5, le=7 * 24 * 3600)
    default_at_deadline: Literal["run", "skip"]
    approvers_needed: int = Field(default=1, ge=1, le=10)
    ui_approval_allowed: bool = Field(
        default=True, description="Does an approve from the Prefect UI suffice?"
    )
    wait: WaitMode = Field(
        default="pause",
        description="pause: the run's process waits (resumes within the pause poll, "
        "~120 MiB per waiting run); suspend: the process ends and the run waits as a "
        "database row, re-run from the top by a worker on resume (README: Long waits).",
    )


class RiskRegister(Frozen):
    low: RiskLevel = RiskLevel(
        emoji="🟢", color=0x2ECC71, deadline_seconds=300, default_at_deadline="run"
    )
    medium: RiskLevel = RiskLevel(
        emoji="🟡", color=0xF1C40F, deadline_seconds=900, default_at_deadline="run"
    )
    high: RiskLevel = RiskLevel(
        emoji="🔴",
        color=0xE74C3C,
        deadline_seconds=3600,
        default_at_deadline="skip",
        approvers_needed=2,
        ui_approval_allowed=False,
        wait="suspend",
    )

    def level(self, risk: Risk) -> RiskLevel:
        return getattr(self, risk.value)

    def waiting(self, mode: WaitMode) -> list[Risk]:
        """The risks whose approvals wait in `mode`."""
        return [r for r in Risk if self.level(r).wait == mode]


class MaintenanceWindow(Frozen):
    """Hosts on which no action is proposed for a while (issues are still reported).

    Either a one-off window (`start`/`end`, ISO 8601 with zone) or a weekly recurring
    one (`weekdays` 0=Monday, `start_time`/`end_time` "HH:MM" in UTC). A weekly window
    belongs to the day it starts on: with `end_time` at or before `start_time` it runs
    past midnight into the next day (Monday 23:00-01:00 covers Monday 23:00-24:00 and
    Tuesday 00:00-01:00), and equal times mean 24 hours (00:00-00:00: the whole day)."""

    name: str
    hosts: list[str] = Field(default_factory=list)
    host_regex: str | None = None
    start: str | None = Field(default=None, description="One-off: ISO 8601 with a zone.")
    end: str | None = Field(default=None, description="One-off: ISO 8601, after `start`.")
    weekdays: list[int] = Field(
        default_factory=list,
        description="Weekly: the days a window STARTS on, 0 (Monday) to 6 (Sunday); "
        "empty: every day. A window crossing midnight runs into the next day: "
        "[0] with 23:00-01:00 covers Tuesday 00:30, not Monday 00:30.",
    )
    start_time: str | None = Field(
        default=None, description='Weekly: "HH:MM" UTC, when the window opens (inclusive).'
    )
    end_time: str | None = Field(
        default=None,
        description='Weekly: "HH:MM" UTC, when it closes (exclusive); at or before '
        "`start_time`: on the next day (equal: 24 hours after it opened).",
    )

    @field_validator("start", "end")
    @classmethod
    def _zoned(cls, value: str | None) -> str | None:
        if value is not None and datetime.fromisoformat(value).tzinfo is None:
            raise ValueError(f"{value!r} needs a time zone")
        return value

    @field_validator("start_time", "end_time")
    @classmethod
    def _utc_time(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parsed = time.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f'{value!r} is not a UTC time "HH:MM" ({exc})') from exc
        if parsed.tzinfo is not None:  # compared with UTC wall-clock time: no zone here
            raise ValueError(f'{value!r}: weekly times are UTC "HH:MM", without a zone')
        return value

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if any(d not in range(7) for d in value):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> MaintenanceWindow:
        one_off = self.start is not None and self.end is not None
        weekly = self.start_time is not None and self.end_time is not None
        if one_off == weekly:
            raise ValueError("give either start/end or start_time/end_time (weekly)")
        if one_off:
            assert self.start is not None and self.end is not None
            if datetime.fromisoformat(self.end) <= datetime.fromisoformat(self.start):
                raise ValueError("end must be after start")
            if self.weekdays:
                raise ValueError("weekdays apply to a weekly window (start_time/end_time) only")
        return self

    def applies_to(self, host: str) -> bool:
        return host in self.hosts or bool(self.host_regex and re.fullmatch(self.host_regex, host))

    def active(self, now: datetime) -> bool:
        if self.start is not None and self.end is not None:
            return datetime.fromisoformat(self.start) <= now < datetime.fromisoformat(self.end)
        assert self.start_time is not None and self.end_time is not None
        now = now.astimezone(UTC)
        opens, closes = time.fromisoformat(self.start_time), time.fromisoformat(self.end_time)
        length = datetime.combine(now.date(), closes) - datetime.combine(now.date(), opens)
        if length <= timedelta(0):  # crosses midnight (equal times: a whole 24 hours)
            length += timedelta(days=1)
        # The occurrences that could hold `now`: today's, and yesterday's running on.
        for back in (0, 1):
            day = now.date() - timedelta(days=back)
            if self.weekdays and day.weekday() not in self.weekdays:
                continue
            start = datetime.combine(day, opens, UTC)
            if start <= now < start + length:
                return True
        return False

    def covers(self, host: str, now: datetime) -> bool:
        return self.applies_to(host) and self.active(now)


class Policy(Frozen):
    """The whole decision policy of a deployment."""

    detection: DetectionSettings = Field(default_factory=DetectionSettings)
    logs: LogSettings = Field(default_factory=LogSettings)
    catalog: tuple[CatalogEntry, ...] = DEFAULT_CATALOG
    risk: RiskRegister = Field(default_factory=RiskRegister)
    protected_hosts: list[str] = Field(
        default_factory=list, description="Hosts no action may ever target."
    )
    protected_host_regex: str | None = Field(default=None)
    dedup_ttl_seconds: int = Field(default=6 * 3600, ge=60)
    attempts_per_window: int = Field(default=3, ge=1)
    attempt_window_seconds: int = Field(default=24 * 3600, ge=60)
    cooldown_seconds: int = Field(default=30 * 60, ge=0)
    relapse_seconds: int = Field(
        default=2 * 3600,
        ge=0,
        description="A return within this time after 'effective' counts as ineffective.",
    )
    max_actions_per_cycle: int = Field(default=10, ge=0)
    max_actions_per_host: int = Field(default=2, ge=1)
    max_pending_approvals: int = Field(
        default=10,
        ge=0,
        description="Actions that may await approval at once in a paused process (each is a "
        "live process of ~120 MiB), counting approved ones still waiting for their host.",
    )
    max_suspended_approvals: int = Field(
        default=500,
        ge=0,
        description="Actions that may await approval at once suspended (no process: a "
        "database row each) — risk levels with `wait: suspend`.",
    )
    max_running_jobs: int = Field(default=5, ge=1, description="Remediation jobs at once.")
    prompt_token_budget: int = Field(default=24_000, ge=2_000)
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_keys(self) -> Policy:
        keys = [e.key for e in self.catalog]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"catalog: duplicate keys {dupes}")
        return self

    def maintenance_for(self, host: str, now: datetime) -> MaintenanceWindow | None:
        return next((w for w in self.maintenance if w.covers(host, now)), None)

    def protected(self, host: str) -> bool:
        return host in self.protected_hosts or bool(
            self.protected_host_regex and re.fullmatch(self.protected_host_regex, host)
        )

    def entry(self, key: str) -> CatalogEntry | None:
        return next((e for e in self.catalog if e.key == key), None)

    @property
    def dedup_ttl(self) -> timedelta:
        return timedelta(seconds=self.dedup_ttl_seconds)


def load_policy(data: dict[str, Any] | Policy | None) -> Policy:
    """Validate policy data; a problem raises ConfigError naming the field."""
    if isinstance(data, Policy):
        return data
    try:
        return Policy.model_validate(data or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "policy." + ".".join(str(p) for p in first["loc"]) if first["loc"] else "policy"
        raise ConfigError(field, first["msg"]) from exc


def policy_hash(policy: Policy) -> str:
    """A short stable hash of the policy's canonical JSON."""
    canonical = json.dumps(policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
