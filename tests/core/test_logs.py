"""LogQL building and the Loki context rules (20 per stream, 3,000 chars, redaction)."""

from datetime import UTC, datetime

from core.logs import LogSettings, format_context, log_queries
from core.models import CheckName, Issue, Severity
from core.wire import LogEntry, LogStream

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def issue(host: str, check: CheckName, subject: str) -> Issue:
    return Issue(
        host=host, check=check, subject=subject, severity=Severity.CRITICAL, observed_at=NOW
    )


def test_one_query_per_host_for_unit_issues_only() -> None:
    qs = log_queries(
        [
            issue("web-02", CheckName.FAILED_UNIT, "nginx.service"),
            issue("web-02", CheckName.INACTIVE_UNIT, "ssh.service"),
            issue("web-01", CheckName.CPU, "-"),
            issue("db-01", CheckName.FAILED_UNIT, "postgresql@15-main.service"),
        ],
        LogSettings(),
    )
    assert [q.host for q in qs] == ["db-01", "web-02"]
    assert qs[1].logql == '{host="web-02", unit=~"nginx\\\\.service|ssh\\\\.service"}'
    assert qs[1].units == ("nginx.service", "ssh.service")


def test_label_names_configurable_and_extra_selector() -> None:
    [q] = log_queries(
        [issue("h", CheckName.FAILED_UNIT, "a.service")],
        LogSettings(
            host_label="hostname", unit_label="systemd_unit", extra_selector='job="journal"'
        ),
    )
    assert q.logql.startswith('{hostname="h", systemd_unit=~"a\\\\.service", job="journal"}')


def stream(unit: str, n: int, line: str = "line {i}") -> LogStream:
    return LogStream(
        labels={"host": "web-02", "unit": unit},
        entries=[LogEntry(ts_ns=1_000 + i, line=line.format(i=i)) for i in range(n)],
    )


def test_newest_twenty_per_stream_oldest_first() -> None:
    ctx = format_context([stream("nginx.service", 50)], LogSettings())
    lines = ctx.text.splitlines()
    assert lines[0] == "=== host=web-02 unit=nginx.service ==="
    assert lines[1:] == [f"line {i}" for i in range(30, 50)]
    assert ctx.entries == 20 and ctx.status == "ok" and not ctx.truncated


def test_cut_at_three_thousand_chars_with_marker() -> None:
    ctx = format_context(
        [stream(f"u{k}.service", 20, "x" * 100 + " {i}") for k in range(5)], LogSettings()
    )
    assert len(ctx.text) <= 3000
    assert ctx.truncated and "[truncated:" in ctx.text


def test_secrets_redacted_before_anything_sees_them() -> None:
    ctx = format_context(
        [
            stream("app.service", 2, "connecting with password=hunter2hunter2 {i}"),
            stream("b.service", 1, "Authorization: Bearer abcdefghijklmnop"),
        ],
        LogSettings(),
        secrets=["planted-secret-value"],
    )
    assert "hunter2hunter2" not in ctx.text and "abcdefghijklmnop" not in ctx.text


def test_loki_down_gives_explicit_unavailable_context() -> None:
    ctx = format_context([], LogSettings(), errors=["Loki query_range failed: connect refused"])
    assert ctx.status == "unavailable"
    assert ctx.text.startswith("logs unavailable:")
    assert format_context([], LogSettings()).status == "no_data"
