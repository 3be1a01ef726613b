"""PromQL builders and rule validation."""

import pytest
from pydantic import ValidationError

from core.checks import DetectionSettings, ThresholdRule, build_queries
from core.models import CheckName, Severity


def test_default_queries_cover_eight_checks_and_host_down() -> None:
    q = build_queries(DetectionSettings())
    assert set(q) == {
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
