"""Evaluating the checks' answers into issues."""

import math
import time
from datetime import UTC, datetime

from core.checks import DetectionSettings
from core.detect import CheckAnswer, evaluate
from core.models import CheckName
from core.wire import Sample

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
S = DetectionSettings()


def ans(check: str, *samples: tuple[dict, float]) -> CheckAnswer:
    return CheckAnswer(
        check=check,
        query="q",
        samples=[Sample(labels=labels, value=value, timestamp=0.0) for labels, value in samples],
    )


def full_answers() -> dict[str, CheckAnswer]:
    return {
        "cpu": ans("cpu", ({"instance": "web-01:9100"}, 97.0)),
        "memory": ans("memory", ({"instance": "web-02"}, 5.0)),
        "disk": ans("disk", ({"instance": "db-01", "mountpoint": "/var"}, 97.0)),
        "io_pressure": ans("io_pressure", ({"instance": "db-01"}, 35.0)),
        "failed_unit": ans("failed_unit", ({"instance": "web-02", "name": "nginx.service"}, 1.0)),
        "inactive_unit": ans("inactive_unit", ({"instance": "web-01", "name": "ssh.service"}, 1)),
        "host_down": ans(
            "host_down",
            ({"instance": "web-01"}, 1),
            ({"instance": "web-02"}, 1),
            ({"instance": "db-01"}, 1),
            ({"instance": "db-02"}, 0),
        ),
        "top_cpu": ans("top_cpu", ({"instance": "web-01", "groupname": "java"}, 1.8)),
        "top_memory": ans("top_memory", ({"instance": "web-01", "groupname": "java"}, 3e9)),
    }


def test_every_check_yields_its_issue() -> None:
    d = evaluate(S, full_answers(), NOW)
    got = {i.fingerprint for i in d.issues}
    assert got == {
        "web-01|cpu|-",
        "web-02|memory|-",
        "db-01|disk|/var",
        "db-01|io_pressure|-",
        "web-02|failed_unit|nginx.service",
        "web-01|inactive_unit|ssh.service",
        "db-02|host_down|-",
    }
    assert d.hosts_up == {"web-01", "web-02", "db-01"}
    assert d.hosts_down == {"db-02"}
    assert d.checks_ok == set(full_answers())
    assert d.top_cpu[0].process == "java"
    cpu = next(i for i in d.issues if i.check is CheckName.CPU)
    assert cpu.value == 97.0 and cpu.threshold == 90
    assert "for 5m" in cpu.summary


def test_failed_query_is_reported_and_others_proceed() -> None:
    answers = full_answers()
    answers["disk"] = CheckAnswer(check="disk", query="q", error="HTTP 503")
    d = evaluate(S, answers, NOW)
    assert "disk" not in d.checks_ok
    assert d.check_errors == {"disk": "HTTP 503"}
    assert len(d.issues) == 6


def test_malformed_answer_names_the_check() -> None:
    answers = full_answers()
    answers["disk"] = ans("disk", ({"instance": "db-01"}, 97.0))
    d = evaluate(S, answers, NOW)
    assert "mountpoint" in d.check_errors["disk"] and "'disk'" in d.check_errors["disk"]
    answers["cpu"] = ans("cpu", ({"instance": "web-01"}, math.nan))
    assert "NaN" in evaluate(S, answers, NOW).check_errors["cpu"]


def test_host_down_query_failing_means_no_host_is_known_up() -> None:
    answers = full_answers()
    answers["host_down"] = CheckAnswer(check="host_down", query="up", error="timeout")
    d = evaluate(S, answers, NOW)
    assert d.hosts_up == frozenset()


def test_all_failed_means_prometheus_unreachable() -> None:
    answers = {k: CheckAnswer(check=k, query="q", error="connect refused") for k in full_answers()}
    assert evaluate(S, answers, NOW).prometheus_unreachable


def test_evaluation_of_ten_thousand_hosts_is_fast() -> None:
    hosts = [f"host-{i:05d}" for i in range(10_000)]
    answers = {
        "host_down": ans("host_down", *(({"instance": h}, 1.0) for h in hosts)),
        "memory": ans("memory", *(({"instance": h}, 50.0) for h in hosts)),
        "failed_unit": ans(
            "failed_unit", *(({"instance": h, "name": "x.service"}, 1.0) for h in hosts[:100])
        ),
    }
    t = time.perf_counter()
    d = evaluate(S, answers, NOW)
    elapsed = time.perf_counter() - t
    assert len(d.issues) == 100 and len(d.hosts_up) == 10_000
    assert elapsed < 2.0  # generous here; benchmarks/ measures the real figure
