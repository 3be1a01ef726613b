"""TEMPORARY, deleted at the switch-over with what it tests: the flat `ledger.<method>`
names reaching their repository, and `record_audit` landing the v2 facts of the audit
events flows write until they call `record_gave_up`, `mark_decision_announced` and
`record_verdict`."""

from __future__ import annotations

import pytest

from clients.ledger import Ledger
from tests.clients.test_ledger_facts import T0, H, applied, requested

# ledger-codemod: skip (these call the flat names on purpose)


async def test_until_the_switch_over_fact_audit_events_land_their_facts(ledger: Ledger) -> None:
    """TEMPORARY (removed with the bridge in `record_audit` at the switch-over): flows
    that still write these audit events keep the columns right."""
    p = await requested(ledger, "web-01")
    await applied(ledger, p)
    now = T0 + H
    await ledger.operations.record_audit("reconcile_continued", {}, now=now, action_id=p.action_id)
    await ledger.operations.record_audit(
        "reconcile_gave_up", {"dead_run_id": "r"}, now=now, action_id=p.action_id
    )
    await ledger.operations.record_audit(
        "decision_announced", {"text": "x"}, now=now, action_id=p.action_id
    )
    await ledger.operations.record_audit(
        "finished", {"verdict": "effective"}, now=now, action_id=p.action_id
    )
    live = (await ledger.jobs.action_liveness([p.action_id]))[p.action_id]
    assert live.continuations == 1 and live.gave_up
    assert await ledger.actions.decisions_to_announce(since=T0 - H) == []
    assert await ledger.actions.cycle_verdicts("c1") == {p.action_id: "effective"}


async def test_the_flat_names_reach_their_repository_until_the_switch_over(
    ledger: Ledger,
) -> None:
    """TEMPORARY: the compatibility shim, removed at the switch-over."""
    p = await requested(ledger, "web-01")
    record = await ledger.get_action(p.action_id)
    assert record == await ledger.actions.get_action(p.action_id)
    with pytest.raises(AttributeError):
        ledger.no_such_method  # noqa: B018
