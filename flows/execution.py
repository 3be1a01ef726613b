"""After approval: launch at most once, poll to an end, verify, report (Stages 4-5)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from prefect.artifacts import acreate_markdown_artifact
from prefect.logging import get_run_logger

from clients.errors import UpstreamError
from core import render
from core.policy import Policy
from core.records import ActionStatus, Decision
from core.verify import Recheck, result_embed
from core.vetting import ProposedAction
from core.wire import JobRef, JobState
from flows.closing import post_cycle_summary
from flows.connections import Connections
from flows.launching import ActionResult, Launcher
from flows.settings import ActionSettings
from flows.verification import Verifier
from tasks.notify import post_message


def _decided(decision: Decision) -> str:
    how = {
        "discord": "in Discord",
        "ui": "in the Prefect UI",
        "deadline": "by deadline default",
        "operator": "by operator",
    }.get(decision.via, decision.via)
    return f"{decision.decider} ({how})"


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
    ledger = conns.ledger
    launched = await ex.launch()
    if isinstance(launched, ActionResult):
        await close_cycle_if_done(conns, action.cycle_id)
        return launched
    ref = launched
    status, timed_out = await ex.poll(ref)
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
    job_end = status.finished if status and status.finished else now
    verdict, explanation, recheck = await Verifier(conns, policy, action, settings).verify(
        job_state, tail, job_end
    )
    succeeded = status is not None and status.state is JobState.SUCCESSFUL and not timed_out
    outcome = verdict if (succeeded or verdict == "effective") else "failed"
    counts = outcome in ("ineffective", "failed")
    await ledger.record_attempt(
        action_id=action.action_id,
        fingerprints=action.fingerprints,
        host=action.host,
        catalog_key=action.catalog_key,
        outcome=outcome,
        counts=counts,
        explanation=explanation,
        now=datetime.now(UTC),
    )
    if counts:
        for fp in action.fingerprints:
            await ledger.release_issue(fp, now=datetime.now(UTC))
    duration = status.elapsed if status and status.elapsed is not None else None
    embed = result_embed(
        action=action,
        decision_text=_decided(decision),
        job_id=ref.job_id,
        job_url=ref.url,
        job_state=job_state,
        duration_s=duration,
        verdict=verdict,
        explanation=explanation,
        recheck=recheck,
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
        result.model_dump(mode="json"),
        now=datetime.now(UTC),
        action_id=action.action_id,
    )
    await acreate_markdown_artifact(
        key="remediation-action-report",
        markdown=action_story(
            action, decision, ref, job_state, tail, verdict, explanation, recheck
        ),
        description=f"{action.catalog_key} on {action.host}: {verdict}",
    )
    await close_cycle_if_done(conns, action.cycle_id)
    return result


def action_story(
    action: ProposedAction,
    decision: Decision,
    ref: JobRef,
    job_state: str,
    tail: str,
    verdict: str,
    explanation: str,
    recheck: Recheck,
) -> str:
    """The action's whole story as Markdown (its Prefect artifact)."""
    return (
        "\n".join(
            [
                f"# `{action.catalog_key}` on `{action.host}`",
                "",
                f"- action id: `{action.action_id}` · policy `{action.policy_hash}`",
                f"- risk: {action.risk.value} (model said {action.model_risk.value})",
                f"- parameters: `{json.dumps(action.parameters)}`",
                f"- issues: {', '.join(action.fingerprints)}",
                f"- reason: {action.reason}",
                f"- policy notes: {'; '.join(action.notes) or 'none'}",
                f"- decision: {decision.decision} by {_decided(decision)}"
                + (f" — {decision.comment}" if decision.comment else ""),
                f"- job: {ref.runner} `{ref.job_id}` → {job_state}"
                + (f" ({ref.url})" if ref.url else ""),
                f"- re-check: {recheck.detail}",
                f"- verdict: **{verdict}** — {explanation}",
                "",
                "## Output (tail, redacted)",
                "",
                "```text",
                tail.replace("```", "ʼʼʼ"),
                "```",
            ]
        )
        + "\n"
    )


async def close_cycle_if_done(conns: Connections, cycle_id: str) -> None:
    """When the last action of a cycle ends, post the cycle summary (exactly once)."""
    await post_cycle_summary(conns, cycle_id)
