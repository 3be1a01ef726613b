"""The Slack renderer: every message kind as Block Kit within Slack's limits, every string
from data escaped so nothing can ping, and the approval card byte for byte."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, get_args

import pytest

from channels.slack_blocks import SlackMessage, escape, trim
from channels.slack_render import (
    approvers_text,
    decided_card,
    outcome_only,
    outcome_reply,
    outcome_section,
    render,
)
from core import words
from core.analysis import ManualIssue
from core.approvers import Approvers
from core.messages import (
    AnalysisUnavailable,
    ApprovalCard,
    ChatMessage,
    CycleSummary,
    Escalation,
    ManualIssues,
    NoActionNeeded,
    NotAddressed,
    ProposalSummary,
    Reminder,
    ResultCard,
)
from core.models import Issue
from core.notice import Moment, Notice, Quoted
from core.policy import Policy, RiskRegister
from core.records import Decision
from core.summary import AttemptDetail
from core.vetting import AttemptRecord, ProposedAction
from core.wire import JobState
from tests.core.factories import NOW, action, issue, unit_recheck, verification, vet

HOSTILE = "<!channel> <@U123> <!subteam^S1|@oncall> & <https://evil|x> <!here> <!everyone> <#C9>"
LOW, HIGH = RiskRegister().low, RiskRegister().high
DEADLINE = NOW + timedelta(minutes=5)
[ACTION] = vet([action()], [issue()]).approved


# --- what Slack would do with a message -----------------------------------------------------
# Slack's control sequences: `<!…>` special mentions, `<@…>` users, `<#…>` channels, and
# links `<url|label>`. The renderer writes only `<!date^…>` and links to URLs it was given.
TOKEN = re.compile(r"<([^<>]*)>")


def strings(value: Any) -> Iterator[str]:
    """Every string Slack reads in a message's blocks (text objects, fields, buttons)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def pings(blocks: list[dict[str, Any]], text: str) -> list[str]:
    """Every control sequence in the text and blocks that would notify someone or link
    somewhere unexpected (anything but a `<!date^…>` or a link to an allowed URL)."""
    found = []
    for s in [text, *strings(blocks)]:
        for token in TOKEN.findall(s):
            if token.startswith("!date^"):
                continue
            if token.startswith(("http://ui/", "https://awx.example/")):
                continue
            found.append(f"<{token}>")
    return found


def assert_within_limits(m: SlackMessage) -> None:
    assert 1 <= len(m.blocks) <= 50
    assert 0 < len(m.text) <= 3000
    for b in m.blocks:
        match b["type"]:
            case "header":
                assert b["text"]["type"] == "plain_text" and 0 < len(b["text"]["text"]) <= 150
            case "section":
                assert ("text" in b) != ("fields" in b)
                if "text" in b:
                    assert b["text"]["type"] == "mrkdwn" and 0 < len(b["text"]["text"]) <= 3000
                else:
                    assert 1 <= len(b["fields"]) <= 10
                    assert all(0 < len(f["text"]) <= 2000 for f in b["fields"])
            case "context":
                assert 1 <= len(b["elements"]) <= 10
                assert all(0 < len(e["text"]) <= 3000 for e in b["elements"])
            case "actions":
                [button] = b["elements"]
                assert len(button["text"]["text"]) <= 75 and len(button["url"]) <= 3000
            case other:
                pytest.fail(f"unexpected block type {other}")


# --- every message kind, with hostile text in every field that comes from data ------------
def hostile_action(**update: Any) -> ProposedAction:
    bad_issue = issue().model_copy(update={"host": HOSTILE, "subject": HOSTILE, "summary": HOSTILE})
    return ACTION.model_copy(
        update={
            "host": HOSTILE,
            "catalog_key": HOSTILE,
            "parameters": {HOSTILE: HOSTILE, "n": 3},
            "reason": HOSTILE,
            "expected_outcome": HOSTILE,
            "issues": [bad_issue],
            "fingerprints": [bad_issue.fingerprint],
            "notes": [HOSTILE],
            "action_id": HOSTILE,
            "policy_hash": HOSTILE,
            **update,
        }
    )


