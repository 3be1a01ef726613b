"""Stage 5: verify a finished job — the deterministic re-check, the logs since the job,
and Claude's verdict bounded by the re-check (`core.verify`) — and report it: the
attempt, the result post, the action report, the cycle's close."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from prefect import task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from clients.errors import UpstreamError
from core import words
from core.action_run import ActionResult
from core.launch import JobEnd
from core.logs import UNIT_CHECKS, format_context, selector
from core.messages import ResultCard
from core.policy import Policy
from core.records import ActionStatus, Decision
from core.settings import ActionSettings
from core.verify import (
    Recheck,
    Verification,
    action_recheck,
    action_report,
    attempt_outcome,
    bound_verdict,
    full_explanation,
    read_verdict,
    recheck_queries,
    settle_delay,
    verification_request,
)
from core.vetting import ProposedAction
from core.wire import JobRef, JobState
from tasks.action_run import REPORT_KEY, ActionRunContext, close_cycle_if_done
from tasks.chat import post_about
from tasks.connections import Connections
from tasks.launch import read_output_tail
from tasks.verify import ask_verdict, fetch_logs_since, recheck_issue


class Verifier:
    def __init__(
        self, conns: Connections, policy: Policy, action: ProposedAction, settings: ActionSettings
    ) -> None:
        self.conns, self.policy, self.action, self.settings = conns, policy, action, settings
        self.log = get_run_logger()

    async def verify(self, job_state: JobState, tail: str, job_end: datetime) -> Verification:
        """Settle, re-check every addressed issue over the time since `job_end`, read the
        logs since then, ask Claude, and bound Claude's answer by the re-check."""
        await asyncio.sleep(settle_delay(self.settings.settle_seconds, job_end, datetime.now(UTC)))
        started = datetime.now(UTC)
        window_s = (started - job_end).total_seconds()
        recheck = await self._recheck(window_s)
        logs_status, logs = await self._logs_since(job_end)
        claude, unavailable = None, "Claude unavailable"
        try:
            reply = await ask_verdict(
                self.conns.claude,
                verification_request(
                    action=self.action.model_dump(
                        mode="json",
                        include={
                            "catalog_key",
                            "host",
                            "parameters",
                            "fingerprints",
                            "expected_outcome",
                        },
                    ),
                    job_state=job_state,
                    output_tail=tail,
                    logs=logs,
                    recheck=recheck,
                ),
            )
            claude = read_verdict(reply)
            if claude is None:
                unavailable = "Claude's answer could not be read"
        except UpstreamError as exc:
            self.log.error("verification by Claude unavailable: %s", exc)
            unavailable = f"Claude unavailable ({type(exc).__name__})"
        verdict, note = bound_verdict(
            claude[0] if claude else None, recheck, unavailable=unavailable
        )
        self.log.info("verdict %s (Claude: %s) %s", verdict, claude[0] if claude else "-", note)
        return Verification(
            verdict=verdict,
            explanation=(claude[1] if claude else "") or recheck.detail,
            recheck=recheck,
            claude_verdict=claude[0] if claude else None,
            note=note,
            logs_status=logs_status,
            window_seconds=window_s,
            started_at=started,
            finished_at=datetime.now(UTC),
        )

    async def _recheck(self, window_s: float) -> Recheck:
        """Re-check exactly the issues the action addresses (never others of its host)."""
        detection = self.policy.detection
        answers = {}
        for issue in self.action.issues:
            queries = recheck_queries(issue, detection, window_s)
            try:
                answers[issue.fingerprint] = await recheck_issue(self.conns.prometheus, queries)
            except UpstreamError as exc:
                answers[issue.fingerprint] = ({}, [str(exc)])
        return action_recheck(self.action, detection, answers)

    async def _logs_since(self, start: datetime) -> tuple[str, str]:
        """The host's (and addressed units') logs from the job's end to now: the chart's
        "last 5 minutes" at a 5-minute settle time."""
        units = sorted({i.subject for i in self.action.issues if i.check in UNIT_CHECKS})
        s = self.policy.logs
        try:
            streams = await fetch_logs_since(
                self.conns.loki, selector(self.action.host, units, s), start, datetime.now(UTC)
            )
        except UpstreamError as exc:
            return "unavailable", f"logs unavailable: {exc}"
        context = format_context(streams, s, secrets=self.conns.secrets)
        return context.status, context.text


@task(name="verify-and-report", cache_policy=NO_CACHE, retries=0)
async def report_result(
    run: ActionRunContext, decision: Decision, job: JobRef, end: JobEnd
) -> ActionResult:
    """After the job ended: verify (a failed job too: the state may have changed), record
    the attempt, post the result, write the action report, close the cycle."""
    action, ledger = run.action, run.ledger
    tail = await read_output_tail(run, job)
    now = datetime.now(UTC)
    await ledger.jobs.record_job_state(
        action.action_id, state=end.state.value, finished=True, now=now, output_tail=tail
    )
    if end.state is JobState.TIMED_OUT:
        await run.say(words.job_timeout(action, job.job_id, tail))
    await ledger.actions.set_action_status(action.action_id, ActionStatus.VERIFYING, now=now)
    verifier = Verifier(run.conns, run.policy, action, run.settings)
    verification = await verifier.verify(end.state, tail, end.ended_at(now))
    verdict = verification.verdict
    outcome, counts = attempt_outcome(end.state, verdict)
    explanation = full_explanation(verification)
    await record_outcome(run.conns, action, outcome, counts, explanation)
    result_card = ResultCard(
        action=action,
        decision=decision,
        job_id=job.job_id,
        job_url=job.url,
        job_state=end.state,
        duration_s=end.duration_seconds,
        verification=verification,
        output_tail=tail,
    )
    try:
        await post_about(run.conns, action.action_id, result_card)
    except UpstreamError as exc:
        run.log.error("result post failed: %s", exc)
    # Before `finished`: the cycle's summary, posted once all its actions ended, reads it.
    await ledger.actions.record_verdict(action.action_id, verdict, now=datetime.now(UTC))
    await ledger.actions.set_action_status(
        action.action_id, ActionStatus.FINISHED, now=datetime.now(UTC)
    )
    result = ActionResult(
        action_id=action.action_id,
        status=ActionStatus.FINISHED,
        decision=decision,
        job_id=job.job_id,
        job_state=end.state,
        verdict=verdict,
        explanation=explanation,
    )
    await run.audit("finished", {**result.model_dump(mode="json"), "outcome": outcome,
                                 "counts": counts})  # fmt: skip
    record = await ledger.actions.get_action(action.action_id)
    if record is not None:
        await acreate_markdown_artifact(
            key=REPORT_KEY,
            markdown=action_report(
                record,
                decision=decision,
                job_state=end.state,
                output_tail=tail,
                verification=verification,
                outcome=outcome,
                counts=counts,
            ),
            description=f"{action.catalog_key} on {action.host}: {verdict}",
        )
    await close_cycle_if_done(run.conns, action.cycle_id)
    return result


async def record_outcome(
    conns: Connections, action: ProposedAction, outcome: str, counts: bool, explanation: str
) -> None:
    """The attempt, per addressed issue. A failed or ineffective attempt releases the
    issues (the next cycle reports them again); an effective one closes their episodes,
    so a return is seen as new — and, soon after, as a relapse."""
    ledger = conns.ledger
    now = datetime.now(UTC)
    await ledger.episodes.record_attempt(
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
            await ledger.episodes.release_issue(fp, now=now)
    elif outcome == "effective":
        await ledger.episodes.close_remediated(action.fingerprints, now=now)
