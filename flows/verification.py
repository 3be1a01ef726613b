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
from core.settings import ActionSettings
from core.verify import (
    Recheck,
    Verification,
    action_recheck,
    bound_verdict,
    read_verdict,
    recheck_queries,
    settle_delay,
    verification_request,
)
from core.vetting import ProposedAction
from tasks.connections import Connections
from tasks.verify import ask_verdict, fetch_logs_since, recheck_issue

UNIT_CHECKS = (CheckName.FAILED_UNIT, CheckName.INACTIVE_UNIT)


class Verifier:
    def __init__(
        self, conns: Connections, policy: Policy, action: ProposedAction, settings: ActionSettings
    ) -> None:
        self.conns, self.policy, self.action, self.settings = conns, policy, action, settings
        self.log = get_run_logger()

    async def verify(self, job_state: str, tail: str, job_end: datetime) -> Verification:
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
