"""The remediation cycle's decisions, and its report as the cycle builds it.

Pure: the cycle's I/O (`tasks.cycle`) asks these where the seed chart branches — an empty
Prometheus answer is not "all clear", where the cycle ended, which rows the report
lists for the proposed actions, the manual issue for issues left out of the prompt.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.analysis import Analysis, ManualIssue
from core.coverage import Coverage, rejections_as_manual
from core.detect import Detection
from core.dispatch import DispatchResult
from core.models import CheckName, Frozen
from core.policy import Policy
from core.report import ActionOutcome, CycleOutcome, CycleReport
from core.vetting import Vetting
from core.words import maintenance_notices


class Routing(Frozen):
    """What the route step posted: which messages reached people, and what covers which
    issue (an issue counts as reported once what covers it was seen)."""

    coverage: Coverage
    manual_posted: bool = False
    no_action_posted: bool = False
    unaddressed_posted: bool = False
    manual_or_unaddressed: bool = False

    def reported(self, dispatched: Iterable[str]) -> list[str]:
        return self.coverage.reported(
            dispatched=set(dispatched),
            manual_posted=self.manual_posted,
            no_action_posted=self.no_action_posted,
            unaddressed_posted=self.unaddressed_posted,
        )


def nothing_scraped(detection: Detection) -> bool:
    """Prometheus answered `up` with nothing: no host was looked at, so an empty answer
    everywhere is not "all clear"."""
    return CheckName.HOST_DOWN.value in detection.checks_ok and not (
        detection.hosts_up or detection.hosts_down
    )


def announce_prometheus(*, changed: bool | None, down: bool) -> bool:
    """Whether the Prometheus alert's notice is posted: when its state changed; when the
    ledger could not say (`changed` None), an outage is posted every cycle and a recovery
    never (silence must not read as "all clear")."""
    return down if changed is None else changed


def outcome_without_new_issues(*, escalated: bool, found_any: bool) -> CycleOutcome:
    """Where a cycle with nothing left to analyse ended."""
    if escalated:
        return CycleOutcome.MANUAL_ONLY
    return CycleOutcome.ALL_CACHED if found_any else CycleOutcome.NO_ISSUES


def routed_outcome(*, actions: bool, manual_or_unaddressed: bool) -> CycleOutcome:
    """Where a routed cycle ended: actions, manual issues only, or no action needed."""
    if actions:
        return CycleOutcome.ACTIONS
    return CycleOutcome.MANUAL_ONLY if manual_or_unaddressed else CycleOutcome.NO_ACTION_NEEDED


def attempts_since(policy: Policy, now: datetime) -> datetime:
    """How far back vetting reads the attempt history (attempt limits and cooldown)."""
    return now - timedelta(seconds=max(policy.attempt_window_seconds, policy.cooldown_seconds))


def action_outcomes(vetting: Vetting) -> list[ActionOutcome]:
    """The report's rows: every proposed action, allowed or with its rejection reason."""
    allowed = [
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
    return allowed + [
        ActionOutcome(
            catalog_key=r.action.catalog_key,
            host=r.action.host,
            parameters=r.action.parameters,
            risk=r.action.risk.value,
            policy=r.reason,
        )
        for r in vetting.rejected
    ]


def with_dispatch(outcomes: Sequence[ActionOutcome], result: DispatchResult) -> list[ActionOutcome]:
    """The rows again, each with whether it was dispatched, its run, or why not."""
    return [
        a.model_copy(
            update={
                "dispatched": a.action_id in result.dispatched,
                "flow_run_id": result.dispatched.get(a.action_id or ""),
                "dispatch_error": result.errors.get(a.action_id or ""),
            }
        )
        for a in outcomes
    ]


def omitted_from_prompt(count: int, fingerprints: list[str]) -> ManualIssue | None:
    """The issues left out of the prompt (token budget) go to a human as one manual issue."""
    if not count:
        return None
    return ManualIssue(
        host="(several)",
        severity="warning",
        source="capacity",
        problem=f"{count} issues were not analysed "
        "(prompt token budget); see the cycle report in Prefect.",
        recommendation="Review them by hand or raise prompt_token_budget.",
        fingerprints=fingerprints,
    )


def manual_issues(
    analysis: Analysis, vetting: Vetting, omitted: ManualIssue | None
) -> list[ManualIssue]:
    """Everything that goes to a human: the model's, policy rejections', the omitted."""
    extra = [omitted] if omitted else []
    return [*analysis.manual_issues, *rejections_as_manual(vetting), *extra]


@dataclass
class CycleProgress:
    """The cycle's report as it is built, with its visible notices and stage timings."""

    report: CycleReport
    notices: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    escalated: list[str] = field(default_factory=list)
    omitted: list[str] = field(default_factory=list)  # left out of the prompt (token budget)

    @classmethod
    def start(cls, cycle_id: str, now: datetime) -> CycleProgress:
        return cls(CycleReport(cycle_id=cycle_id, started_at=now, outcome=CycleOutcome.NO_ISSUES))

    def update(self, **fields: Any) -> None:
        self.report = self.report.model_copy(update=fields)

    def reported(self, fingerprints: Iterable[str]) -> None:
        self.update(reported=sorted(set(self.report.reported) | set(fingerprints)))

    @property
    def unreported(self) -> set[str]:
        """New issues no message people saw covered: their claims are released."""
        return set(self.report.new_issues) - set(self.report.reported)

    def finished(self, policy: Policy, now: datetime, finished_at: datetime) -> CycleReport:
        """The final report: maintenance notices added, notices and timings in."""
        self.notices += maintenance_notices(policy, self.report, now)
        self.update(finished_at=finished_at, notices=self.notices, stage_seconds=self.timings)
        return self.report
