"""The remediation cycle: detect → dedup → enrich → analyse → vet → route → dispatch.

Reads like the seed chart. The cycle never pauses itself and never waits for humans:
each surviving action becomes its own `remediate_action` flow run.
"""

# No `from __future__ import annotations` here: Prefect validates a deployed flow's
# parameters from its annotations at run time, and string annotations do not resolve.

import argparse
import asyncio
import time
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from blocks.names import BlockNames
from clients.errors import UpstreamError
from core import render
from core.analysis import Analysis, AnalysisUnreadable, ManualIssue, read_analysis
from core.checks import build_queries
from core.cost import estimate_cost
from core.coverage import cover_issues, rejections_as_manual
from core.detect import Detection, evaluate
from core.errors import ConfigError
from core.fallback import fallback_notices
from core.logs import LogContext
from core.models import CheckName, Issue
from core.policy import Policy, policy_hash
from core.prompt import build_analysis_request
from core.report import ActionOutcome, CycleOutcome, CycleReport, cycle_markdown, issue_rows
from core.vetting import Vetting, vet_actions
from core.wire import Embed
from flows import operator_controls
from flows.closing import post_cycle_summary, review_attempts
from flows.dispatch import DispatchMode, DispatchResult, dispatch_actions
from tasks.analysis import ask_claude
from tasks.connections import Connections, add_secrets, open_connections, resolve_policy
from tasks.detection import fetch_log_context, gather_checks
from tasks.ledger import (
    claim_new_issues,
    close_cleared_episodes,
    confirm_reported,
    read_attempt_history,
)
from tasks.notify import post_message, post_notice

PROMETHEUS_ALERT = "prometheus-unreachable"
NO_TARGETS = (
    "Prometheus answered, but knows no scrape target (`up` is empty): no host was "
    "checked and nothing was cleared"
)


