"""Stage 5: verify a finished job — the deterministic re-check, the logs since the job,
and Claude's verdict bounded by the re-check (`core.verify`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from prefect.logging import get_run_logger

from clients.errors import UpstreamError
from core.logs import format_context, selector
from core.models import CheckName
from core.policy import Policy
from core.verify import (
    Recheck,
    bound_verdict,
    combine_rechecks,
    evaluate_recheck,
    read_verdict,
    recheck_queries,
    verification_request,
)
from core.vetting import ProposedAction
from flows.connections import Connections
from flows.settings import ActionSettings
from tasks.verify import ask_verdict, fetch_logs_since, recheck_issue


class Verifier:
    def __init__(
        self, conns: Connections, policy: Policy, action: ProposedAction, settings: ActionSettings
    ) -> None:
        self.conns, self.policy, self.action, self.settings = conns, policy, action, settings
        self.log = get_run_logger()

    async def verify(
        self, job_state: str, tail: str, job_end: datetime
    ) -> tuple[str, str, Recheck]:
        await asyncio.sleep(self.settings.settle_seconds)
        window_s = int((datetime.now(UTC) - job_end).total_seconds())
        rechecks = []
        for issue in self.action.issues:
            queries = recheck_queries(issue, self.policy.detection, window_s)
            try:
                samples, errors = await recheck_issue(self.conns.prometheus, queries)
            except UpstreamError as exc:
                samples, errors = {}, [str(exc)]
            rechecks.append(
                evaluate_recheck(
                    issue,
                    self.policy.detection,
                    value_samples=samples.get("value"),
                    scrape_samples=samples.get("scrapes"),
                    errors=errors,
                )
            )
        recheck = combine_rechecks(rechecks)
        logs = await self._logs_since(job_end)
        claude = None
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
        except UpstreamError as exc:
            self.log.error("verification by Claude unavailable: %s", exc)
        verdict, moved = bound_verdict(claude[0] if claude else None, recheck)
        explanation = (claude[1] if claude else "") or recheck.detail
        if moved:
            explanation = f"{moved}. {explanation}"
        return verdict, explanation, recheck

    async def _logs_since(self, start: datetime) -> str:
        units = sorted(
            {
                i.subject
                for i in self.action.issues
                if i.check in (CheckName.FAILED_UNIT, CheckName.INACTIVE_UNIT)
            }
        )
        s = self.policy.logs
        logql = selector(self.action.host, units, s)
        # from the job's end to now: the chart's "last 5 minutes" at a 5-minute settle time
        try:
            streams = await fetch_logs_since(self.conns.loki, logql, start, datetime.now(UTC))
            return format_context(streams, s, secrets=self.conns.secrets).text
        except UpstreamError as exc:
            return f"logs unavailable: {exc}"
