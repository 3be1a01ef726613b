"""A caller's parameters merge into the ones its deployment declares; nothing vanishes."""

from __future__ import annotations

from core.run_parameters import merge_parameters

DECLARED = {
    "settings": {"settle_seconds": 5, "job_poll_seconds": 3, "ui_url": "http://ui"},
    "blocks": {"ledger": "remediation-ledger", "policy": "remediation-policy"},
    "policy": None,
}


def test_a_settings_mapping_with_one_field_keeps_every_other_declared_setting() -> None:
    merged = merge_parameters(DECLARED, {"settings": {"deployment": "remediate-action/x"}})
    assert merged["settings"] == {
        "settle_seconds": 5,
        "job_poll_seconds": 3,
        "ui_url": "http://ui",
        "deployment": "remediate-action/x",
    }


def test_the_callers_field_wins_over_the_declared_one() -> None:
    merged = merge_parameters(DECLARED, {"settings": {"settle_seconds": 1}})
    assert merged["settings"]["settle_seconds"] == 1
    assert merged["settings"]["job_poll_seconds"] == 3


def test_parameters_only_one_side_has_are_kept_and_none_does_not_erase() -> None:
    merged = merge_parameters(DECLARED, {"action": {"action_id": "a"}, "policy": None})
    assert merged["action"] == {"action_id": "a"}
    assert merged["blocks"] == DECLARED["blocks"]
    assert merged["policy"] is None
    assert merge_parameters({"settings": {"a": 1}}, {"settings": None}) == {"settings": {"a": 1}}


def test_a_non_mapping_value_replaces_and_the_declared_mapping_is_not_mutated() -> None:
    merged = merge_parameters(DECLARED, {"dispatch": "none", "blocks": {"ledger": "other"}})
    assert merged["dispatch"] == "none"
    assert merged["blocks"] == {"ledger": "other", "policy": "remediation-policy"}
    assert DECLARED["blocks"]["ledger"] == "remediation-ledger"
