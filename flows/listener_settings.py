"""Tunables of the approval listener.

Deployed, the listener is one bounded flow run after another, so that exactly one is
always polling (the schedule lives in `prefect.yaml`; these are the intended values):

    schedules:        - interval: 300            # a run every 5 minutes
    concurrency_limit: {limit: 1, collision_strategy: ENQUEUE}
    parameters:       settings: {poll_seconds: 20, run_seconds: 295}

Each run loops until `run_seconds` after its *scheduled* start, i.e. until just before
the next run is due, and never starts a poll it could not begin before then; so runs
follow each other with no gap and no overlap. If a run overruns (a slow poll, a late
start), ENQUEUE makes the next one wait for the slot instead of being dropped — with
CANCEL_NEW an overrun would leave no listener for a whole interval. Run as a plain process
(`remediation-listener`), `run_seconds` None means "until stopped" (a supervisor restarts
it; it keeps no state of its own).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEPLOYED_INTERVAL_SECONDS = 300
DEPLOYED_RUN_SECONDS = 295.0


class ListenerSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    poll_seconds: float = Field(
        default=20.0,
        gt=0,
        description="Seconds between the starts of two polls (20 s as in the seed chart; "
        "2 s works).",
    )
    run_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Stop after this long: a deployed run counts from its scheduled start "
        "and stops just before the next run is due (see the module docstring); None: run "
        "until stopped (plain process only; the flow then uses DEPLOYED_RUN_SECONDS).",
    )
    reminder_fraction: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Remind once when this fraction of the decision window remains.",
    )
    reminder_seconds: float | None = Field(
        default=None,
        ge=0,
        description="Remind once this many seconds before the deadline instead "
        "(overrides reminder_fraction).",
    )
    role_cache_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How long a Discord member's roles are reused before being asked "
        "again (bounds the guild-member calls when many people react; 0: every poll).",
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