def hostile_issue() -> Issue:
    return issue().model_copy(
        update={"host": HOSTILE, "subject": HOSTILE, "summary": HOSTILE, "labels": {"x": HOSTILE}}
    )


def messages(n: int = 1) -> dict[str, ChatMessage]:
    """One message of every kind; `n` issues, actions and rows where a kind lists them."""
    a = hostile_action()
    decision = Decision(
        action_id=HOSTILE, decision="reject", decider=HOSTILE, via="ui", comment=HOSTILE,
        intended_at=NOW,
    )  # fmt: skip
    bad = hostile_issue()
    row = {k: HOSTILE for k in ("action", "host", "decision", "job", "job_seconds", "verdict")}
    row |= {"decision_seconds": HOSTILE, "total_seconds": HOSTILE}
    return {
        "notice": Notice(
            title=HOSTILE,
            text=[HOSTILE, Quoted(text=HOSTILE), Moment(at=NOW), f"**{HOSTILE}**"],
            cycle_id=HOSTILE,
        ),
        "notice_from_words": words.rejected(a, decision),
        "approval_card": ApprovalCard(
            action=a,
            level=HIGH,
            deadline=DEADLINE,
            approvers=Approvers(user_ids=[HOSTILE, "U1"], role_ids=[HOSTILE, "S1"]),
            history=[AttemptRecord(at=NOW, outcome=HOSTILE, counts=True)] * n,
            ui_url="http://ui/runs/flow-run/1",
        ),
        "reminder": Reminder(action=a, level=HIGH, deadline=DEADLINE, approvals=[HOSTILE] * n),
        "action_result": ResultCard(
            action=a,
            decision=decision,
            job_id=HOSTILE,
            job_url=f"https://awx.example/#/jobs/1?{HOSTILE}",
            job_state=JobState.FAILED,
            duration_s=1.5,
            verification=verification(
                "ineffective",
                unit_recheck(True, 1).model_copy(update={"detail": HOSTILE, "subject": HOSTILE}),
                note=HOSTILE,
            ).model_copy(update={"explanation": HOSTILE}),
            output_tail=HOSTILE * 20,
        ),
        "proposal_summary": ProposalSummary(summary=HOSTILE, actions=[a] * n, cycle_id=HOSTILE),
        "manual_issues": ManualIssues(
            manual=[
                ManualIssue(host=HOSTILE, problem=HOSTILE, severity=HOSTILE, recommendation=HOSTILE)
            ]
            * n,
            cycle_id=HOSTILE,
        ),
        "analysis_unavailable": AnalysisUnavailable(
            issues=[bad] * n, reason=HOSTILE, excerpt=HOSTILE, cycle_id=HOSTILE
        ),
        "no_action_needed": NoActionNeeded(
            items=[(bad, f"{HOSTILE} {i % 7}") for i in range(n)],
            summary=HOSTILE,
            cycle_id=HOSTILE,
        ),
        "not_addressed": NotAddressed(issues=[bad] * n, notes=[HOSTILE], cycle_id=HOSTILE),
        "cycle_summary": CycleSummary(cycle_id=HOSTILE, rows=[row] * n),
        "escalation": Escalation(
            issue=bad,
            history=[
                AttemptDetail(
                    at=NOW,
                    outcome=HOSTILE,
                    counts=True,
                    action_id=HOSTILE,
                    catalog_key=HOSTILE,
                    explanation=HOSTILE,
                )
            ]
            * n,
            policy=Policy(),
            cycle_id=HOSTILE,
        ),
    }


def test_every_message_kind_is_covered() -> None:
    union = get_args(get_args(ChatMessage)[0])
    assert {type(m) for m in messages().values()} == set(union)


