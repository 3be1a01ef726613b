"""The approval form and the listener's pure decisions: tally, deadline, reminder, outcome."""

from __future__ import annotations

from datetime import timedelta

import pytest

from channels.discord_render import message_url
from core.approval import (
    APPROVE,
    DELETED_AT_DEADLINE,
    REJECT,
    ListenerReport,
    PollStats,
    ResumeOutcome,
    applied_by_prefect,
    approval_markdown,
    counts,
    deadline_decision,
    decide,
    may_approve,
    operator_answer,
    reminder_due,
    request_channel,
    resume_outcome,
    roles_needed,
    run_to_confirm,
    tally,
    voters,
    with_deleted_request,
)
from core.approvers import Approvers
from core.models import Risk
from core.policy import RiskRegister
from core.records import ActionRecord, ActionStatus, ApprovalRequest, Decision, Vote
from core.vetting import ProposedAction
from core.words import outcome_text
from tests.core.factories import NOW, action, issue, vet

REGISTER = RiskRegister()
LOW, MEDIUM, HIGH = REGISTER.low, REGISTER.medium, REGISTER.high
DEADLINE = NOW + timedelta(minutes=5)
APPROVERS = {"u-alice", "u-bob", "u-carol"}


def vote(user: str, emoji: str = APPROVE, *, at: int = 0, removed: int | None = None) -> Vote:
    """A vote first seen `at` seconds after NOW, removed `removed` seconds after NOW."""
    return Vote(
        action_id="act-1",
        user_id=f"u-{user}",
        username=user,
        emoji=emoji,
        first_seen_at=NOW + timedelta(seconds=at),
        removed_at=None if removed is None else NOW + timedelta(seconds=removed),
    )


def count(votes: list[Vote], level=LOW, cutoff=DEADLINE, bots=frozenset({"u-bot"})):
    return tally(
        votes, allowed=APPROVERS.__contains__, bot_user_ids=set(bots), level=level, cutoff=cutoff
    )


def proposed(risk: str = "low", key: str = "restart_unit", **extra) -> ProposedAction:
    params = {"unit": "nginx.service"} if key == "restart_unit" else extra
    [p] = vet([action(key, risk=risk, **params)], [issue()]).approved
    return p


# --- tally -----------------------------------------------------------------------------
def test_one_allowed_approval_decides_low_risk() -> None:
    t = count([vote("alice")])
    assert (t.decision, t.deciders, t.approvals) == ("approve", ["alice"], ["alice"])


def test_reject_beats_any_number_of_approvals() -> None:
    t = count([vote("alice"), vote("bob"), vote("carol", REJECT)], level=HIGH)
    assert (t.decision, t.deciders, t.approvals) == ("reject", ["carol"], ["alice", "bob"])


def test_bots_and_people_not_allowed_are_ignored() -> None:
    votes = [vote("bot", REJECT), vote("mallory", REJECT), vote("dave"), vote("bot")]
    t = count(votes)
    assert t.decision is None
    assert sorted(t.ignored) == ["bot", "bot", "dave", "mallory"]


def test_a_bot_is_ignored_even_when_on_the_approver_list() -> None:
    t = tally([vote("alice", REJECT)], allowed=lambda u: True, bot_user_ids={"u-alice"}, level=LOW)
    assert t.decision is None and t.ignored == ["alice"]


def test_removed_reaction_no_longer_counts() -> None:
    assert count([vote("alice", removed=10)], cutoff=None).decision is None
    assert count([vote("alice", REJECT, removed=3), vote("bob", at=5)]).decision == "approve"


def test_high_risk_needs_distinct_approvers() -> None:
    assert count([vote("alice")], level=HIGH).decision is None
    # the same person reacting twice is one approver (the ledger keeps one row per emoji)
    assert count([vote("alice"), vote("alice")], level=HIGH).decision is None
    t = count([vote("alice"), vote("mallory"), vote("bob")], level=HIGH)
    assert (t.decision, t.deciders) == ("approve", ["alice", "bob"])