class _Cycle:
    """State of one cycle run; each method is one box of the chart."""

    def __init__(
        self,
        conns: Connections,
        policy: Policy,
        cycle_id: str,
        now: datetime,
        controls: operator_controls.OperatorSettings | None = None,
    ) -> None:
        self.conns = conns
        self.policy = policy
        self.controls = controls or operator_controls.OperatorSettings()
        self.cycle_id = cycle_id
        self.now = now
        self.log = get_run_logger()
        self.timings: dict[str, float] = {}
        self.report = CycleReport(cycle_id=cycle_id, started_at=now, outcome=CycleOutcome.NO_ISSUES)
        self.notices: list[str] = []
        self.escalated: list[str] = []
        self.omitted: list[str] = []  # fingerprints left out of the prompt (token budget)

    def update(self, **fields: Any) -> None:
        self.report = self.report.model_copy(update=fields)

    async def post(self, what: str, embeds: list[Embed]) -> bool:
        """Post to the approvals channel; a failure is a visible notice, not a crash."""
        self.notices.extend(fallback_notices(embeds))  # a message shown as plain text
        try:
            await post_message(
                self.conns.discord, self.conns.discord_bot.approvals_channel_id, embeds
            )
            return True
        except UpstreamError as exc:
            self.notices.append(f"Discord post of the {what} failed: {exc}")
            self.log.error("Discord post of the %s failed: %s", what, exc)
            return False

    # --- Stage 1 --------------------------------------------------------------------
    async def detect(self) -> Detection:
        t = time.perf_counter()
        answers = await gather_checks(self.conns.prometheus, build_queries(self.policy.detection))
        detection = evaluate(self.policy.detection, answers, self.now)
        self.timings["detect"] = time.perf_counter() - t
        if CheckName.HOST_DOWN.value in detection.checks_ok and not (
            detection.hosts_up or detection.hosts_down
        ):  # an empty answer everywhere is not "all clear": nothing was looked at
            self.notices.append(NO_TARGETS)
            self.log.warning(NO_TARGETS)
        await self._prometheus_alert(detection)
        self.update(issues=detection.issues, check_errors=detection.check_errors)
        return detection

    async def _prometheus_alert(self, detection: Detection) -> None:
        down = detection.prometheus_unreachable
        try:
            changed = await self.conns.ledger.set_alert_state(
                PROMETHEUS_ALERT,
                firing=down,
                now=self.now,
                detail="; ".join(sorted(detection.check_errors.values()))[:500],
            )
        except UpstreamError as exc:
            self.notices.append(f"ledger unavailable for alert state: {exc}")
            changed = down
        if not changed:
            return
        if down:
            text = "Every check failed, so this cycle could not detect anything.\n" + render.quoted(
                "\n".join(sorted(set(detection.check_errors.values()))), 1500
            )
            await self.post(
                "Prometheus notice",
                [
                    render.notice_message(
                        "⚠️ Prometheus unreachable — remediation cycle degraded",
                        text,
                        cycle_id=self.cycle_id,
                    )
                ],
            )
        else:
            await self.post(
                "Prometheus recovery",
                [
                    render.notice_message(
                        "✅ Prometheus reachable again",
                        "Checks are running normally.",
                        cycle_id=self.cycle_id,
                        color=render.GREEN,
                    )
                ],
            )

    async def dedup(self, detection: Detection) -> list[Issue]:
        current = {i.fingerprint for i in detection.issues}
        cleared = await close_cleared_episodes(
            self.conns.ledger, current, set(detection.checks_ok), set(detection.hosts_up), self.now
        )
        decision = await claim_new_issues(
            self.conns.ledger, detection.issues, self.cycle_id, self.now, self.policy.dedup_ttl
        )
        self.update(
            cleared=cleared,
            dropped=decision.drop_counts(),
            new_issues=[i.fingerprint for i in decision.new],
        )
        if decision.dropped:
            self.log.info("dropped %d issue(s): %s", len(decision.dropped), decision.drop_counts())
        # relapses are counted; issues out of attempts are escalated once, not analysed
        review = await review_attempts(
            self.conns, self.policy, decision.new, self.cycle_id, self.now
        )
        self.notices.extend(review.notices)
        self.escalated = review.escalated
        if review.reported:
            await self.confirm(review.reported)
        return review.remaining

    # --- Stage 2 --------------------------------------------------------------------
    async def enrich(self, issues: list[Issue]) -> LogContext:
        t = time.perf_counter()
        logs = await fetch_log_context(
            self.conns.loki, issues, self.policy.logs, self.now, self.conns.secrets
        )
        self.timings["logs"] = time.perf_counter() - t
        if logs.status == "unavailable":
            self.notices.append("Loki unavailable: analysis ran without logs")
        self.update(log_status=logs.status)
        return logs

    async def analyse(
        self, issues: list[Issue], detection: Detection, logs: LogContext
    ) -> Analysis | None:
        t = time.perf_counter()
        request = build_analysis_request(
            issues,
            policy=self.policy,
            logs=logs,
            top_cpu=detection.top_cpu,
            top_memory=detection.top_memory,
        )
        self.update(issues_omitted_from_prompt=request.issues_omitted)
        self.omitted = request.omitted_fingerprints
        excerpt, reason = "", ""
        try:
            reply = await ask_claude(self.conns.claude, request)
            model = reply.model
            self.update(usage=reply.usage, model=model, cost_usd=estimate_cost(reply.usage, model))
            analysis = read_analysis(reply)
            self.update(analysis_summary=analysis.summary, analysis_notes=analysis.notes)
            self.timings["analysis"] = time.perf_counter() - t
            return analysis
        except UpstreamError as exc:
            reason = f"Claude unreachable after retries: {exc}"
        except AnalysisUnreadable as exc:
            reason, excerpt = f"the answer could not be read ({exc.reason})", exc.excerpt
        self.timings["analysis"] = time.perf_counter() - t
        self.log.error("analysis unavailable: %s", reason)
        self.notices.append(f"analysis unavailable: {reason}")
        posted = await self.post(
            "analysis-unavailable message",
            render.analysis_unavailable_message(
                issues, reason=reason, excerpt=excerpt, cycle_id=self.cycle_id
            ),
        )
        if posted:
            await self.confirm([i.fingerprint for i in issues])
        self.update(outcome=CycleOutcome.ANALYSIS_UNAVAILABLE)
        return None

    async def vet(self, analysis: Analysis, issues: list[Issue]) -> Vetting:
        since = self.now - timedelta(
            seconds=max(self.policy.attempt_window_seconds, self.policy.cooldown_seconds)
        )
        history, pending = await read_attempt_history(
            self.conns.ledger, [i.fingerprint for i in issues], since
        )
        vetting = vet_actions(
            analysis.actions,
            issues,
            policy=self.policy,
            policy_hash=policy_hash(self.policy),
            history=history,
            pending_approvals=pending,
            cycle_id=self.cycle_id,
            now=self.now,
        )
        outcomes = [
            ActionOutcome(
                catalog_key=a.catalog_key,
                host=a.host,
                parameters=a.parameters,
                risk=a.risk.value,
                policy="allowed",
                action_id=a.action_id,
            )
            for a in vetting.approved
        ]
        outcomes += [
            ActionOutcome(
                catalog_key=r.action.catalog_key,
                host=r.action.host,
                parameters=r.action.parameters,
                risk=r.action.risk.value,
                policy=r.reason,
            )
            for r in vetting.rejected
        ]
        self.update(actions=outcomes)
        return vetting

    # --- routing ----------------------------------------------------------------------
    async def route(
        self,
        analysis: Analysis,
        vetting: Vetting,
        issues: list[Issue],
        dispatch: DispatchMode,
        dispatch_options: dict[str, Any],
    ) -> DispatchResult:
        manual: list[ManualIssue] = [*analysis.manual_issues, *rejections_as_manual(vetting)]
        if self.report.issues_omitted_from_prompt:
            manual.append(
                ManualIssue(
                    host="(several)",
                    severity="warning",
                    source="capacity",
                    problem=f"{self.report.issues_omitted_from_prompt} issues were not analysed "
                    "(prompt token budget); see the cycle report in Prefect.",
                    recommendation="Review them by hand or raise prompt_token_budget.",
                    fingerprints=self.omitted,
                )
            )
        actions = vetting.approved
        # Every issue accounted for: an approval request, a manual issue, a named "no
        # action needed" — or posted as not addressed. Never silently "nothing to do".
        coverage = cover_issues(
            issues, actions=actions, manual=manual, no_action=analysis.no_action_needed
        )
        unaddressed, no_action = coverage.unaddressed, coverage.no_action
        self.update(
            manual_issues=len(manual),
            coverage={c.issue.fingerprint: c.label for c in coverage.issues},
        )
        if unaddressed:
            self.notices.append(
                f"{len(unaddressed)} issue(s) not addressed by the analysis: posted for a human"
            )
        manual_ok = bool(manual) and await self.post(
            "manual issues", render.manual_issues_message(manual, cycle_id=self.cycle_id)
        )
        unaddressed_ok = bool(unaddressed) and await self.post(
            "issues not addressed by the analysis",
            render.unaddressed_issues_message(
                unaddressed, notes=analysis.notes, cycle_id=self.cycle_id
            ),
        )
        no_action_ok = bool(no_action) and await self.post(
            "no-action-needed message",
            render.no_action_needed_message(
                [(c.issue, c.no_action_reason or "") for c in no_action],
                summary=analysis.summary,
                cycle_id=self.cycle_id,
            ),
        )
        if len(actions) > 1:
            await self.post(
                "summary",
                [render.summary_message(analysis.summary, actions, cycle_id=self.cycle_id)],
            )
        result = DispatchResult()
        if actions:
            t = time.perf_counter()
            result = await dispatch_actions(
                actions, mode=dispatch, options=dispatch_options, ledger=self.conns.ledger
            )
            self.timings["dispatch"] = time.perf_counter() - t
            self.notices.extend(result.errors.values())
        if actions:
            outcome = CycleOutcome.ACTIONS
        elif manual or unaddressed:
            outcome = CycleOutcome.MANUAL_ONLY
        else:
            outcome = CycleOutcome.NO_ACTION_NEEDED
        self.update(
            outcome=outcome,
            actions=[
                a.model_copy(
                    update={
                        "dispatched": a.action_id in result.dispatched,
                        "flow_run_id": result.dispatched.get(a.action_id or ""),
                        "dispatch_error": result.errors.get(a.action_id or ""),
                    }
                )
                for a in self.report.actions
            ],
        )
        # Reported only when people saw it: an action's issues once it is dispatched, the
        # rest once the message that carries them is posted; the others are released.
        await self.confirm(
            coverage.reported(
                dispatched=result.dispatched,
                manual_posted=manual_ok,
                no_action_posted=no_action_ok,
                unaddressed_posted=unaddressed_ok,
            )
        )
        return result

    async def confirm(self, fingerprints: list[str]) -> None:
        await confirm_reported(self.conns.ledger, fingerprints, self.cycle_id, self.now)
        self.update(reported=sorted(set(self.report.reported) | set(fingerprints)))

    async def finish(self) -> CycleReport:
        self.notices += operator_controls.maintenance_notices(self.policy, self.report, self.now)
        self.update(finished_at=datetime.now(UTC), notices=self.notices, stage_seconds=self.timings)
        r = self.report
        unreported = set(r.new_issues) - set(r.reported)
        if unreported:
            try:
                await self.conns.ledger.release_claims(unreported, cycle_id=self.cycle_id)
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
            await self.conns.ledger.record_cycle_end(
                r.cycle_id,
                actions_dispatched=sum(a.dispatched for a in r.actions),
                report=r.model_dump(mode="json", exclude={"issues"}),
                now=datetime.now(UTC),
            )
            await post_cycle_summary(self.conns, r.cycle_id)  # its actions all ended already
        except UpstreamError as exc:
            self.log.error("could not record the cycle in the ledger: %s", exc)
        # heartbeat, dead-man's recovery, self-metrics (artifact, textfile, push)
        await operator_controls.cycle_completed(self.conns, r, self.controls)
        self.log.info("cycle %s: %s", r.cycle_id, r.outcome.value)
        return r


