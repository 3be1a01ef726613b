"""The words of the operator controls' notices: the kill switch on and off, the cycle or
the listener gone silent and back, pending approvals answered "paused by operator", and
hosts in a maintenance window."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from core.policy import Policy
from core.render import GREEN, GREY, RED, notice_message
from core.report import CycleReport
from core.wire import Embed

PAUSED_COMMENT = "paused by operator"
OPERATOR = "operator (kill switch)"


def _ts(at: datetime) -> str:
    return f"<t:{int(at.timestamp())}:R> ({at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC)"


def kill_switch_notice(engaged: bool, variable: str) -> Embed:
    """The kill switch (the Prefect Variable `variable`) went on or off."""
    if engaged:
        return notice_message(
            "⛔ Remediation paused by operator",
            f"The kill switch (Prefect Variable `{variable}`) is on: issues are still "
            "detected, but no action is proposed or launched, and pending approvals are "
            "answered \u201cpaused by operator\u201d.",
            color=RED,
        )
    return notice_message(
        "▶️ Remediation resumed",
        f"The kill switch (`{variable}`) is off: cycles propose actions again.",
        color=GREEN,
    )


def cycle_silent(last: datetime, limit_seconds: float, noticed_by: str) -> Embed:
    return notice_message(
        "💀 Remediation cycle silent",
        f"No remediation cycle has completed since {_ts(last)}; one is expected at least "
        f"every {limit_seconds:.0f} s. Check the cycle deployment's schedule, its work pool's "
        f"worker and the last cycle run in Prefect. (Noticed by the {noticed_by}.)",
        color=RED,
    )


def cycle_running_again(completed_at: datetime) -> Embed:
    return notice_message(
        "✅ Remediation cycle running again",
        f"A cycle completed {_ts(completed_at)}.",
        color=GREEN,
    )


def listener_silent(last_poll: datetime | None, waiting: int, noticed_by: str) -> Embed:
    """`last_poll` None: no listener ever polled."""
    last = f"since {_ts(last_poll)}" if last_poll else "at all"
    return notice_message(
        "💀 Approval listener silent",
        f"No approval listener has polled {last} while {waiting} approval(s) "
        "wait: reactions are not read and deadlines are not applied. Start "
        "`remediation-listener` or check the approval-listener deployment. "
        f"(Noticed by the {noticed_by}.)",
        color=RED,
    )


def listener_polling_again(polled_at: datetime) -> Embed:
    return notice_message(
        "✅ Approval listener polling again",
        f"The listener polled {_ts(polled_at)}: reactions are read and deadlines applied again.",
        color=GREEN,
    )


def pending_answered(answered: Sequence[tuple[str, str]]) -> Embed:
    """Pending approvals answered "paused by operator": (catalog key, host) of each."""
    lines = "\n".join(f"- `{key}` on {host}" for key, host in answered)
    return notice_message(
        f"⛔ Paused by operator: {len(answered)} pending approval(s) answered",
        f"Rejected with \u201c{PAUSED_COMMENT}\u201d; nothing was launched.\n{lines}",
        color=GREY,
    )


def maintenance_notices(policy: Policy, report: CycleReport, now: datetime) -> list[str]:
    """Why hosts with new issues got no action: they are in a maintenance window."""
    new = set(report.new_issues)
    hosts = sorted({i.host for i in report.issues if i.fingerprint in new})
    notices = []
    for host in hosts:
        window = policy.maintenance_for(host, now)
        if window is not None:
            notices.append(
                f"{host} is in maintenance window {window.name!r}: its issues are reported, "
                "no action is proposed for it"
            )
    return notices