def test_a_quorum_is_reached_within_one_channel_when_asked_in_several() -> None:
    """Voters through several channels at once are "channel:id": one person may hold an
    account in each, so approvals from two channels are not two people."""

    def through(channel: str, user: str) -> Vote:
        return vote(user).model_copy(update={"user_id": f"{channel}:u-{user}"})

    allowed = lambda u: True  # noqa: E731
    across = [through("discord", "alice"), through("slack", "alice")]
    t = tally(across, allowed=allowed, bot_user_ids=set(), level=HIGH)
    assert t.decision is None and t.approvals == ["alice", "alice"]
    within = [through("slack", "alice"), through("slack", "bob"), through("discord", "carol")]
    t = tally(within, allowed=allowed, bot_user_ids=set(), level=HIGH)
    assert t.decision == "approve"
    # one ❌ through any channel still rejects
    veto = [*within, through("discord", "dave").model_copy(update={"emoji": REJECT})]
    assert tally(veto, allowed=allowed, bot_user_ids=set(), level=HIGH).decision == "reject"


def test_at_the_deadline_votes_count_as_they_stood_then() -> None:
    late = vote("alice", at=301)  # seen after the deadline (listener was down)
    assert counts(late, DEADLINE) is False
    assert count([late]).decision is None
    gone_before = vote("alice", at=10, removed=200)
    gone_after = vote("bob", REJECT, at=10, removed=400)  # stood when the deadline fell
    assert counts(gone_before, DEADLINE) is False and counts(gone_after, DEADLINE) is True
    assert count([gone_before, gone_after]).decision == "reject"


def test_voters_lists_standing_rejecters_first_once_each() -> None:
    votes = [vote("alice"), vote("bob", removed=5), vote("carol", REJECT), vote("alice", REJECT)]
    assert voters(votes) == ["u-carol", "u-alice"]


# --- deadline, reminder, outcome ------------------------------------------------------
@pytest.mark.parametrize(
    ("risk", "expected"), [("low", "approve"), ("medium", "approve"), ("high", "reject")]
)
def test_deadline_default_follows_the_register(risk: str, expected: str) -> None:
    a = proposed(risk)
    choice, why = deadline_decision(REGISTER.level(Risk(risk)), a, reached_chat=True)
    assert choice == expected and risk in why


def test_deadline_never_runs_what_never_reached_discord_or_the_catalog_forbids() -> None:
    a = proposed("low")
    assert deadline_decision(LOW, a, reached_chat=False) == (
        "reject",
        "deadline passed; the request never reached Discord",
    )
    forbidden = a.model_copy(update={"deadline_default_may_run": False})
    assert deadline_decision(LOW, forbidden, reached_chat=True)[0] == "reject"


def _decide(votes: list[Vote], risk: str = "low", *, at: int = 0, reached: bool = True):
    a = proposed(risk)
    return decide(
        votes,
        allowed=APPROVERS.__contains__,
        bot_user_ids={"u-bot"},
        level=REGISTER.level(Risk(risk)),
        action=a,
        deadline=DEADLINE,
        reached_chat=reached,
        now=NOW + timedelta(seconds=at),
    )


def test_decide_names_the_deciders_before_the_deadline() -> None:
    d, _ = _decide([vote("bob"), vote("alice")], "high", at=10)
    assert (d.decision, d.decider, d.via, d.intended_at) == (
        "approve",
        "alice, bob",
        "discord",
        NOW + timedelta(seconds=10),
    )
    pending, t = _decide([vote("alice")], "high", at=10)
    assert pending is None and t.approvals == ["alice"]


def test_decide_applies_the_default_only_once_the_deadline_passed() -> None:
    assert _decide([], "low", at=299)[0] is None
    d, _ = _decide([vote("alice", at=301)], "high", at=301)  # a late vote does not count
    assert (d.decision, d.decider, d.via) == ("reject", "deadline default", "deadline")
    d, _ = _decide([], "low", at=300, reached=False)
    assert d.decision == "reject" and "never reached Discord" in d.comment


def test_resume_outcome_reads_prefects_answer() -> None:
    assert resume_outcome("ACCEPT", "") == "applied"
    assert resume_outcome("ABORT", "Cannot resume a flow run that is not paused.") == "taken"
    assert resume_outcome("REJECT", "Run input schema not found.") == "retry"
    assert resume_outcome("REJECT", "The flow run pause has timed out") == "refused"


