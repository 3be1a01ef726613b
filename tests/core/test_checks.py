"""PromQL builders and rule validation."""

import pytest
from pydantic import ValidationError

from core.checks import (
    CHECKS,
    CONTEXT_CHECKS,
    DEFAULT_RULES,
    CheckKind,
    CheckSpec,
    DefaultRule,
    DetectionSettings,
    ThresholdRule,
    build_queries,
    spec_of,
)
from core.models import CheckName, Severity


def test_default_queries_cover_nine_checks_and_host_down() -> None:
    q = build_queries(DetectionSettings())
    assert set(q) == {
        "clock_sync",
        "cpu",
        "memory",
        "disk",
        "io_pressure",
        "failed_unit",
        "inactive_unit",
        "host_down",
        "top_cpu",
        "top_memory",
    }
    assert q["cpu"] == (
        'min_over_time((100 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))'
        " * 100)[5m:30s]) > 90"
    )
    assert q["memory"].endswith(") < 10")
    assert 'fstype!~"tmpfs|' in q["disk"] and q["disk"].endswith(") > 90")
    assert q["failed_unit"] == '(node_systemd_unit_state{state="failed"}) == 1'
    assert r'name=~"ssh\\.service|fail2ban\\.service|nginx\\.service"' in q["inactive_unit"]
    assert r"fuse\\..*" in q["disk"]
    assert q["host_down"] == "up"
    assert q["top_cpu"].startswith("topk(5, sum by (instance, groupname)")


def test_sustained_rule_for_less_than_uses_max_over_time() -> None:
    s = DetectionSettings(
        rules=(
            ThresholdRule(
                check=CheckName.MEMORY,
                operator="<",
                threshold=10,
                severity=Severity.CRITICAL,
                duration="2m",
            ),
        )
    )
    assert build_queries(s)["memory"].startswith("max_over_time((node_memory_MemAvailable")


def test_overrides_and_custom_host_label() -> None:
    s = DetectionSettings(
        host_label="host",
        rate_window="15s",
        queries={"cpu": '100 - avg by ($h) (irate(cpu_idle{mode="idle"}[$rate])) * 100'},
    )
    q = build_queries(s)
    assert 'avg by (host) (irate(cpu_idle{mode="idle"}[15s]))' in q["cpu"]
    assert "sum by (host, groupname)" in q["top_cpu"]


def test_disabled_rule_drops_the_check() -> None:
    rules = tuple(
        r.model_copy(update={"enabled": r.check != CheckName.IO_PRESSURE})
        for r in DetectionSettings().rules
    )
    assert "io_pressure" not in build_queries(DetectionSettings(rules=rules))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate_window": "5 minutes"}, "rate_window"),
        ({"host_label": "in-stance"}, "host_label"),
        ({"critical_units": ('nginx"}',)}, "critical_units"),
        ({"queries": {"gpu": "x"}}, "queries"),
        (
            {"rules": ({"check": "cpu", "operator": "~", "threshold": 1, "severity": "warning"},)},
            "rules.0.operator",
        ),
        (
            {
                "rules": (
                    {
                        "check": "cpu",
                        "operator": ">",
                        "threshold": 1,
                        "severity": "warning",
                        "duration": "five",
                    },
                )
            },
            "rules.0.duration",
        ),
    ],
)
def test_invalid_settings_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        DetectionSettings(**kwargs)
    locs = [".".join(str(p) for p in e["loc"]) for e in err.value.errors()]
    assert any(loc.startswith(field) for loc in locs) or field in str(err.value), locs


# --- the registry -------------------------------------------------------------------------
def test_check_name_has_one_member_per_registered_issue_check_in_registry_order() -> None:
    assert [c.value for c in CheckName] == [s.name for s in CHECKS if s.raises_issues]
    assert CheckName.CPU == "cpu" and CheckName("host_down") is CheckName.HOST_DOWN
    assert set(CONTEXT_CHECKS) == {s.name for s in CHECKS if s.kind is CheckKind.CONTEXT}


def test_the_default_rules_are_the_specs_rules_in_registry_order() -> None:
    assert [
        (r.check.value, r.operator, r.threshold, r.severity, r.duration) for r in DEFAULT_RULES
    ] == [
        (s.name, s.rule.operator, s.rule.threshold, s.rule.severity, s.rule.duration)
        for s in CHECKS
        if s.rule is not None
    ]
    assert DetectionSettings().rules == DEFAULT_RULES


def test_every_registered_check_has_a_query_and_every_issue_check_a_title() -> None:
    queries = build_queries(DetectionSettings())
    for spec in CHECKS:
        assert spec.name in queries, spec.name
        assert spec.title or not spec.raises_issues, spec.name
    assert spec_of(CheckName.DISK).subject_label == "mountpoint"
    assert spec_of("top_cpu").unit == "cores"


def test_a_policy_may_override_the_query_of_any_registered_check_and_no_other() -> None:
    for spec in CHECKS:
        assert DetectionSettings(queries={spec.name: "vector(0)"}).queries == {
            spec.name: "vector(0)"
        }
    with pytest.raises(ValidationError, match="unknown check"):
        DetectionSettings(queries={"gpu": "vector(0)"})
    with pytest.raises(ValidationError):
        ThresholdRule(check="gpu", operator=">", threshold=1, severity=Severity.WARNING)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"query": "foo{$host}"}, "unknown query variable"),
        ({"metrics": ("node_other",)}, "does not read"),
        ({"title": ""}, "needs a title"),
        ({"kind": CheckKind.CONTEXT}, "cannot have a rule"),
        ({"subject_label": None, "logs": True}, "subject unit"),
        ({"name": "Clock-Sync"}, "lower-case"),
    ],
)
def test_an_inconsistent_check_spec_is_refused(change: dict, message: str) -> None:
    fields = {
        "name": "clock",
        "kind": CheckKind.GAUGE,
        "query": 'node_x{job=~"$units"} > $h',
        "metrics": ("node_x",),
        "title": "Clock",
        "rule": DefaultRule(operator="==", threshold=1, severity=Severity.WARNING),
    }
    with pytest.raises(ValidationError, match=message):
        CheckSpec(**(fields | change))
    CheckSpec(**fields)  # the unchanged spec is fine


def test_summaries_follow_the_specs_style() -> None:
    assert (
        spec_of(CheckName.DISK).summary_line("/var", 95.46, ">", 90, None)
        == "Disk used on /var 95.5% (> 90)"
    )
    assert (
        spec_of(CheckName.CPU).summary_line("-", 97, ">", 90, "5m")
        == "CPU used 97.0% (> 90 for 5m)"
    )
    assert (
        spec_of(CheckName.FAILED_UNIT).summary_line("nginx.service", 1, "==", 1, None)
        == "Unit failed: nginx.service"
    )
    assert spec_of(CheckName.HOST_DOWN).summary_line("-", 0, "==", 0, None) == (
        "Host down (scrape target up == 0)"
    )
