"""Dispatching a cycle's actions, as data and rules: the modes, what an action run is
started with, what came of it, and when a listener run must be started."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from core.models import Frozen
from core.vetting import ProposedAction

DispatchMode = Literal["auto", "deployment", "inline", "none"]
ACTION_DEPLOYMENT = "remediate-action/remediate-action"
# A scheduled listener run due this soon counts as running (it will read the new requests
# within its first poll).
LISTENER_DUE_SECONDS = 30


class DispatchResult(BaseModel):
    """What dispatching a cycle's actions did."""

    dispatched: dict[str, str] = Field(default_factory=dict, description="action id → run id")
    errors: dict[str, str] = Field(default_factory=dict)
    results: dict[str, Any] = Field(default_factory=dict)
    listener_run_id: str | None = Field(
        default=None, description="A listener run started because none was running."
    )
    seconds: float = Field(default=0.0, description="How long dispatching took.")


class ListenerRun(Frozen):
    """A listener run that is running, pending or scheduled."""

    scheduled: bool = Field(description="Scheduled, not started yet.")
    expected_start: datetime | None = None


def action_run_parameters(action: ProposedAction, options: dict[str, Any]) -> dict[str, Any]:
    """The `remediate_action` parameters of one action (the cycle's options passed on)."""
    return {
        "action": action.model_dump(mode="json"),
        "policy": options.get("policy"),
        "blocks": options.get("blocks") or {},
        "settings": options.get("settings") or {},
    }


def action_deployment(options: dict[str, Any]) -> str:
    """The `remediate_action` deployment the actions go to (`settings.deployment`)."""
    return (options.get("settings") or {}).get("deployment", ACTION_DEPLOYMENT)


def listener_covers(runs: Iterable[ListenerRun], now: datetime) -> bool:
    """True when a listener run is running or pending, or scheduled to start within
    `LISTENER_DUE_SECONDS`: it will read the new requests, so none need be started."""
    soon = now + timedelta(seconds=LISTENER_DUE_SECONDS)
    return any(
        not r.scheduled or (r.expected_start is not None and r.expected_start <= soon) for r in runs
    )


def dispatch_failed(action: ProposedAction, error: object) -> str:
    return f"dispatch of {action.catalog_key} on {action.host} failed: {error}"


def listener_not_started(deployment: str | None, error: object) -> str:
    return (
        f"could not start a listener run ({deployment}): {error}; "
        "decisions are read when the next scheduled one starts"
    )
