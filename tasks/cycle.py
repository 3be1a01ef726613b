"""The remediation cycle's steps, one method per box of the seed chart, for the flow to
call in order (`flows.remediation_cycle`). Each step does the I/O — the Prefect tasks
around Prometheus, the ledger, Loki, Claude and the chat channel — and asks `core.cycle` where the
chart branches; the report is built in a `core.cycle.CycleProgress`.

A failed chat post is a visible notice in the report, never a crash.
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from logging import Logger, LoggerAdapter
from typing import Any

from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.logging import get_run_logger

from blocks.names import BlockNames
from clients.errors import UpstreamError
from core import words
from core.analysis import Analysis, AnalysisUnreadable, read_analysis
from core.checks import build_queries
from core.cost import estimate_cost
from core.coverage import cover_issues
from core.cycle import (
    CycleProgress,
    Routing,
    action_outcomes,
    announce_prometheus,
    attempts_since,
    manual_issues,
    nothing_scraped,
    omitted_from_prompt,
    routed_outcome,
    with_dispatch,
)
from core.detect import Detection, evaluate
from core.dispatch import DispatchResult
from core.errors import ConfigError
from core.logs import LogContext
from core.messages import (
    AnalysisUnavailable,
    ChatMessage,
    ManualIssues,
    NoActionNeeded,
    NotAddressed,
    ProposalSummary,
)
from core.models import Issue
from core.policy import Policy, policy_hash
from core.prompt import build_analysis_request
from core.report import CycleOutcome, CycleReport, cycle_markdown, issue_rows
from core.vetting import Vetting, vet_actions
from tasks.analysis import ask_claude
from tasks.chat import CHAT_BLOCKS, post_message, say
from tasks.closing import post_cycle_summary, review_attempts
from tasks.connections import (
    Connections,
    ResolvedPolicy,
    add_runner_secrets,
    open_connections,
    resolve_policy,
)
from tasks.detection import fetch_log_context, gather_checks
from tasks.ledger import (
    claim_new_issues,
    close_cleared_episodes,
    confirm_reported,
    read_attempt_history,
)

NEEDED_BLOCKS = ("prometheus", "loki", *CHAT_BLOCKS, "claude", "ledger")
PROMETHEUS_ALERT = "prometheus-unreachable"
POLICY_ALERT = "policy-invalid"


async def cycle_policy(
    document: dict[str, Any] | None, blocks: BlockNames, cycle_id: str, now: datetime
) -> ResolvedPolicy:
    """The cycle's policy; an invalid one fails here, naming the field — and when it is
    the policy block (an edit in the UI broke it), that is said in chat, once."""
    try:
        resolved = await resolve_policy(document, blocks)
    except ConfigError as exc:
        if blocks.policy is not None:
            await announce_policy_state(blocks, cycle_id, now, exc)
        raise
    get_run_logger().info("policy %s from %s", resolved.hash, resolved.source)
    return resolved


async def cycle_connections(blocks: BlockNames) -> Connections:
    """The cycle's clients; a runner's token in a log line must be masked before the
    prompt too, so every registered runner's secrets are added for redaction."""
    conns = await open_connections(blocks, NEEDED_BLOCKS)
    await add_runner_secrets(conns, blocks)
    return conns


async def announce_policy_state(
    blocks: BlockNames,
    cycle_id: str,
    now: datetime,
    error: ConfigError | None,
    conns: Connections | None = None,
) -> None:
    """Post once when the policy block turns invalid, and once when it is valid again
    (the ledger's alert state remembers which was said last). Without `conns` (the run
    is failing at its start) it opens only the chat channel and the ledger."""
    log = get_run_logger()
    async with AsyncExitStack() as stack:
        try:
            if conns is None:
                conns = await stack.enter_async_context(
                    await open_connections(blocks, (*CHAT_BLOCKS, "ledger"))
                )
            changed = await conns.ledger.operations.set_alert_state(
                POLICY_ALERT, firing=error is not None, now=now, detail=str(error or "")[:500]
            )
        except (UpstreamError, ConfigError) as exc:  # the run's own error says the rest
            log.error("could not record the policy state: %s", exc)
            return
        if not changed:
            return
        if error is not None:
            notice = words.policy_invalid(blocks.policy, error, cycle_id)
        else:
            notice = words.policy_valid(blocks.policy, cycle_id)
        await say(conns, notice, log)