NEEDED_BLOCKS = ("prometheus", "loki", "discord", "claude", "ledger")


@flow(name="remediation-cycle", log_prints=False, retries=0)
async def remediation_cycle(
    policy: dict[str, Any] | None = None,
    blocks: BlockNames = BlockNames(),  # noqa: B008 - an immutable pydantic default
    dispatch: DispatchMode = "auto",
    dispatch_options: dict[str, Any] | None = None,
    controls: operator_controls.OperatorSettings = operator_controls.OperatorSettings(),  # noqa: B008
) -> CycleReport:
    """One pass of the runbook: find issues, ask Claude, vet, route, dispatch actions."""
    now = datetime.now(UTC)
    cycle_id = str(flow_run.get_id() or uuid.uuid4())
    try:  # an invalid policy fails here, naming the field
        resolved = await resolve_policy(policy, blocks)
    except ConfigError as exc:
        if blocks.policy is not None:  # an edit in the UI broke it: say so, once
            await announce_policy_state(blocks, cycle_id, now, exc)
        raise
    get_run_logger().info("policy %s from %s", resolved.hash, resolved.source)
    conns = await open_connections(blocks, NEEDED_BLOCKS)
    # A runner's token in a log line must be masked before the prompt too.
    await add_secrets(conns, blocks, ("awx", "semaphore"))
    async with conns:
        cycle = _Cycle(conns, resolved.policy, cycle_id, now, controls)
        if blocks.policy is not None:
            await announce_policy_state(blocks, cycle_id, now, None, conns)
        try:
            await conns.ledger.record_cycle_start(cycle_id, flow_run_id=flow_run.get_id(), now=now)
        except UpstreamError as exc:
            # Without the ledger nothing can be deduplicated, and the dead-man's switch
            # (which lives in the ledger) cannot speak: say it here, on every cycle.
            await cycle.post("ledger notice", [render.ledger_unavailable_message(exc, cycle_id)])
            raise
        await operator_controls.check_dead_mans_switch(conns, "cycle", now)
        detection = await cycle.detect()
        if detection.prometheus_unreachable:
            cycle.update(outcome=CycleOutcome.PROMETHEUS_UNREACHABLE)
            return await cycle.finish()
        new = await cycle.dedup(detection)
        if not new:
            cycle.update(
                outcome=CycleOutcome.MANUAL_ONLY
                if cycle.escalated
                else (CycleOutcome.NO_ISSUES if not detection.issues else CycleOutcome.ALL_CACHED)
            )
            return await cycle.finish()
        if await operator_controls.cycle_paused_by_operator(conns, now):
            cycle.update(outcome=CycleOutcome.PAUSED_BY_OPERATOR)
            return await cycle.finish()
        logs = await cycle.enrich(new)
        analysis = await cycle.analyse(new, detection, logs)
        if analysis is None:
            return await cycle.finish()
        vetting = await cycle.vet(analysis, new)
        await cycle.route(
            analysis,
            vetting,
            new,
            dispatch,
            {**(dispatch_options or {}), "blocks": blocks.model_dump(), "policy": policy},
        )
        return await cycle.finish()