@pytest.mark.parametrize("n", [1, 400], ids=["one", "many"])
@pytest.mark.parametrize("kind", list(messages()))
def test_every_kind_renders_within_every_limit_and_nothing_in_data_can_ping(
    kind: str, n: int
) -> None:
    m = render(messages(n)[kind])
    assert m.notice is None, m.notice  # rendered, not the fallback
    assert_within_limits(m)
    assert pings(m.blocks, m.text) == []
    shown = "\n".join(strings(m.blocks))
    assert "&lt;!channel&gt;" in shown  # the data is shown, as inert text
    assert "<https://evil" not in shown + m.text


@pytest.mark.parametrize("kind", ["manual_issues", "not_addressed", "cycle_summary"])
def test_what_does_not_fit_fifty_blocks_is_counted_never_cut_silently(kind: str) -> None:
    m = render(messages(600)[kind])
    last_sections = [b["text"]["text"] for b in m.blocks if "text" in b and b["type"] == "section"]
    assert re.search(r"… and \d+ more (issue|action)\(s\) not listed", last_sections[-1])


def test_a_failing_renderer_degrades_to_escaped_plain_text_with_a_notice() -> None:
    broken = CycleSummary(cycle_id="c1", rows=[{"host": HOSTILE}])  # no "action": KeyError
    m = render(broken)
    assert m.notice is not None and "KeyError" in m.notice
    assert m.blocks[0]["text"]["text"] == "⚠️ workflow-complete summary (plain-text fallback)"
    assert_within_limits(m)
    assert pings(m.blocks, m.text) == []
    assert "&lt;!channel&gt;" in "\n".join(strings(m.blocks))


def test_the_pings_helper_sees_every_kind_of_mention() -> None:
    blocks = [{"type": "context", "elements": [{"type": "mrkdwn", "text": HOSTILE}]}]
    assert pings(blocks, "<@W1> <!date^1^{ago}|x>") == [
        "<@W1>", "<!channel>", "<@U123>", "<!subteam^S1|@oncall>", "<https://evil|x>",
        "<!here>", "<!everyone>", "<#C9>",
    ]  # fmt: skip


def test_escaping_and_trimming_never_leave_half_an_entity() -> None:
    assert escape("a<b>&c") == "a&lt;b&gt;&amp;c"
    assert trim(escape("ab<<<<"), 6) == "ab…"  # not "ab&lt…"
    assert trim("x <!date^1^{ago}|y>", 8) == "x …"


def test_approvers_are_shown_by_id_and_never_pinged() -> None:
    assert approvers_text(Approvers(user_ids=["U1"], role_ids=["S1"])) == (
        "`U1`, `S1` (user group)"
    )
    assert approvers_text(Approvers()).startswith("nobody from Slack")
    assert approvers_text(Approvers(any_member=True)) == "any member of this channel"


# --- the approval card, byte for byte -------------------------------------------------------
def test_the_approval_card_byte_for_byte() -> None:
    [high] = vet([action(risk="high")], [issue()]).approved
    card = ApprovalCard(
        action=high,
        level=HIGH,
        deadline=DEADLINE,
        approvers=Approvers(user_ids=["U0ALICE"], role_ids=["S0ONCALL"]),
        ui_url="http://ui/runs/flow-run/fr-1",
    )
    m = render(card)
    ts = int(DEADLINE.timestamp())
    assert m.text == (
        "🔴 Approve restart_unit on web-02? React ✅ or ❌ "
        "Deadline: 2026-11-26 12:05 UTC — then it will not run"
    )
    assert m.blocks == [
        {"type": "header", "text": {"type": "plain_text",
                                    "text": "🔴 Approve restart_unit on web-02? React ✅ or ❌"}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": "*Host*\n`web-02`"},
            {"type": "mrkdwn", "text": "*Risk*\n🔴 high (2 approvers needed)"},
            {"type": "mrkdwn", "text": "*Action*\n`restart_unit`"},
        ]},
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": '*Parameters*\n```\n{"unit": "nginx.service"}\n```'}},
        {"type": "section", "text": {
            "type": "mrkdwn",
            "text": "*Issue and evidence*\n```\n• failed_unit nginx.service on web-02\n```"}},
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": "*Reason (Claude)*\n```\nunit failed\n```"}},
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": "*Expected outcome*\n```\nunit active\n```"}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": "*Earlier attempts on this issue*\nno earlier attempts"},
            {"type": "mrkdwn", "text": "*Who may approve*\n`U0ALICE`, `S0ONCALL` (user group)"},
        ]},
        {"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"*Deadline:* <!date^{ts}^{{date_short_pretty}} {{time}}"
                                       "|2026-11-26 12:05 UTC> — then it will not run"},
            {"type": "mrkdwn",
             "text": f"action {high.action_id} · policy {high.policy_hash}"},
        ]},
        {"type": "actions", "elements": [{
            "type": "button",
            "text": {"type": "plain_text", "text": "Open the run in the Prefect UI"},
            "url": "http://ui/runs/flow-run/fr-1",
            "action_id": "open_prefect_run",
        }]},
    ]  # fmt: skip


