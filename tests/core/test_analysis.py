"""Reading Claude's answer: structured path and every malformed shape."""

import json

import pytest

from core.analysis import AnalysisUnreadable, read_analysis
from tests.core.factories import action, text_reply, tool_reply

GOOD = {
    "summary": "one unit failed",
    "actions": [action()],
    "manual_issues": [
        {"host": "db-01", "problem": "disk", "severity": "critical", "recommendation": "grow it"}
    ],
}


def test_structured_tool_answer() -> None:
    a = read_analysis(tool_reply(GOOD))
    assert a.summary == "one unit failed"
    assert [x.catalog_key for x in a.actions] == ["restart_unit"]
    assert a.manual_issues[0].recommendation == "grow it"
    assert not a.salvaged and a.notes == []


def test_empty_answer_is_no_action_needed() -> None:
    a = read_analysis(tool_reply({"summary": "fine", "actions": [], "manual_issues": []}))
    assert a.actions == [] and a.manual_issues == []


def test_schema_invalid_items_are_dropped_valid_kept() -> None:
    bad = dict(action(), risk="catastrophic")
    a = read_analysis(
        tool_reply(
            {
                "summary": "",
                "actions": [bad, action(), {"host": "x"}],
                "manual_issues": [{"host": "h"}],
            }
        )
    )
    assert len(a.actions) == 1
    assert len(a.notes) == 3


def test_unknown_keys_in_items_are_ignored() -> None:
    a = read_analysis(
        tool_reply(
            {"summary": "", "actions": [dict(action(), shell="rm -rf /")], "manual_issues": []}
        )
    )
    assert a.actions[0].model_dump().get("shell") is None


@pytest.mark.parametrize(
    "text",
    [
        "```json\n" + json.dumps(GOOD) + "\n```",
        "Here is my analysis:\n" + json.dumps(GOOD) + "\nLet me know.",
        json.dumps(GOOD, indent=1).replace('"grow it"\n', '"grow it",\n'),
        json.dumps(GOOD).replace("]", ",]"),
    ],
    ids=["fenced", "prose", "trailing-comma-obj", "trailing-comma-array"],
)
def test_text_shapes_are_read(text: str) -> None:
    a = read_analysis(text_reply(text))
    assert len(a.actions) == 1 and len(a.manual_issues) == 1
    assert a.salvaged


def test_truncated_text_keeps_complete_items_only() -> None:
    full = json.dumps(
        {"summary": "s", "actions": [action(), action(host="web-01")], "manual_issues": []}
    )
    cut = full[: full.index('"web-01"') + 3]
    a = read_analysis(text_reply(cut, stop_reason="max_tokens"))
    assert [x.host for x in a.actions] == ["web-02"]
    assert any("max_tokens" in n for n in a.notes)


def test_tool_input_cut_at_max_tokens_as_raw_text() -> None:
    full = json.dumps({"summary": "s", "actions": [action(), action(host="web-01")]})
    a = read_analysis(tool_reply(full[:-40], stop_reason="max_tokens"))
    assert [x.host for x in a.actions] == ["web-02"]


@pytest.mark.parametrize("text", ["I could not decide.", "", "{not json at all", '{"foo": 1}'])
def test_nothing_salvageable_raises(text: str) -> None:
    with pytest.raises(AnalysisUnreadable):
        read_analysis(text_reply(text))


def test_empty_tool_input_cut_raises() -> None:
    with pytest.raises(AnalysisUnreadable):
        read_analysis(tool_reply({}, stop_reason="max_tokens"))