@dataclass
class CycleRun:
    """One cycle run: its clients, policy and the report it builds."""

    conns: Connections
    policy: Policy
    cycle_id: str
    now: datetime
    progress: CycleProgress = field(init=False)
    log: Logger | LoggerAdapter[Any] = field(init=False)

    def __post_init__(self) -> None:
        self.progress = CycleProgress.start(self.cycle_id, self.now)
        self.log = get_run_logger()

    def ended(self, outcome: CycleOutcome) -> None:
        self.progress.update(outcome=outcome)

    async def post(self, what: str, message: ChatMessage) -> bool:
        """Post to the approvals channel; a failure is a visible notice, not a crash."""
        chat = self.conns.chat
        try:
            posted = await post_message(self.conns, message)
        except UpstreamError as exc:
            self.progress.notices.append(words.post_failed(chat.title, what, exc))
            self.log.error("%s post of the %s failed: %s", chat.title, what, exc)
            return False
        self.progress.notices.extend(posted.notices)  # a message shown as plain text
        return True

    async def start(self, blocks: BlockNames, flow_run_id: str | None) -> None:
        """Say the policy block is valid (again), and record the cycle's start. Without
        the ledger nothing can be deduplicated, and the dead-man's switch (which lives
        in the ledger) cannot speak: that is said here, on every cycle, and raised."""
        if blocks.policy is not None:
            await announce_policy_state(blocks, self.cycle_id, self.now, None, self.conns)
        try:
            await self.conns.ledger.operations.record_cycle_start(
                self.cycle_id, flow_run_id=flow_run_id, now=self.now
            )
        except UpstreamError as exc:
            await self.post("ledger notice", words.ledger_unavailable(exc, self.cycle_id))
            raise

    # --- Stage 1 --------------------------------------------------------------------
    async def detect(self) -> Detection:
        t = time.perf_counter()
        answers = await gather_checks(self.conns.prometheus, build_queries(self.policy.detection))
        detection = evaluate(self.policy.detection, answers, self.now)
        self.progress.timings["detect"] = time.perf_counter() - t
        if nothing_scraped(detection):
            self.progress.notices.append(words.NO_TARGETS)
            self.log.warning(words.NO_TARGETS)
        await self._prometheus_alert(detection)
        self.progress.update(issues=detection.issues, check_errors=detection.check_errors)
        return detection

    async def _prometheus_alert(self, detection: Detection) -> None:
        """Post once when every check failed, and once when Prometheus answers again."""
        down = detection.prometheus_unreachable
        try:
            changed: bool | None = await self.conns.ledger.operations.set_alert_state(
                PROMETHEUS_ALERT,
                firing=down,
                now=self.now,
                detail=words.prometheus_alert_detail(detection.check_errors),
            )
        except UpstreamError as exc:
            self.progress.notices.append(words.alert_state_unavailable(exc))
            changed = None
        if announce_prometheus(changed=changed, down=down):
            what, notice = words.prometheus_transition(down, detection.check_errors, self.cycle_id)
            await self.post(what, notice)

    async def dedup(self, detection: Detection) -> list[Issue]:
        """Close the episodes of cleared issues; claim the new ones (the rest dropped)."""
        current = {i.fingerprint for i in detection.issues}
        ledger = self.conns.ledger
        cleared = await close_cleared_episodes(
            ledger, current, set(detection.checks_ok), set(detection.hosts_up), self.now
        )
        decision = await claim_new_issues(
            ledger, detection.issues, self.cycle_id, self.now, self.policy.dedup_ttl
        )
        self.progress.update(
            cleared=cleared,
            dropped=decision.drop_counts(),
            new_issues=[i.fingerprint for i in decision.new],
        )
        if decision.dropped:
            self.log.info("dropped %d issue(s): %s", len(decision.dropped), decision.drop_counts())
        return decision.new

    async def review(self, issues: list[Issue]) -> list[Issue]:
        """Right after dedup: relapses are counted; issues out of attempts are escalated
        once (reported, now or before) and not analysed. The rest go on to analysis."""
        review = await review_attempts(self.conns, self.policy, issues, self.cycle_id, self.now)
        self.progress.notices.extend(review.notices)
        self.progress.escalated = review.escalated
        if review.reported:
            await self.confirm(review.reported)
        return review.remaining

    # --- Stage 2 --------------------------------------------------------------------
    async def enrich(self, issues: list[Issue]) -> LogContext:
        t = time.perf_counter()
        logs = await fetch_log_context(
            self.conns.loki, issues, self.policy.logs, self.now, self.conns.secrets
        )
        self.progress.timings["logs"] = time.perf_counter() - t
        if logs.status == "unavailable":
            self.progress.notices.append(words.LOKI_UNAVAILABLE)
        self.progress.update(log_status=logs.status)
        return logs

    async def analyse(
        self, issues: list[Issue], detection: Detection, logs: LogContext
    ) -> Analysis | None:
        """Claude's analysis; None when it is unavailable (Claude unreachable or its answer
        unreadable): the issues are then posted for a human, never "nothing to do"."""
        t = time.perf_counter()
        request = build_analysis_request(
            issues,
            policy=self.policy,
            logs=logs,
            top_cpu=detection.top_cpu,
            top_memory=detection.top_memory,
        )
        self.progress.update(issues_omitted_from_prompt=request.issues_omitted)
        self.progress.omitted = request.omitted_fingerprints
        excerpt = ""
        try:
            reply = await ask_claude(self.conns.claude, request)
            model = reply.model
            cost = estimate_cost(reply.usage, model)
            self.progress.update(usage=reply.usage, model=model, cost_usd=cost)
            analysis = read_analysis(reply)
            self.progress.update(analysis_summary=analysis.summary, analysis_notes=analysis.notes)
            self.progress.timings["analysis"] = time.perf_counter() - t
            return analysis
        except UpstreamError as exc:
            reason = words.claude_unreachable(exc)
        except AnalysisUnreadable as exc:
            reason, excerpt = words.answer_unreadable(exc.reason), exc.excerpt
        self.progress.timings["analysis"] = time.perf_counter() - t
        self.log.error("analysis unavailable: %s", reason)
        self.progress.notices.append(words.analysis_unavailable(reason))
        posted = await self.post(
            "analysis-unavailable message",
            AnalysisUnavailable(
                issues=issues, reason=reason, excerpt=excerpt, cycle_id=self.cycle_id
            ),
        )
        if posted:
            await self.confirm([i.fingerprint for i in issues])
        return None

    async def vet(self, analysis: Analysis, issues: list[Issue]) -> Vetting:
        """Policy disposes: every proposed action allowed or rejected with a reason."""
        since = attempts_since(self.policy, self.now)
        history, pending, suspended = await read_attempt_history(
            self.conns.ledger,
            [i.fingerprint for i in issues],
            since,
            self.policy.risk.waiting("suspend"),
        )
        vetting = vet_actions(
            analysis.actions,
            issues,
            policy=self.policy,
            policy_hash=policy_hash(self.policy),
            history=history,
            pending_approvals=pending,
            pending_suspended=suspended,
            cycle_id=self.cycle_id,
            now=self.now,
        )
        self.progress.update(actions=action_outcomes(vetting))
        return vetting

    # --- routing ----------------------------------------------------------------------
    async def route(self, analysis: Analysis, vetting: Vetting, issues: list[Issue]) -> Routing:
        """Post what goes to people before the actions are dispatched: manual issues,
        issues the answer did not address, the named "no action needed", and a summary
        when there is more than one action. Every issue is accounted for."""
        report = self.progress.report
        omitted = omitted_from_prompt(report.issues_omitted_from_prompt, self.progress.omitted)
        manual = manual_issues(analysis, vetting, omitted)
        actions = vetting.approved
        coverage = cover_issues(
            issues, actions=actions, manual=manual, no_action=analysis.no_action_needed
        )
        unaddressed, no_action = coverage.unaddressed, coverage.no_action
        self.progress.update(
            manual_issues=len(manual),
            coverage={c.issue.fingerprint: c.label for c in coverage.issues},
        )
        if unaddressed:
            self.progress.notices.append(words.not_addressed(len(unaddressed)))
        cycle_id = self.cycle_id
        manual_ok = bool(manual) and await self.post(
            "manual issues", ManualIssues(manual=manual, cycle_id=cycle_id)
        )
        unaddressed_ok = bool(unaddressed) and await self.post(
            "issues not addressed by the analysis",
            NotAddressed(issues=unaddressed, notes=analysis.notes, cycle_id=cycle_id),
        )
        no_action_ok = bool(no_action) and await self.post(
            "no-action-needed message",
            NoActionNeeded(
                items=[(c.issue, c.no_action_reason or "") for c in no_action],
                summary=analysis.summary,
                cycle_id=cycle_id,
            ),
        )
        if len(actions) > 1:
            summary = ProposalSummary(summary=analysis.summary, actions=actions, cycle_id=cycle_id)
            await self.post("summary", summary)
        return Routing(
            coverage=coverage,
            manual_posted=manual_ok,
            no_action_posted=no_action_ok,
            unaddressed_posted=unaddressed_ok,
            manual_or_unaddressed=bool(manual or unaddressed),
        )

    async def dispatched(self, routing: Routing, result: DispatchResult, actions: int) -> None:
        """Record what dispatch did. Reported only when people saw it: an action's issues
        once it is dispatched, the rest once the message that carries them is posted."""
        if actions:
            self.progress.timings["dispatch"] = result.seconds
            self.progress.notices.extend(result.errors.values())
        self.progress.update(
            outcome=routed_outcome(
                actions=bool(actions), manual_or_unaddressed=routing.manual_or_unaddressed
            ),
            actions=with_dispatch(self.progress.report.actions, result),
        )
        await self.confirm(routing.reported(result.dispatched))

    async def confirm(self, fingerprints: list[str]) -> None:
        await confirm_reported(self.conns.ledger, fingerprints, self.cycle_id, self.now)
        self.progress.reported(fingerprints)

    # --- the end ------------------------------------------------------------------------
    async def finish(self) -> CycleReport:
        """Release the claims of issues nobody saw (the next cycle reports them at once),
        write the report artifacts, record the cycle's end, and post the cycle summary
        when its actions all ended already (else the last one to end posts it)."""
        r = self.progress.finished(self.policy, self.now, datetime.now(UTC))
        if self.progress.unreported:
            try:
                await self.conns.ledger.episodes.release_claims(
                    self.progress.unreported, cycle_id=self.cycle_id
                )
            except UpstreamError as exc:
                self.log.error("could not release claims: %s", exc)
        await acreate_markdown_artifact(
            key="remediation-cycle-report",
            markdown=cycle_markdown(r),
            description=f"Cycle {r.cycle_id}: {r.outcome.value}",
        )
        if r.issues:
            await acreate_table_artifact(
                key="remediation-cycle-issues",
                table=issue_rows(r.issues, set(r.new_issues)),
                description=f"Issues of cycle {r.cycle_id}",
            )
        try:
            await self.conns.ledger.operations.record_cycle_end(
                r.cycle_id,
                actions_dispatched=sum(a.dispatched for a in r.actions),
                report=r.model_dump(mode="json", exclude={"issues"}),
                now=datetime.now(UTC),
            )
            await post_cycle_summary(self.conns, r.cycle_id)
        except UpstreamError as exc:
            self.log.error("could not record the cycle in the ledger: %s", exc)
        self.log.info("cycle %s: %s", r.cycle_id, r.outcome.value)
        return r
