"""The words of the reconciler's notices: an action expired because the run waiting for
approval died, an action continued by a fresh run, and one not continued again."""

from __future__ import annotations

from core import render
from core.liveness import MAX_CONTINUATIONS
from core.vetting import ProposedAction
from core.wire import Embed

# What the approval request's message becomes once its run died before a decision.
EXPIRED_APPROVAL = "⏱️ Expired — the run that asked died; this will not run."


def expired_message(action: ProposedAction, dead_run_id: str, dead_state: str) -> Embed:
    """The run waiting for approval died: a decision can no longer resume it."""
    return render.notice_message(
        f"⏱️ Expired: {action.catalog_key} on {action.host} did not run",
        f"The run waiting for approval died (run `{dead_run_id}`, {dead_state}), so a "
        "decision can no longer resume it. Nothing was launched; the next cycle "
        "reports the issue again if it persists.",
        color=render.GREY,
    )


def continuing_message(
    action: ProposedAction,
    dead_run_id: str,
    dead_state: str,
    *,
    job_id: str | None,
    launch_intent: bool,
) -> Embed:
    """A fresh run continues a decided action from the ledger, saying how it finds its
    job (polled, looked up by its marker, or launched once)."""
    job = (
        f"job `{job_id}` is polled"
        if job_id
        else "the job is looked up by its marker (never launched twice)"
        if launch_intent
        else "it launches once, as approved"
    )
    return render.notice_message(
        f"🔁 Continuing: {action.catalog_key} on {action.host}",
        f"The run handling this approved action died (run `{dead_run_id}`, "
        f"{dead_state}). A fresh run continues it from the ledger: {job}.",
        color=render.GREY,
    )


def gave_up_message(
    action: ProposedAction,
    dead_run_id: str,
    dead_state: str,
    *,
    job_id: str | None,
    ended_run_id: str | None = None,
    ended_state: str | None = None,
) -> Embed:
    """The action is not continued again: its runs kept dying, or the fresh run that was
    to continue it ended (`ended_run_id`) without finishing it."""
    job = f" Job `{job_id}` was launched." if job_id else ""
    why = (
        f"Its run died (`{dead_run_id}`, {dead_state}) and the run that was to continue "
        f"it ended {ended_state} (`{ended_run_id}`) without finishing it."
        if ended_run_id is not None
        else f"Its run died {MAX_CONTINUATIONS + 1} times (last: `{dead_run_id}`, {dead_state})."
    )
    return render.notice_message(
        f"🛑 Not continued again: {action.catalog_key} on {action.host}",
        f"{why}{job} Please check the runner and the host by hand.",
        color=render.RED,
    )