POLICY_ALERT = "policy-invalid"


async def announce_policy_state(
    blocks: BlockNames,
    cycle_id: str,
    now: datetime,
    error: ConfigError | None,
    conns: Connections | None = None,
) -> None:
    """Post once when the policy block turns invalid, and once when it is valid again
    (the ledger's alert state remembers which was said last). Without `conns` (the run
    is failing at its start) it opens only Discord and the ledger."""
    log = get_run_logger()
    async with AsyncExitStack() as stack:
        try:
            if conns is None:
                conns = await stack.enter_async_context(
                    await open_connections(blocks, ("discord", "ledger"))
                )
            changed = await conns.ledger.set_alert_state(
                POLICY_ALERT, firing=error is not None, now=now, detail=str(error or "")[:500]
            )
        except (UpstreamError, ConfigError) as exc:  # the run's own error says the rest
            log.error("could not record the policy state: %s", exc)
            return
        if not changed:
            return
        if error is not None:
            embed = render.notice_message(
                f"⚠️ Policy block {blocks.policy!r} is invalid — remediation stopped",
                f"{error}\nEvery run fails at its start until the block is fixed "
                "(`remediation-policy validate`, then `remediation-policy apply`).",
                cycle_id=cycle_id,
            )
        else:
            embed = render.notice_message(
                f"✅ Policy block {blocks.policy!r} is valid again",
                "Cycles run normally.",
                cycle_id=cycle_id,
                color=render.GREEN,
            )
        await post_notice(conns, embed, log)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run one cycle locally against the configured blocks."""
    parser = argparse.ArgumentParser(
        prog="remediation-cycle",
        description="Run one remediation cycle locally (actions run in-process).",
    )
    parser.add_argument("--policy", help="policy file (YAML or JSON)")
    parser.add_argument("--blocks", help='block names as JSON, e.g. \'{"discord": "bot"}\'')
    parser.add_argument(
        "--dispatch",
        choices=["inline", "none"],
        default="inline",
        help="inline: run each action in this process; none: only propose",
    )
    args = parser.parse_args(argv)
    from tasks.policy_file import read_policy_file

    data = read_policy_file(args.policy) if args.policy else None
    names = BlockNames.model_validate_json(args.blocks) if args.blocks else BlockNames()
    report = asyncio.run(remediation_cycle(policy=data, blocks=names, dispatch=args.dispatch))
    print(
        f"{report.outcome.value}: {len(report.issues)} issues, "
        f"{sum(a.dispatched for a in report.actions)} actions dispatched"
    )
    return 0
