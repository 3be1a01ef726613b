"""After approval: launch at most once, poll to an end, verify, report (Stages 4-5)."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect.artifacts import acreate_markdown_artifact
from prefect.logging import get_run_logger

from clients.errors import UpstreamError
from core import render
from core.policy import Policy
from core.records import ActionStatus, Decision
from core.settings import ActionSettings
from core.verify import action_report, attempt_outcome, full_explanation, result_embed
from core.vetting import ProposedAction
from core.wire import JobRef, JobStatus
from flows.closing import post_cycle_summary
from flows.launching import ActionResult, Launcher
from flows.verification import Verifier
from tasks.connections import Connections
from tasks.notify import post_message


async def carry_out(
    conns: Connections,
    policy: Policy,
    action: ProposedAction,
    decision: Decision,
    settings: ActionSettings,
    run_id: str,
) -> ActionResult:
    """Launch → poll → verify → report, continuing from the ledger after a restart."""
    ex = Launcher(conns, policy, action, decision, settings, run_id)
    launched = await ex.launch()
    if isinstance(launched, ActionResult):
        await close_cycle_if_done(conns, action.cycle_id)
        return launched
    ref = launched
    status, timed_out = await ex.poll(ref)
    return await conclude(conns, policy, action, decision, settings, ex, ref, status, timed_out)


async def conclude(
    conns: Connections,
    policy: Policy,
    action: ProposedAction,
    decision: Decision,
    settings: ActionSettings,
    ex: Launcher,
    ref: JobRef,
    status: JobStatus | None,
    timed_out: bool,
) -> ActionResult:
    """After the job ended: verify (a failed job too: the state may have changed),
    record the attempt, post the result, write the action report, close the cycle."""
    ledger = conns.ledger
    tail = await ex.output_tail(ref)
    now = datetime.now(UTC)
    job_state = "timeout" if timed_out else (status.state.value if status else "unknown")
    await ledger.record_job_state(
        action.action_id, state=job_state, finished=True, now=now, output_tail=tail
    )
    if timed_out:
        await ex.say(
            f"⏱️ Job timeout: {action.catalog_key} on {action.host}",
            f"Job `{ref.job_id}` did not finish within {action.max_job_seconds} s "
            "and was cancelled. Last output:\n" + render.quoted(tail[-1500:], 1600),
        )
    await ledger.set_action_status(action.action_id, ActionStatus.VERIFYING, now=now)
    job_end = status.finished if status and status.finished and not timed_out else now
    verification = await Verifier(conns, policy, action, settings).verify(job_state, tail, job_end)
    verdict = verification.verdict
    outcome, counts = attempt_outcome(job_state, verdict)
    explanation = full_explanation(verification)
    await record_outcome(conns, action, outcome, counts, explanation)
    embed = result_embed(
        action=action,
        decision=decision,
        job_id=ref.job_id,
        job_url=ref.url,
        job_state=job_state,
        duration_s=_duration(status),
        verification=verification,
        output_tail=tail,
    )
    try:
        await post_message(conns.discord, conns.discord_bot.approvals_channel_id, [embed])
    except UpstreamError as exc:
        get_run_logger().error("result post failed: %s", exc)
    await ledger.set_action_status(action.action_id, ActionStatus.FINISHED, now=datetime.now(UTC))
    result = ActionResult(
        action_id=action.action_id,
        status="finished",
        decision=decision,
        job_id=ref.job_id,
        job_state=job_state,
        verdict=verdict,
        explanation=explanation,
    )
    await ledger.record_audit(
        "finished",
        {**result.model_dump(mode="json"), "outcome": outcome, "counts": counts},
        now=datetime.now(UTC),
        action_id=action.action_id,
    )
    record = await ledger.get_action(action.action_id)
    if record is not None:
        await acreate_markdown_artifact(
            key="remediation-action-report",
            markdown=action_report(
                record,
                decision=decision,
                job_state=job_state,
                output_tail=tail,
                verification=verification,
                outcome=outcome,
                counts=counts,
            ),
            description=f"{action.catalog_key} on {action.host}: {verdict}",
        )
    await close_cycle_if_done(conns, action.cycle_id)
    return result


def _duration(status: JobStatus | None) -> float | None:
    if status is None:
        return None
    if status.elapsed is not None:
        return status.elapsed
    if status.started and status.finished:
        return (status.finished - status.started).total_seconds()
    return None


async def record_outcome(
    conns: Connections, action: ProposedAction, outcome: str, counts: bool, explanation: str
) -> None:
    """The attempt, per addressed issue. A failed or ineffective attempt releases the
    issues (the next cycle reports them again); an effective one closes their episodes,
    so a return is seen as new — and, soon after, as a relapse."""
    ledger = conns.ledger
    now = datetime.now(UTC)
    await ledger.record_attempt(
        action_id=action.action_id,
        fingerprints=action.fingerprints,
        host=action.host,
        catalog_key=action.catalog_key,
        outcome=outcome,
        counts=counts,
        explanation=explanation,
        now=now,
    )
    if counts:
        for fp in action.fingerprints:
            await ledger.release_issue(fp, now=now)
    elif outcome == "effective":
        await ledger.close_remediated(action.fingerprints, now=now)


async def close_cycle_if_done(conns: Connections, cycle_id: str) -> None:
    """When the last action of a cycle ends, post the cycle summary (exactly once)."""
    await post_cycle_summary(conns, cycle_id)
