"""Tunables of the action flow (deployment parameters; tests shorten them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
