"""What `remediation-policy validate` accepts, the cycle runs: one loader for every policy
file (`tasks/policy_file.py`), and a corpus of files run through validate and the cycle.

Seen: a policy written by `json.dumps` (emoji as surrogate-pair escapes, "\\ud83d\\udfe2")
passed validate, then `remediation-cycle --policy` exited 1 with UnicodeEncodeError:
PyYAML, which read the JSON, had made two lone surrogates of each emoji.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from blocks import policy_cli
from core.errors import ConfigError
from core.policy import load_policy, policy_hash
from core.report import CycleOutcome
from flows import approval_listener
from flows import remediation_cycle as cycle_module
from flows.remediation_cycle import remediation_cycle
from tasks.policy_file import parse_policy_text, policy_format, read_policy_file
from tests.fixtures.stack import FAST_POLICY, Stack

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = load_policy({}).model_dump(mode="json")
EMOJI = {"low": "🚦", "medium": "⚠️", "high": "🆘"}  # one with a variation selector
WITH_EMOJI: dict[str, Any] = {
    **FAST_POLICY,
    "risk": {k: {**DEFAULTS["risk"][k], "emoji": e} for k, e in EMOJI.items()},
}


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = policy_cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


# --- the corpus: every way a policy file is written -----------------------------------------
CORPUS: dict[str, Callable[[], str]] = {
    "demo_policy.yaml": lambda: (REPO / "sandbox" / "demo_policy.yaml").read_text("utf-8"),
    "defaults.yaml": lambda: cli("defaults")[1],
    "defaults.json": lambda: cli("defaults", "--json")[1],
    # the seen case: json.dumps with its defaults (ensure_ascii=True → "\ud83d\udfe2")
    "dumps-ascii.json": lambda: json.dumps(DEFAULTS),
    "dumps-ascii-no-suffix": lambda: json.dumps(DEFAULTS, indent=1),  # sniffed as JSON
    "dumps-unicode.json": lambda: json.dumps(DEFAULTS, ensure_ascii=False),
    "fast-emoji-ascii.json": lambda: json.dumps(WITH_EMOJI),
    "emoji.yaml": lambda: yaml.safe_dump(WITH_EMOJI, allow_unicode=True, sort_keys=False),
    "emoji-escaped.yml": lambda: yaml.safe_dump(WITH_EMOJI),  # "\U0001F6A6" escapes
    # JSON text in a YAML file: YAML's own surrogate escapes are joined too
    "json-in-yaml.yaml": lambda: json.dumps(WITH_EMOJI),
    "bom.json": lambda: "\ufeff" + json.dumps(WITH_EMOJI, ensure_ascii=False),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("policies")
    for name, text in CORPUS.items():
        (folder / name).write_text(text(), encoding="utf-8")
    return folder


def expected_emoji(name: str) -> dict[str, str]:
    if name.startswith(("defaults", "dumps")):
        return {k: v["emoji"] for k, v in DEFAULTS["risk"].items()}
    if name == "demo_policy.yaml":
        return {"low": "🟢", "medium": "🟡", "high": "🔴"}
    return EMOJI


@pytest.mark.parametrize("name", list(CORPUS))
async def test_every_file_validate_accepts_runs_a_cycle(
    name: str, corpus: Path, stack: Stack
) -> None:
    path = corpus / name
    code, out, err = cli("validate", str(path))
    assert code == 0 and out.startswith("valid: "), err
    data = read_policy_file(path)
    policy = load_policy(data)
    assert {k: getattr(policy.risk, k).emoji for k in EMOJI} == expected_emoji(name)
    assert policy_hash(policy) in out  # validate checked exactly what the cycle gets
    report = await remediation_cycle(policy=data, blocks=stack.names, dispatch="none")
    # It ran to its end: what it found depends on the policy's rules (production windows
    # of 5 minutes see the session's earlier tests), not on how the file was written.
    assert report.finished_at is not None
    assert report.outcome is not CycleOutcome.PROMETHEUS_UNREACHABLE
    assert not [n for n in report.notices if "Discord post" in n], report.notices


# --- the loader -----------------------------------------------------------------------------
def test_the_seen_case_reads_surrogate_pair_escapes_as_the_emoji(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(DEFAULTS))
    assert '"\\ud83d\\udfe2"' in path.read_text()  # as json.dumps writes 🟢
    data = read_policy_file(path)
    assert data["risk"]["low"]["emoji"] == "🟢"
    assert json.dumps(data, ensure_ascii=False).encode("utf-8")  # no lone surrogate left


@pytest.mark.parametrize(
    ("name", "text", "fmt"),
    [
        ("p.json", "a: 1", "json"),  # the suffix decides, even against the content
        ("p.JSON", "{}", "json"),
        ("p.yaml", '{"a": 1}', "yaml"),
        ("p.yml", "a: 1", "yaml"),
        ("/dev/stdin", '  \n {"a": 1}', "json"),  # no known suffix: the first character
        ("policy.txt", "a: 1", "yaml"),
        ("policy", "", "yaml"),
    ],
)
def test_the_format_is_the_suffix_else_the_first_character(name: str, text: str, fmt: str) -> None:
    assert policy_format(name, text) == fmt


def test_yaml_surrogate_escapes_are_joined() -> None:
    data = parse_policy_text('risk: {low: {emoji: "\\ud83d\\udfe2"}}', name="p.yaml", fmt="yaml")
    assert data == {"risk": {"low": {"emoji": "🟢"}}}


@pytest.mark.parametrize(
    ("name", "text", "field", "says"),
    [
        ("lone.json", '{"risk": {"low": {"emoji": "\\ud83d"}}}', "policy.risk.low.emoji", "lone"),
        ("lone.yaml", 'risk: {high: {emoji: "\\udfe2x"}}', "policy.risk.high.emoji", "lone"),
        ("key.json", '{"a\\udc00": 1}', "policy", "lone"),
        ("nan.json", '{"dedup_ttl": NaN}', "policy.dedup_ttl", "not a finite number"),
        ("inf.yaml", "dedup_ttl: .inf", "policy.dedup_ttl", "not a finite number"),
        (
            "when.yaml",
            "windows: [{start: 2026-01-01T00:00:00Z}]",
            "policy.windows[0].start",
            "quote",
        ),
        ("set.yaml", "critical: !!set {a: null}", "policy.critical", "quote"),
        ("int-key.yaml", "risk: {1: x}", "policy.risk", "not a string"),
        ("list.json", "[1, 2]", "policy", "mapping at the top level"),
        ("bad.json", '{"a": 1,}', "policy", "not valid JSON"),
        ("bad.yaml", "a: [1", "policy", "not valid YAML"),
    ],
)
def test_bad_files_are_refused_naming_the_file_and_field(
    tmp_path: Path, name: str, text: str, field: str, says: str
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_policy_file(path)
    assert caught.value.field == field and str(path) in caught.value.problem
    assert says in caught.value.problem
    code, out, err = cli("validate", str(path))  # and validate says so, in one line
    assert code == 1 and out == "" and err.startswith("invalid: ") and str(path) in err


def test_a_file_that_is_not_utf8_or_missing_is_named(tmp_path: Path) -> None:
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("risk: {low: {emoji: 'é'}}".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml is not UTF-8 \(byte 21: 0xe9\)"):
        read_policy_file(latin)
    with pytest.raises(ConfigError, match=r"nope\.yaml cannot be read"):
        read_policy_file(tmp_path / "nope.yaml")


def test_every_command_reads_policy_files_with_the_one_loader(tmp_path: Path) -> None:
    """The cycle and listener commands refuse what validate refuses, with the same error,
    before they touch anything."""
    path = tmp_path / "lone.json"
    path.write_text('{"risk": {"low": {"emoji": "\\ud83d"}}}')
    for main in (cycle_module.main, approval_listener.main):
        with pytest.raises(ConfigError, match=r"lone\.json: a lone surrogate") as caught:
            main(["--policy", str(path)])
        assert caught.value.field == "policy.risk.low.emoji"