def test_what_prefect_applied_is_the_intent_when_it_matches_else_the_ui() -> None:
    intent = Decision(
        action_id="a", decision="reject", decider="carol", via="discord", intended_at=NOW
    )
    later = NOW + timedelta(seconds=5)

    def applied(response: dict, level=LOW, with_intent=intent):
        return applied_by_prefect(
            response, intent=with_intent, level=level, action_id="a", now=later
        )

    mine = applied({"decision": "reject"})
    assert (mine.decider, mine.via, mine.applied_at) == ("carol", "discord", later)
    ui = applied({"decision": "approve", "comment": "ok"})
    assert (ui.decision, ui.decider, ui.via, ui.comment) == ("approve", "Prefect UI", "ui", "ok")
    assert applied({"decision": "approve"}, level=HIGH) is None  # refused: the run re-gates
    assert applied({"decision": "reject"}, level=HIGH, with_intent=None).via == "ui"
    assert applied({"value": "x"}) is None


def test_reminder_due_when_a_fifth_of_the_window_remains() -> None:
    asked = NOW
    deadline = NOW + timedelta(seconds=100)
    at = [NOW + timedelta(seconds=s) for s in (0, 79, 80, 99, 100, 130)]
    due = [reminder_due(asked, deadline, t, fraction=0.2) for t in at]
    assert due == [False, False, True, True, False, False]
    fixed = [reminder_due(asked, deadline, t, fraction=0.2, before_seconds=50) for t in at]
    assert fixed == [False, True, True, True, False, False]


@pytest.mark.parametrize(
    ("decision", "via", "decider", "comment", "text"),
    [
        ("approve", "discord", "alice, bob", None, "✅ Approved by alice, bob"),
        ("reject", "discord", "carol", None, "❌ Rejected by carol"),
        ("approve", "deadline", "deadline default", "x", "ran by deadline default"),
        ("reject", "deadline", "deadline default", "x", "will not run"),
        ("reject", "ui", "Prefect UI", "not now", "❌ Rejected — decided in the Prefect UI"),
        ("reject", "operator", "kill switch", None, "by operator (kill switch)"),
    ],
)
def test_outcome_text(decision: str, via: str, decider: str, comment, text: str) -> None:
    d = Decision(
        action_id="a",
        decision=decision,
        decider=decider,
        via=via,
        comment=comment,
        intended_at=NOW,
    )
    assert text in outcome_text(d)
    if via == "ui":
        assert outcome_text(d).endswith("— not now")


def test_resume_form_says_when_a_ui_approval_is_not_enough() -> None:
    a = proposed("high")
    text = approval_markdown(a, HIGH, deadline=DEADLINE, ui_allowed=False)
    assert "is not sufficient for high risk" in text and "2 approvers" in text
    assert "An approval here is sufficient." in approval_markdown(
        proposed("low"), LOW, deadline=DEADLINE, ui_allowed=True
    )


# --- the listener's rules -----------------------------------------------------------------
def test_resume_outcomes_are_an_enum_read_from_prefects_answer() -> None:
    assert resume_outcome("ACCEPT", "") is ResumeOutcome.APPLIED
    assert resume_outcome("REJECT", "Reason: 'maybe' is not one of") is ResumeOutcome.REFUSED


def _may(user: str, approvers: Approvers, guild: str | None, roles: list[str] | None) -> bool:
    """`may_approve` as the listener calls it: roles only when `roles_needed` says so."""
    looked_up = roles if roles_needed(user, approvers, guild) else None
    return may_approve(user, approvers, guild_id=guild, roles=looked_up)


def test_listed_users_may_approve_without_a_role_lookup() -> None:
    listed = Approvers(user_ids=["u-alice"], role_ids=["r-ops"])
    assert not roles_needed("u-alice", listed, "g-1")
    assert _may("u-alice", listed, "g-1", None)
    assert _may("u-alice", listed, None, None)


def test_approver_roles_need_the_guild_and_a_matching_role() -> None:
    roles = Approvers(role_ids=["r-ops"])
    assert roles_needed("u-bob", roles, "g-1")
    assert _may("u-bob", roles, "g-1", ["r-dev", "r-ops"])
    assert not _may("u-bob", roles, "g-1", ["r-dev"])
    assert not _may("u-bob", roles, "g-1", None)  # not a member (any more)
    assert not roles_needed("u-bob", roles, None)
    assert not _may("u-bob", roles, None, ["r-ops"])  # roles cannot be checked without the guild