def test_a_low_risk_card_without_a_ui_url_has_no_button_and_says_it_runs_by_default() -> None:
    low = vet([action(risk="low")], [issue()]).approved[0]
    m = render(ApprovalCard(action=low, level=LOW, deadline=DEADLINE, approvers=Approvers()))
    assert [b["type"] for b in m.blocks][-1] == "context"
    deadline = m.blocks[-1]["elements"][0]["text"]
    assert deadline.endswith(
        "then it " + words.at_deadline("run" if LOW.default_at_deadline == "run" else "skip")
    )


def test_the_reminder_points_at_the_request_above_with_the_quorum_so_far() -> None:
    m = render(Reminder(action=ACTION, level=HIGH, deadline=DEADLINE, approvals=["alice"]))
    [said] = [b["text"]["text"] for b in m.blocks if b["type"] == "section"]
    assert said.startswith(f"The deadline is <!date^{int(DEADLINE.timestamp())}^")
    assert "React ✅ or ❌ on the request above. Approvals so far: alice of 2 needed." in said


def test_a_result_links_its_job_and_stresses_a_failed_state() -> None:
    m = render(messages()["action_result"])
    shown = "\n".join(strings(m.blocks))
    assert "*Job state*\n*failed*" in shown
    assert "<https://awx.example/#/jobs/1?&lt;!channel&gt;" in shown  # the URL, escaped
    assert "%7C" in shown  # a `|` in the URL cannot end it early


# --- the request once decided ---------------------------------------------------------------
def test_the_decided_card_keeps_every_block_but_the_button_and_stays_within_50() -> None:
    asked = render(messages()["approval_card"]).blocks
    assert asked[-1]["type"] == "actions"
    shown = decided_card(asked, "✅ Approved by alice")
    assert shown.text == "✅ Approved by alice"
    assert shown.blocks == [asked[0], outcome_section("✅ Approved by alice"), *asked[1:-1]]
    assert_within_limits(shown)
    full = [asked[0], *asked[1:2] * 49]  # 50 blocks: Slack's most
    shown = decided_card(full, "❌ Rejected by bob")
    assert len(shown.blocks) == 50
    assert shown.blocks[:2] == [full[0], outcome_section("❌ Rejected by bob")]
    headless = decided_card(asked[1:2], "✅ Approved by alice")  # no header: outcome first
    assert headless.blocks == [outcome_section("✅ Approved by alice"), asked[1]]


def test_the_outcome_alone_and_the_reply_are_short_and_within_limits() -> None:
    alone = outcome_only("⌛ Expired", "a-1", "high")
    assert alone.text == "⌛ Expired"
    assert [b["type"] for b in alone.blocks] == ["section", "context"]
    reply = outcome_reply("✅ Approved by alice")
    assert reply.text == "✅ Approved by alice"
    assert reply.blocks == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*✅ Approved by alice*"}}
    ]
    for m in (alone, reply):
        assert_within_limits(m)


def test_an_outcome_with_data_in_it_cannot_ping() -> None:
    said = f"✅ Approved by {HOSTILE}"
    for shown in (
        decided_card(render(messages()["approval_card"]).blocks, said),
        outcome_only(said, HOSTILE, "low"),
        outcome_reply(said),
    ):
        assert pings(shown.blocks, shown.text) == []
