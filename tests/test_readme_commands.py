"""Every command line the README shows exists: each option it gives a console script (and
each subcommand of `remediation-policy`) is one that script's parser knows."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from blocks import policy_cli, setup
from flows import approval_listener, remediation_cycle
from sandbox import __main__ as sandbox_main

README = Path(__file__).resolve().parents[1] / "README.md"
MAINS: dict[str, Callable[[list[str]], int]] = {
    "remediation-blocks": lambda argv: setup.main(argv, {}),
    "remediation-cycle": remediation_cycle.main,
    "remediation-listener": approval_listener.main,
    "remediation-policy": policy_cli.main,
    "remediation-sandbox": sandbox_main.main,
}
SUBCOMMANDS = {"remediation-policy": ("validate", "apply", "defaults")}
# a command, then what follows it on the same line up to the end of its code span or cell
MENTION = re.compile(r"(remediation-(?:blocks|cycle|listener|policy|sandbox))\b(?![-/])([^`|#\n]*)")


def help_text(command: str, sub: str | None = None) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        MAINS[command]([*([sub] if sub else []), "--help"])
    assert done.value.code == 0
    return out.getvalue()


def mentions() -> list[tuple[str, str | None, list[str], str]]:
    """(command, subcommand, options, what follows it) for every command line in the
    README; a table row about a command lists its options in another cell, so the whole
    row counts."""
    found = []
    for line in README.read_text().splitlines():
        row = line.startswith("| `remediation-")
        for match in MENTION.finditer(line):
            command, rest = match.group(1), line if row else match.group(2)
            words = rest.split()
            sub = words[0] if words and words[0] in SUBCOMMANDS.get(command, ()) else None
            options = re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest)
            found.append((command, sub, options, rest.strip()))
            if row:
                break
    return found


def test_the_readme_shows_each_console_script() -> None:
    assert {command for command, *_ in mentions()} == set(MAINS)


@pytest.mark.parametrize(
    ("command", "sub", "options", "line"), mentions(), ids=lambda v: str(v)[:60]
)
def test_every_option_the_readme_gives_a_command_exists(
    command: str, sub: str | None, options: list[str], line: str
) -> None:
    row = line.startswith("|")
    subs = [sub] if sub else list(SUBCOMMANDS.get(command, ())) if row else []
    known = help_text(command) + "".join(help_text(command, s) for s in subs)
    if command in SUBCOMMANDS and sub is None and not row:
        words = line.split()
        assert not words or not re.fullmatch(r"[a-z]+", words[0]), f"unknown subcommand: {line}"
    missing = [o for o in options if o not in known]
    assert not missing, f"{command} {sub or ''} has no {missing}: {line}"
