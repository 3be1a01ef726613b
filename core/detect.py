"""Turn the checks' answers into issues (pure; `now` is passed in)."""

from __future__ import annotations

import math
from datetime import datetime

from pydantic import Field

from core.checks import (
    CHECKS,
    CONTEXT_CHECKS,
    CheckKind,
    DetectionSettings,
    ThresholdRule,
    spec_of,
)
from core.models import CheckName, Frozen, Issue
from core.wire import Sample

COMPARE = {
    ">": lambda v, t: v > t,
    ">=": lambda v, t: v >= t,
    "<": lambda v, t: v < t,
    "<=": lambda v, t: v <= t,
    "==": lambda v, t: v == t,
}

# Checks whose answer says which hosts are up: only they speak for a down host.
AVAILABILITY_CHECKS = frozenset(s.name for s in CHECKS if s.kind is CheckKind.AVAILABILITY)


class CheckAnswer(Frozen):
    """One check's query and what came back: samples, or the error that stopped it."""

    check: str
    query: str
    samples: list[Sample] | None = None
    error: str | None = None
    seconds: float = 0.0


class ProcessUsage(Frozen):
    host: str
    process: str
    value: float


class Detection(Frozen):
    """Everything Stage 1 learned in one cycle."""

    issues: list[Issue]
    checks_ok: frozenset[str] = Field(description="Checks whose answer was usable.")
    check_errors: dict[str, str] = Field(default_factory=dict)
    hosts_up: frozenset[str] = frozenset()
    hosts_down: frozenset[str] = frozenset()
    top_cpu: list[ProcessUsage] = Field(default_factory=list)
    top_memory: list[ProcessUsage] = Field(default_factory=list)

    @property
    def prometheus_unreachable(self) -> bool:
        """Every check failed: Prometheus itself is down or unusable."""
        return not self.checks_ok and bool(self.check_errors)


class MalformedAnswer(ValueError):
    """An answer that lacks what the check needs (names the check)."""


def host_name(labels: dict[str, str], settings: DetectionSettings) -> str | None:
    value = labels.get(settings.host_label)
    if value is None:
        return None
    if settings.strip_port and value.count(":") == 1:
        value = value.rsplit(":", 1)[0]
    return value


def _subject(check: str, labels: dict[str, str]) -> str:
    label = spec_of(check).subject_label
    if label is None:
        return "-"
    value = labels.get(label)
    if not value:
        raise MalformedAnswer(f"check {check!r}: a series lacks the {label!r} label")
    return value


def _issues_from(
    check: CheckName,
    rule: ThresholdRule,
    samples: list[Sample],
    settings: DetectionSettings,
    now: datetime,
) -> list[Issue]:
    issues = []
    spec = spec_of(check)
    compare = COMPARE[rule.operator]
    for s in samples:
        host = host_name(s.labels, settings)
        if host is None:
            raise MalformedAnswer(
                f"check {check.value!r}: a series lacks the host label {settings.host_label!r}"
            )
        if math.isnan(s.value):
            raise MalformedAnswer(f"check {check.value!r}: NaN value for host {host!r}")
        if not compare(s.value, rule.threshold):
            continue
        subject = _subject(check.value, s.labels)
        issues.append(
            Issue(
                host=host,
                check=check,
                subject=subject,
                severity=rule.severity,
                value=s.value,
                threshold=rule.threshold,
                operator=rule.operator,
                unit=spec.unit,
                labels=dict(sorted(s.labels.items())),
                observed_at=now,
                summary=spec.summary_line(
                    subject, s.value, rule.operator, rule.threshold, rule.duration
                ),
            )
        )
    return issues


def _processes(
    samples: list[Sample], settings: DetectionSettings, check: str
) -> list[ProcessUsage]:
    out = []
    for s in samples:
        host = host_name(s.labels, settings)
        if host is None or math.isnan(s.value):
            continue
        out.append(ProcessUsage(host=host, process=_subject(check, s.labels), value=s.value))
    return sorted(out, key=lambda p: -p.value)


def evaluate(
    settings: DetectionSettings, answers: dict[str, CheckAnswer], now: datetime
) -> Detection:
    """Apply the threshold rules to the answers. A failed or malformed answer makes that
    check not-ok (it clears nothing) and does not stop the others."""
    issues: list[Issue] = []
    ok: set[str] = set()
    errors: dict[str, str] = {}
    hosts_up: set[str] = set()
    hosts_down: set[str] = set()
    context: dict[str, list[ProcessUsage]] = {name: [] for name in CONTEXT_CHECKS}

    for name, answer in answers.items():
        if answer.error is not None or answer.samples is None:
            errors[name] = answer.error or "no answer"
            continue
        try:
            if name in CONTEXT_CHECKS:
                context[name] = _processes(answer.samples, settings, name)
            else:
                check = CheckName(name)
                rule = settings.rule(check)
                if rule is None:
                    continue
                found = _issues_from(check, rule, answer.samples, settings, now)
                if check.value in AVAILABILITY_CHECKS:
                    down = {i.host for i in found}
                    hosts_down |= down
                    hosts_up |= {
                        h
                        for s in answer.samples
                        if (h := host_name(s.labels, settings)) and h not in down
                    }
                issues.extend(found)
            ok.add(name)
        except MalformedAnswer as exc:
            errors[name] = str(exc)

    if not ok >= AVAILABILITY_CHECKS:
        hosts_up = set()  # unknown: a down host must never clear anything
    # A down host's other series vanish; issues on it come only from host_down.
    issues = [i for i in issues if i.host not in hosts_down or i.check.value in AVAILABILITY_CHECKS]
    issues.sort(key=lambda i: (-i.severity.rank, i.host, i.check.value, i.subject))
    return Detection(
        issues=issues,
        checks_ok=frozenset(ok),
        check_errors=errors,
        hosts_up=frozenset(hosts_up),
        hosts_down=frozenset(hosts_down),
        top_cpu=context["top_cpu"],
        top_memory=context["top_memory"],
    )
