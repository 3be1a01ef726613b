"""Closing the loop: the cycle's summary when its last action ends (the chart's
"Workflow Complete"), and, when issues come back, relapses and attempts run out."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from prefect.logging import get_run_logger

from clients.errors import UpstreamError
from clients.prefect_runs import PrefectRuns
from core.messages import CycleSummary, Escalation
from core.models import Issue
from core.policy import Policy
from core.summary import cycle_summary_markdown, cycle_summary_rows, exhausted
from tasks.chat import post_message
from tasks.connections import Connections

SUMMARY_ARTIFACT_KEY = "remediation-cycle-summary"


async def post_cycle_summary(conns: Connections, cycle_id: str) -> bool:
    """Post once, by whichever ends last — the cycle or its last action (the ledger
    arbitrates: only when the cycle has finished and every action is terminal)."""
    ledger = conns.ledger
    try:
        if not await ledger.operations.claim_cycle_summary(cycle_id, now=datetime.now(UTC)):
            return False
        records = await ledger.actions.cycle_actions(cycle_id)
        verdicts = await ledger.actions.cycle_verdicts(cycle_id)
        flow_run_id = await ledger.operations.cycle_flow_run(cycle_id)
    except UpstreamError as exc:
        get_run_logger().error("cycle summary of %s not made: %s", cycle_id, exc)
        return False
    rows = cycle_summary_rows(records, verdicts)
    try:
        await post_message(conns, CycleSummary(cycle_id=cycle_id, rows=rows))
    except UpstreamError as exc:
        get_run_logger().error("cycle summary post failed: %s", exc)
    async with PrefectRuns.open() as runs:
        await runs.create_markdown_artifact(
            SUMMARY_ARTIFACT_KEY,
            cycle_summary_markdown(cycle_id, rows),
            f"All actions of cycle {cycle_id} ended",
            flow_run_id,
        )
    return True


@dataclass
class AttemptReview:
    """What the cycle does with its new issues after looking at their attempts."""

    remaining: list[Issue]  # go on to analysis
    reported: list[str] = field(default_factory=list)  # escalated now or before: reported
    relapsed: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)  # posted in this cycle
    notices: list[str] = field(default_factory=list)


async def review_attempts(
    conns: Connections, policy: Policy, issues: list[Issue], cycle_id: str, now: datetime
) -> AttemptReview:
    """Right after dedup: an issue back within `relapse_seconds` of an `effective`
    verdict is a relapse (recorded as a counted attempt); an issue out of attempts is
    escalated in chat once, as a manual issue with its history, and is not analysed
    again (no action could be allowed for it)."""
    ledger = conns.ledger
    fps = [i.fingerprint for i in issues]
    review = AttemptReview(remaining=list(issues))
    if not fps:
        return review
    try:
        review.relapsed = await ledger.episodes.record_relapses(
            fps, window=timedelta(seconds=policy.relapse_seconds), now=now
        )
        since = now - timedelta(seconds=policy.attempt_window_seconds)
        out = exhausted(await ledger.episodes.attempt_history(fps, since=since), policy, now)
    except UpstreamError as exc:
        review.notices.append(f"attempt history unavailable: {exc}")
        return review
    if review.relapsed:
        review.notices.append(
            f"relapse: {', '.join(review.relapsed)} returned within {policy.relapse_seconds} s "
            "of an effective verdict (counted as ineffective)"
        )
    review.remaining = [i for i in issues if i.fingerprint not in out]
    for issue in issues:
        counted = out.get(issue.fingerprint)
        if not counted:
            continue
        fp = issue.fingerprint
        try:
            if not await ledger.episodes.claim_escalation(
                fp, latest_attempt=max(r.at for r in counted), now=now
            ):
                review.reported.append(fp)  # escalated before: held, not repeated
                continue
            history = await ledger.episodes.attempt_details([fp], since=since)
        except UpstreamError as exc:
            review.notices.append(f"escalation of {fp} not recorded: {exc}")
            continue
        try:
            await post_message(
                conns,
                Escalation(issue=issue, history=history, policy=policy, cycle_id=cycle_id),
            )
        except UpstreamError as exc:
            review.notices.append(f"escalation of {fp} could not be posted: {exc}")
            await _quietly(ledger.episodes.release_escalation(fp, now=now))
            continue
        review.reported.append(fp)
        review.escalated.append(fp)
        await _quietly(
            ledger.operations.record_audit(
                "escalated",
                {"fingerprint": fp, "attempts": len(counted)},
                now=now,
                cycle_id=cycle_id,
            )
        )
    if out:
        review.notices.append(
            f"{len(out)} issue(s) out of attempts, not analysed: {', '.join(sorted(out))}"
        )
    return review


async def _quietly(write: Awaitable[object]) -> None:
    try:
        await write
    except UpstreamError as exc:
        get_run_logger().error("ledger write failed: %s", exc)
