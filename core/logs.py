"""Loki enrichment: which LogQL to ask, and how the answer becomes prompt context.

Only issues of checks whose spec says `logs` get logs (the failed/inactive-unit checks,
as in the seed chart): one query per affected host and its units. The context keeps the
newest 20 entries per stream, redacts secrets before anything else sees a line, and is
cut at 3,000 characters with a visible marker.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field, field_validator

from core.checks import CHECKS, LABEL_NAME
from core.models import CheckName, Frozen, Issue
from core.redact import redact
from core.wire import LogStream

# The checks whose subject is a unit whose logs are read (prompt and verification).
UNIT_CHECKS = tuple(CheckName(s.name) for s in CHECKS if s.logs)


class LogSettings(Frozen):
    host_label: str = Field(default="host", description="Loki label naming the host.")
    unit_label: str = Field(default="unit", description="Loki label naming the systemd unit.")
    extra_selector: str = Field(
        default="", description='Extra stream matchers, e.g. job="systemd-journal".'
    )
    lookback: timedelta = Field(default=timedelta(minutes=30), description="Window to read.")
    per_stream: int = Field(default=20, ge=1, le=1000, description="Newest entries per stream.")
    max_chars: int = Field(default=3000, ge=200, description="Cap of the whole context.")

    @field_validator("host_label", "unit_label")
    @classmethod
    def _label(cls, v: str) -> str:
        if not LABEL_NAME.match(v):
            raise ValueError(f"{v!r} is not a Loki label name")
        return v


class LogQuery(Frozen):
    host: str
    units: tuple[str, ...]
    logql: str
    limit: int


class LogContext(Frozen):
    """Log text for the prompt, and whether it is real, empty or unavailable."""

    status: Literal["ok", "no_data", "unavailable", "not_needed"]
    text: str = ""
    streams: int = 0
    entries: int = 0
    truncated: bool = False
    errors: list[str] = Field(default_factory=list)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def log_queries(issues: Iterable[Issue], settings: LogSettings) -> list[LogQuery]:
    """One LogQL query per affected host, covering that host's failed/inactive units."""
    units_by_host: dict[str, set[str]] = defaultdict(set)
    for issue in issues:
        if issue.check in UNIT_CHECKS:
            units_by_host[issue.host].add(issue.subject)
    out = []
    for host in sorted(units_by_host):
        units = tuple(sorted(units_by_host[host]))
        out.append(
            LogQuery(
                host=host,
                units=units,
                logql=selector(host, units, settings),
                # `limit` counts across streams: leave room for several streams per unit.
                limit=min(5000, settings.per_stream * len(units) * 5),
            )
        )
    return out


def selector(host: str, units: Iterable[str], settings: LogSettings) -> str:
    """The LogQL stream selector of a host (and, if given, some of its units)."""
    matchers = [f'{settings.host_label}="{_quote(host)}"']
    units = list(units)
    if units:
        regex = "|".join(re.escape(u) for u in units)
        matchers.append(f'{settings.unit_label}=~"{_quote(regex)}"')
    if settings.extra_selector.strip():
        matchers.append(settings.extra_selector.strip())
    return "{" + ", ".join(matchers) + "}"


def _label_text(labels: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def format_context(
    streams: Iterable[LogStream],
    settings: LogSettings,
    *,
    secrets: Iterable[str] = (),
    errors: Iterable[str] = (),
) -> LogContext:
    """Newest `per_stream` entries per stream, oldest first within a stream, redacted,
    the whole cut at `max_chars` with a visible marker."""
    secrets = list(secrets)
    errors = list(errors)
    blocks: list[str] = []
    n_streams = n_entries = 0
    for stream in sorted(streams, key=lambda s: _label_text(s.labels)):
        newest = sorted(stream.entries, key=lambda e: e.ts_ns, reverse=True)[: settings.per_stream]
        if not newest:
            continue
        n_streams += 1
        n_entries += len(newest)
        lines = [redact(e.line.replace("\r", " "), secrets) for e in reversed(newest)]
        blocks.append(f"=== {redact(_label_text(stream.labels), secrets)} ===\n" + "\n".join(lines))
    if not blocks:
        status = "unavailable" if errors else "no_data"
        text = "logs unavailable: " + "; ".join(errors) if errors else "no log entries found"
        return LogContext(status=status, text=redact(text, secrets), errors=errors)
    text = "\n\n".join(blocks)
    if errors:
        text += "\n\n[some logs unavailable: " + "; ".join(errors) + "]"
    truncated = len(text) > settings.max_chars
    if truncated:
        dropped = len(text) - settings.max_chars
        marker = f"\n…[truncated: {dropped} more characters]"
        text = text[: settings.max_chars - len(marker)] + marker
    return LogContext(
        status="ok",
        text=text,
        streams=n_streams,
        entries=n_entries,
        truncated=truncated,
        errors=errors,
    )


def window(now: datetime, lookback: timedelta) -> tuple[datetime, datetime]:
    return now - lookback, now
