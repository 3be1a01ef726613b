"""A malformed answer is never "nothing to do": lists that arrived as JSON strings are read,
any other shape of a list field makes the answer unreadable (every issue to a human)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.analysis import AnalysisUnreadable, analysis_tool_schema, read_analysis
from tests.core.factories import action, text_reply, tool_reply

NGINX = "web-02|failed_unit|nginx.service"
ACTION = {**action(), "fingerprints": [NGINX]}
MANUAL = {"host": "db-01", "problem": "disk", "severity": "critical", "recommendation": "grow"}
NO_ACTION = {"fingerprints": [NGINX], "reason": "a planned restart, it comes back by itself"}


def _fenced(value: Any) -> str:
    return "```json\n" + json.dumps(value, indent=1) + "\n```"


def test_actions_sent_as_a_json_string_are_the_same_list() -> None:
    """The seen case: the list arrived as a string inside the tool input."""
    a = read_analysis(
        tool_reply({"summary": "s", "actions": json.dumps([ACTION]), "manual_issues": []})
    )
    assert [(x.catalog_key, x.host, x.fingerprints) for x in a.actions] == [
        ("restart_unit", "web-02", [NGINX])
    ]
    assert "'actions' arrived as a JSON string: read as a list" in a.notes


@pytest.mark.parametrize("encode", [json.dumps, _fenced], ids=["plain", "fenced"])
def test_every_list_field_sent_as_a_json_string_is_read(encode: Any) -> None:
    a = read_analysis(
        tool_reply(
            {
                "summary": "s",
                "actions": encode([ACTION]),
                "manual_issues": encode([MANUAL]),
                "no_action_needed": encode([NO_ACTION]),
            }
        )
    )
    assert len(a.actions) == 1 and [m.host for m in a.manual_issues] == ["db-01"]
    assert [(n.fingerprints, n.reason) for n in a.no_action_needed] == [
        ([NGINX], NO_ACTION["reason"])
    ]


@pytest.mark.parametrize("encode", [json.dumps, _fenced], ids=["plain", "fenced"])
def test_a_whole_tool_input_sent_as_a_json_string_is_read(encode: Any) -> None:
    answer = {"summary": "s", "actions": [ACTION], "manual_issues": [MANUAL]}
    a = read_analysis(tool_reply(encode(answer)))
    assert [x.host for x in a.actions] == ["web-02"] and len(a.manual_issues) == 1


def test_items_and_their_lists_sent_as_json_strings_are_read() -> None:
    item = {**ACTION, "fingerprints": json.dumps([NGINX]), "parameters": '{"unit": "x.service"}'}
    manual = {**MANUAL, "fingerprints": json.dumps(["db-01|disk|/var"])}
    a = read_analysis(
        tool_reply({"summary": "", "actions": [json.dumps(item)], "manual_issues": [manual]})
    )
    [act] = a.actions
    assert act.fingerprints == [NGINX] and act.parameters == {"unit": "x.service"}
    assert a.manual_issues[0].fingerprints == ["db-01|disk|/var"]


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("actions", 42, "'actions' is a number, not a list"),
        ("actions", {"catalog_key": "restart_unit"}, "'actions' is an object, not a list"),
        ("actions", "restart everything", "'actions' is text that is not a JSON list"),
        ("actions", json.dumps(ACTION), "'actions' is text that is not a JSON list"),
        ("actions", True, "'actions' is a boolean, not a list"),
        ("manual_issues", 3.5, "'manual_issues' is a number, not a list"),
        ("manual_issues", "[{'host': 'x'", "'manual_issues' is text that is not a JSON list"),
        ("no_action_needed", {"fingerprints": [NGINX]}, "'no_action_needed' is an object"),
    ],
)
def test_a_list_field_of_any_other_shape_makes_the_answer_unreadable(
    field: str, value: Any, said: str
) -> None:
    answer = {"summary": "s", "actions": [ACTION], "manual_issues": [], field: value}
    with pytest.raises(AnalysisUnreadable) as caught:
        read_analysis(tool_reply(answer))
    assert caught.value.reason.startswith(said)
    assert '"summary": "s"' in caught.value.excerpt  # what arrived, for the human


def test_the_same_shapes_in_a_text_answer_are_unreadable_too() -> None:
    with pytest.raises(AnalysisUnreadable, match="'actions' is a number"):
        read_analysis(text_reply(_fenced({"summary": "s", "actions": 1, "manual_issues": []})))


def test_null_lists_are_empty() -> None:
    a = read_analysis(
        tool_reply(
            {"summary": "s", "actions": None, "manual_issues": [MANUAL], "no_action_needed": None}
        )
    )
    assert a.actions == [] and len(a.manual_issues) == 1 and a.no_action_needed == []


def test_an_answer_with_only_no_action_needed_is_read() -> None:
    a = read_analysis(tool_reply({"summary": "all transient", "no_action_needed": [NO_ACTION]}))
    assert a.actions == [] and a.manual_issues == [] and len(a.no_action_needed) == 1


def test_no_action_entries_without_fingerprints_or_reason_are_dropped_and_said() -> None:
    a = read_analysis(
        tool_reply(
            {
                "summary": "",
                "actions": [],
                "no_action_needed": [
                    NO_ACTION,
                    {"fingerprints": [NGINX]},
                    {"fingerprints": [], "reason": "fine"},
                    {"fingerprints": [NGINX], "reason": ""},
                ],
            }
        )
    )
    assert len(a.no_action_needed) == 1
    assert [n.split(":")[0] for n in a.notes] == [f"no-action entry {i} dropped" for i in (1, 2, 3)]


def test_salvaged_text_keeps_complete_no_action_entries() -> None:
    full = json.dumps({"summary": "s", "no_action_needed": [NO_ACTION, NO_ACTION]})
    a = read_analysis(text_reply(full[:-30], stop_reason="max_tokens"))
    assert len(a.no_action_needed) == 1 and a.salvaged


def test_the_contract_offers_no_action_needed_and_manual_fingerprints() -> None:
    schema = analysis_tool_schema()
    no_action = schema["properties"]["no_action_needed"]["items"]
    assert no_action["required"] == ["fingerprints", "reason"]
    manual = schema["properties"]["manual_issues"]["items"]
    assert "fingerprints" in manual["properties"] and "fingerprints" not in manual["required"]
    assert "no_action_needed" not in schema["required"]  # optional: old answers still read
