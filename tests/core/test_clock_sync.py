"""The clock-synchronisation check (node_exporter's timex collector) and its catalog job:
one `CheckSpec` and one `CatalogEntry`, with nothing else of the project told about it."""

from __future__ import annotations

from datetime import UTC, datetime

from core.checks import DetectionSettings, ThresholdRule, build_queries, spec_of
from core.detect import CheckAnswer, evaluate
from core.models import CheckName, Severity
from core.verify import evaluate_recheck, recheck_queries
from core.wire import Sample
from tests.core.factories import issue, vet

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
OUT_OF_SYNC = (
    "clamp_max((1 - node_timex_sync_status) + (abs(node_timex_offset_seconds) > bool 0.05), 1)"
)


def sample(value: float, **labels: str) -> Sample:
    return Sample(labels=labels, value=value, timestamp=0.0)


def test_the_clock_query_breaches_when_unsynchronised_or_skewed_for_five_minutes() -> None:
    queries = build_queries(DetectionSettings())
    assert queries["clock_sync"] == f"min_over_time(({OUT_OF_SYNC})[5m:30s]) == 1"
    rule = ThresholdRule(check=CheckName.CLOCK_SYNC, operator="==", threshold=1,
                         severity=Severity.WARNING)  # fmt: skip
    assert build_queries(DetectionSettings(rules=(rule,)))["clock_sync"] == f"({OUT_OF_SYNC}) == 1"


def test_an_out_of_sync_clock_is_one_warning_per_host_named_by_the_title() -> None:
    answer = CheckAnswer(
        check="clock_sync",
        query="q",
        samples=[sample(1, instance="web-02:9100", job="node"), sample(0, instance="db-01")],
    )
    [found] = evaluate(DetectionSettings(), {"clock_sync": answer}, NOW).issues
    assert found.fingerprint == "web-02|clock_sync|-"
    assert (found.severity, found.value, found.unit) == (Severity.WARNING, 1, "")
    assert found.summary == "Clock out of sync (unsynchronised or offset > 50 ms)"


def test_the_clock_is_rechecked_by_an_instant_query_after_one_scrape() -> None:
    clock = issue(host="web-02", check=CheckName.CLOCK_SYNC, subject="-")
    queries = recheck_queries(clock, DetectionSettings(), window_s=5.0)
    assert queries["value"] == (
        f'({OUT_OF_SYNC}) and on (instance) up{{instance=~"web\\\\-02(:[0-9]+)?"}}'
    )
    host = {"instance": "web-02:9100"}
    answers = {
        "value": [sample(0, **host)],
        "up": [sample(1, **host)],
        "scrapes_ok": [sample(1, **host)],
        "scrapes": [sample(1, **host)],
    }
    r = evaluate_recheck(clock, DetectionSettings(), answers)
    assert r.still_breaching is False and r.metric_lines() == ["clock_sync: 1 → 0"]
    assert spec_of(CheckName.CLOCK_SYNC).logs is False  # no unit subject to read logs of


def test_restart_time_sync_is_allowed_for_the_clock_issue_with_a_known_unit_only() -> None:
    clock = issue(host="web-02", check=CheckName.CLOCK_SYNC, subject="-")
    proposal = {
        "catalog_key": "restart_time_sync",
        "host": "web-02",
        "parameters": {"unit": "chrony.service"},
        "risk": "low",
        "fingerprints": [clock.fingerprint],
    }
    [allowed] = vet([proposal], [clock]).approved
    assert [i.fingerprint for i in allowed.issues] == ["web-02|clock_sync|-"]
    assert allowed.risk.value == "low" and allowed.template == "16"
    bad = {**proposal, "parameters": {"unit": "ntp.service"}}
    [rejected] = vet([bad], [clock]).rejected
    assert "unit must be one of" in rejected.reason
    unit = issue(host="web-02")  # a failed unit is not what it fixes
    wrong = {**proposal, "fingerprints": [unit.fingerprint]}
    assert vet([wrong], [unit]).approved == []
