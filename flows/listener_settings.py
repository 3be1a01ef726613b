"""Tunables of the approval listener."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ListenerSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    poll_seconds: float = Field(
        default=20.0,
        gt=0,
        description="Seconds between polls (20 s as in the seed chart; 2 s works).",
    )
    run_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Stop after this long (a deployed run stops just before the next one is "
        "due; None: run until stopped).",
    )
    reminder_fraction: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Remind once when this fraction of the decision window remains.",
    )
    listener_stale_seconds: float = Field(
        default=120.0,
        gt=0,
        description="Alert when no listener has polled for this long while approvals wait.",
    )
    action_heartbeat_stale_seconds: float = Field(
        default=90.0,
        gt=0,
        description="An action run whose heartbeat is older than this is presumed dead.",
    )