def test_any_member_only_when_set_and_only_while_a_member() -> None:
    nobody = Approvers()
    assert not roles_needed("u-carol", nobody, "g-1")
    assert not _may("u-carol", nobody, "g-1", [])
    anyone = Approvers(any_member=True)
    assert _may("u-carol", anyone, "g-1", [])  # a member with no roles
    assert not _may("u-carol", anyone, "g-1", None)  # left the guild
    assert _may("u-carol", anyone, None, None)  # no guild: anyone in the channel
    listed = Approvers(user_ids=["u-alice"], any_member=True)  # a list replaces "anyone"
    assert not roles_needed("u-carol", listed, "g-1")
    assert not _may("u-carol", listed, "g-1", [])


def test_a_deadline_default_on_a_deleted_request_says_so() -> None:
    a = proposed("low")
    deadline = decide(
        [],
        allowed=APPROVERS.__contains__,
        bot_user_ids=set(),
        level=LOW,
        action=a,
        deadline=NOW,
        reached_chat=False,
        now=NOW,
    )[0]
    assert deadline is not None
    assert with_deleted_request(deadline, True).comment == DELETED_AT_DEADLINE  # type: ignore[union-attr]
    assert with_deleted_request(deadline, False) == deadline
    by_vote = Decision(
        action_id="a", decision="reject", decider="x", via="discord", intended_at=NOW
    )
    assert with_deleted_request(by_vote, True) == by_vote
    assert with_deleted_request(None, True) is None


def _record(decision: Decision | None, *, run: str | None = "run-1", old_run: str | None = None):
    a = proposed("low")
    request = ApprovalRequest(
        action_id=a.action_id,
        channel_id=None,
        message_id="m-1",
        flow_run_id=run,
        risk=a.risk,
        deadline=DEADLINE,
        policy_hash=a.policy_hash,
        requested_at=NOW,
    )
    return ActionRecord(
        proposal=a,
        status=ActionStatus.AWAITING_APPROVAL,
        flow_run_id=old_run,
        created_at=NOW,
        updated_at=NOW,
        request=request,
        decision=decision,
    )


def test_only_unapplied_intents_of_runs_no_longer_paused_are_confirmed() -> None:
    intent = Decision(
        action_id="a", decision="approve", decider="x", via="discord", intended_at=NOW
    )
    assert run_to_confirm(_record(intent), paused={"run-2"}) == "run-1"
    assert run_to_confirm(_record(intent), paused={"run-1"}) is None  # still paused
    assert run_to_confirm(_record(None), paused=set()) is None
    applied = intent.model_copy(update={"applied_at": NOW})
    assert run_to_confirm(_record(applied), paused=set()) is None
    assert run_to_confirm(_record(intent, run=None, old_run="run-0"), paused=set()) == "run-0"
    assert run_to_confirm(_record(intent, run=None), paused=set()) is None


def test_request_channel_and_message_url() -> None:
    record = _record(None)
    assert record.request is not None
    assert request_channel(record.request, "c-approvals") == "c-approvals"
    posted = record.request.model_copy(update={"channel_id": "c-9"})
    assert request_channel(posted, "c-approvals") == "c-9"
    assert message_url("g-1", "c-9", "m-1") == "https://discord.com/channels/g-1/c-9/m-1"
    assert message_url(None, "c-9", "m-1") is None
    assert message_url("", "c-9", "m-1") is None


def test_the_kill_switch_answers_reject_unless_an_intent_was_recorded() -> None:
    answer = operator_answer(_record(None), NOW, decider="operator", comment="paused")
    assert (answer.decision, answer.via, answer.decider, answer.comment) == (
        "reject",
        "operator",
        "operator",
        "paused",
    )
    intent = Decision(
        action_id="a", decision="approve", decider="x", via="discord", intended_at=NOW
    )
    assert operator_answer(_record(intent), NOW, decider="operator", comment="paused") == intent


def test_a_listener_report_adds_up_its_polls() -> None:
    report = ListenerReport()
    report.add(PollStats(resumed=2, reminders=1, errors=["a: boom"]))
    report.add(PollStats(resumed=1))
    assert report == ListenerReport(polls=2, resumed=3, reminders=1, errors=1)
