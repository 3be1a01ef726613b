"""Tunables of the flows (deployment parameters; tests shorten them): the action run's,
the approval listener's and the cycle's operator controls."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.deadman import DEFAULT_CYCLE_INTERVAL


class ActionSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pause_poll_seconds: float = Field(
        default=2.0, gt=0, le=2.0, description="How often a paused run checks for its resume."
    )
    pause_grace_seconds: int = Field(
        default=120,
        ge=10,
        description="Safety net past the decision deadline before Prefect's pause times out "
        "(the listener applies deadlines; this only fires when it is absent).",
    )
    job_poll_seconds: float = Field(default=20.0, gt=0, description="Job status poll interval.")
    heartbeat_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How often a live action run writes its heartbeat to the ledger (the "
        "reconciler tells a dead run from a live one by it).",
    )
    settle_seconds: float = Field(
        default=60.0, ge=0, description="Wait after the job before verifying."
    )
    ui_url: str | None = Field(
        default=None, description="Prefect UI base URL for links (default: PREFECT_UI_URL)."
    )
    deployment: str = Field(
        default="remediate-action/remediate-action",
        description="The remediate_action deployment the cycle dispatches to.",
    )
    ansible_inventory: str | None = Field(
        default=None, description="Inventory for the local Ansible runner (default: the host)."
    )
    ansible_extra_vars: dict[str, str] = Field(
        default_factory=dict, description="Extra vars added to every local Ansible run."
    )


# Tunables of the approval listener.
#
# Deployed, the listener is one bounded flow run after another, so that exactly one is
# always polling (the schedule lives in `prefect.yaml`; these are the intended values):
#
#     schedules:        - interval: 300            # a run every 5 minutes
#     concurrency_limit: {limit: 1, collision_strategy: ENQUEUE}
#     parameters:       settings: {poll_seconds: 20, run_seconds: 295}
#
# Each run loops until `run_seconds` after its *scheduled* start, i.e. until just before
# the next run is due, and never starts a poll it could not begin before then; so runs
# follow each other with no gap and no overlap. If a run overruns (a slow poll, a late
# start), ENQUEUE makes the next one wait for the slot instead of being dropped — with
# CANCEL_NEW an overrun would leave no listener for a whole interval. Run as a plain process
# (`remediation-listener`), `run_seconds` None means "until stopped" (a supervisor restarts
# it; it keeps no state of its own).
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


class OperatorSettings(BaseModel):
    """Operator-control tunables of the cycle (a deployment parameter)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cycle_interval_seconds: float = Field(
        default=DEFAULT_CYCLE_INTERVAL,
        gt=0,
        description="The cycle's schedule interval: the dead-man's switch fires when no "
        "cycle completed for twice this long.",
    )
    metrics_textfile: str | None = Field(
        default=None,
        description="Write the self-metrics here after each cycle (a *.prom file in "
        "node_exporter's --collector.textfile.directory); None: no file.",
    )
    pushgateway_url: str | None = Field(
        default=None,
        description="Also PUT the self-metrics to this Pushgateway (no credentials in the "
        "URL: parameters are not secret); None: no push.",
    )
    pushgateway_job: str = Field(
        default="prefect_remediation", min_length=1, description="The Pushgateway job label."
    )
    metrics_window_seconds: float = Field(
        default=24 * 3600,
        gt=0,
        description="Window of the approvals, jobs, verdicts and recent_* series.",
    )

    @field_validator("metrics_textfile")
    @classmethod
    def _prom_suffix(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith(".prom"):
            raise ValueError("node_exporter's textfile collector only reads *.prom files")
        return value

    @field_validator("pushgateway_url")
    @classmethod
    def _no_credentials(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("give an http(s) URL, e.g. http://pushgateway:9091")
        if parts.username or parts.password:
            raise ValueError("no credentials in the URL (flow parameters are not secret)")
        return value
