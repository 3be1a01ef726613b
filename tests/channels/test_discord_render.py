"""The Discord renderer of the approval card and its reminder: fields, `<t:…:R>`, mentions."""

from __future__ import annotations

from datetime import timedelta

from channels.discord_render import approval_embed, approvers_text, reminder_embed
from core.approvers import Approvers
from core.policy import RiskRegister
from core.vetting import ProposedAction
from tests.core.factories import NOW, action, issue, vet

HIGH = RiskRegister().high
DEADLINE = NOW + timedelta(minutes=5)


def proposed(risk: str = "low", key: str = "restart_unit", **extra) -> ProposedAction:
    params = {"unit": "nginx.service"} if key == "restart_unit" else extra
    [p] = vet([action(key, risk=risk, **params)], [issue()]).approved
    return p


def test_reminder_embed_names_the_request_and_the_quorum() -> None:
    a = proposed("high", key="restart_unit")
    e = reminder_embed(
        a, HIGH, deadline=DEADLINE, approvals=["alice"], message_url="https://d/1/2/3"
    )
    assert e.title == "⏳ Reminder: restart_unit on web-02 awaits a decision"
    assert f"<t:{int(DEADLINE.timestamp())}:R>" in e.description
    assert "will not run" in e.description and "[the request](https://d/1/2/3)" in e.description
    assert "Approvals so far: alice of 2 needed." in e.description
    assert e.color == HIGH.color


def test_approval_embed_shows_risk_quorum_deadline_default_and_approvers() -> None:
    a = proposed("high")
    e = approval_embed(
        a,
        HIGH,
        deadline=DEADLINE,
        approvers=Approvers(role_ids=["r1"]),
        history=[],
        ui_url="http://ui/run",
    )
    fields = {f.name: f.value for f in e.fields}
    assert e.title.startswith("🔴 Approve restart_unit on web-02?")
    assert fields["Risk"] == "🔴 high (2 approvers needed)"
    assert fields["Who may approve"] == "<@&r1>"
    assert fields["Deadline"].endswith("then it will not run")
    assert a.action_id in e.footer and a.policy_hash in e.footer


def test_approvers_are_shown_as_mentions_or_in_words() -> None:
    assert approvers_text(Approvers()).startswith("nobody from Discord")
    assert approvers_text(Approvers(any_member=True)) == "any member of this channel"
    assert approvers_text(Approvers(user_ids=["1"], role_ids=["2"])) == "<@1>, <@&2>"
