"""The words of the cycle's own notices: Prometheus unreachable and back, the policy block
invalid and valid again, and the lines of the report's visible notices."""

from __future__ import annotations

from core.render import GREEN, notice_message, quoted
from core.wire import Embed

NO_TARGETS = (
    "Prometheus answered, but knows no scrape target (`up` is empty): no host was "
    "checked and nothing was cleared"
)
LOKI_UNAVAILABLE = "Loki unavailable: analysis ran without logs"


def prometheus_alert_detail(check_errors: dict[str, str]) -> str:
    """What the alert state records with the Prometheus transition."""
    return "; ".join(sorted(check_errors.values()))[:500]


def prometheus_transition(
    down: bool, check_errors: dict[str, str], cycle_id: str
) -> tuple[str, Embed]:
    """The notice of the Prometheus alert going on (every check failed) or off, and what
    it is called if its post fails."""
    if down:
        text = "Every check failed, so this cycle could not detect anything.\n" + quoted(
            "\n".join(sorted(set(check_errors.values()))), 1500
        )
        title = "⚠️ Prometheus unreachable — remediation cycle degraded"
        return "Prometheus notice", notice_message(title, text, cycle_id=cycle_id)
    return "Prometheus recovery", notice_message(
        "✅ Prometheus reachable again",
        "Checks are running normally.",
        cycle_id=cycle_id,
        color=GREEN,
    )


def policy_invalid(block: str | None, error: object, cycle_id: str) -> Embed:
    return notice_message(
        f"⚠️ Policy block {block!r} is invalid — remediation stopped",
        f"{error}\nEvery run fails at its start until the block is fixed "
        "(`remediation-policy validate`, then `remediation-policy apply`).",
        cycle_id=cycle_id,
    )


def policy_valid(block: str | None, cycle_id: str) -> Embed:
    return notice_message(
        f"✅ Policy block {block!r} is valid again",
        "Cycles run normally.",
        cycle_id=cycle_id,
        color=GREEN,
    )


def alert_state_unavailable(error: object) -> str:
    return f"ledger unavailable for alert state: {error}"


def post_failed(what: str, error: object) -> str:
    return f"Discord post of the {what} failed: {error}"


def claude_unreachable(error: object) -> str:
    return f"Claude unreachable after retries: {error}"


def answer_unreadable(reason: str) -> str:
    return f"the answer could not be read ({reason})"


def analysis_unavailable(reason: str) -> str:
    return f"analysis unavailable: {reason}"


def not_addressed(count: int) -> str:
    return f"{count} issue(s) not addressed by the analysis: posted for a human"
