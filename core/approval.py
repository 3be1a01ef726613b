"""Approval: what humans are shown, and how their reactions become one decision.

The chat channel's approval card (`core.messages.ApprovalCard`, rendered by the channel's
adapter) and the Prefect resume form show the same proposal and policy hash, so approvers
know they are deciding the same thing. `tally` is the pure core of the
listener: bots and people outside the approver list never count, ❌ beats ✅, a removed
reaction no longer counts, high risk needs a quorum of distinct approvers, and at the
deadline votes count as they stood then. `deadline_decision` is the register's default
(never "run" for a request that did not reach the chat channel), `reminder_due` times the one
reminder (what the approval message is edited to show is `core.words.outcome_text`).

The listener's other rules live here too, pure, for `tasks.approvals` to call: who may
approve (`roles_needed`, `may_approve`), what Prefect's answer to a resume means
(`resume_outcome` → `ResumeOutcome`), the comment of a deadline default on a deleted
request, which recorded intents to confirm from Prefect (`run_to_confirm`), the kill
switch's answer (`operator_answer`), and what a poll and a bounded run report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel

from core.approvers import Approvers
from core.fallback import degrades
from core.models import Frozen
from core.params import code_span, value_text
from core.policy import RiskLevel
from core.records import ActionRecord, ApprovalRequest, Decision, Via, Vote
from core.vetting import ProposedAction

APPROVE, REJECT = "✅", "❌"


def deadline_outcome(level: RiskLevel, action: ProposedAction) -> Literal["run", "skip"]:
    """What happens when nobody decides: the register's default, unless the catalog
    entry forbids a deadline default from running it."""
    if level.default_at_deadline == "run" and action.deadline_default_may_run:
        return "run"
    return "skip"


@degrades("approval form", "markdown")
def approval_markdown(
    action: ProposedAction,
    level: RiskLevel,
    *,
    deadline: datetime,
    ui_allowed: bool,
    channel: str = "Discord",
) -> str:
    """The Prefect resume form's description (Markdown); `channel` is where people vote
    (the chat channel's title)."""
    params = (
        "\n".join(
            f"  - {code_span(k)}: {code_span(value_text(v), 20000)}"
            for k, v in action.parameters.items()
        )
        or "  - none"
    )
    issues = "\n".join(f"- {i.summary or i.fingerprint}" for i in action.issues[:10])
    ui_note = (
        "An approval here is sufficient."
        if ui_allowed
        else f"**An approval here is not sufficient for {action.risk.value} risk**: "
        f"{level.approvers_needed} approvers must approve in {channel}. "
        "A rejection here is always honoured."
    )
    return (
        f"## {level.emoji} Approve `{action.catalog_key}` on `{action.host}`?\n\n"
        f"**Risk:** {action.risk.value}  \n"
        f"**Deadline:** {deadline.isoformat(timespec='seconds')} — then it "
        f"{'runs automatically' if deadline_outcome(level, action) == 'run' else 'will not run'}"
        f"\n\n**Parameters:**\n{params}\n\n**Issues:**\n{issues}\n\n"
        f"**Reason (Claude, untrusted):**\n\n> {action.reason or '-'}\n\n"
        f"**Expected outcome:**\n\n> {action.expected_outcome or '-'}\n\n"
        f"{ui_note}\n\n"
        f"_action `{action.action_id}` · policy `{action.policy_hash}`_"
    )


class Tally(Frozen):
    decision: Literal["approve", "reject"] | None
    deciders: list[str]
    approvals: list[str]
    rejections: list[str]
    ignored: list[str]


def counts(vote: Vote, cutoff: datetime | None = None) -> bool:
    """Is the reaction behind `vote` standing (at `cutoff`, if given)?

    Without a cutoff: it was not removed. At a cutoff (the deadline): it was first seen by
    then and not removed by then, so a reaction added after the deadline never counts and
    one removed only after it still does (it stood when the deadline fell).
    """
    if cutoff is None:
        return vote.removed_at is None
    return vote.first_seen_at <= cutoff and (vote.removed_at is None or vote.removed_at > cutoff)


def voters(votes: Sequence[Vote], cutoff: datetime | None = None) -> list[str]:
    """The distinct user ids whose standing votes must be checked against the approver
    list, rejecters first (one allowed ❌ decides, so it is worth knowing first)."""
    standing = [v for v in votes if counts(v, cutoff)]
    ordered = [v.user_id for v in standing if v.emoji == REJECT]
    ordered += [v.user_id for v in standing if v.emoji != REJECT]
    return list(dict.fromkeys(ordered))


def realm(user_id: str) -> str:
    """Where a voter's identity lives: the `channel:` prefix of a vote cast through
    several chat channels at once (`channels.channel_set`), else "" (one channel)."""
    name, sep, _ = user_id.partition(":")
    return name if sep else ""


def quorum(approvers: Iterable[str]) -> int:
    """How many distinct people provably approved: the most in any one realm. One
    person may hold an account in each chat channel and the accounts are not linked,
    so approvals from different channels never add up to a quorum."""
    per_realm = Counter(realm(u) for u in approvers)
    return max(per_realm.values(), default=0)


def tally(
    votes: Sequence[Vote],
    *,
    allowed: Callable[[str], bool],
    bot_user_ids: set[str],
    level: RiskLevel,
    cutoff: datetime | None = None,
) -> Tally:
    """Count the standing votes of allowed humans (as they stood at `cutoff`, if given).

    Bots (`bot_user_ids`) and users `allowed` refuses are ignored; one allowed ❌ rejects;
    otherwise `level.approvers_needed` distinct allowed ✅ approve; otherwise no decision.
    """
    approvals: dict[str, str] = {}
    rejections: dict[str, str] = {}
    ignored: list[str] = []
    for v in votes:
        if not counts(v, cutoff):
            continue
        if v.user_id in bot_user_ids or not allowed(v.user_id):
            ignored.append(v.username)
            continue
        if v.emoji == REJECT:
            rejections[v.user_id] = v.username
        elif v.emoji == APPROVE:
            approvals[v.user_id] = v.username
    approving = sorted(approvals.values())
    if rejections:
        rejecting = sorted(rejections.values())
        return Tally(
            decision="reject",
            deciders=rejecting,
            approvals=approving,
            rejections=rejecting,
            ignored=ignored,
        )
    decided = quorum(approvals) >= level.approvers_needed
    return Tally(
        decision="approve" if decided else None,
        deciders=approving if decided else [],
        approvals=approving,
        rejections=[],
        ignored=ignored,
    )


def deadline_decision(
    level: RiskLevel, action: ProposedAction, *, reached_chat: bool, channel: str = "Discord"
) -> tuple[Literal["approve", "reject"], str]:
    """The decision applied when the deadline passes undecided, and why.

    The register's default for the risk level, unless the catalog entry forbids a
    deadline default from running it, or the request never reached the chat channel
    (`channel`, its title: nobody could have objected there, so it never runs by default).
    """
    if not reached_chat:
        return "reject", f"deadline passed; the request never reached {channel}"
    if deadline_outcome(level, action) == "run":
        return "approve", f"deadline passed: the {action.risk.value}-risk default is to run"
    return "reject", f"deadline passed: the {action.risk.value}-risk default is not to run"


def decide(
    votes: Sequence[Vote],
    *,
    allowed: Callable[[str], bool],
    bot_user_ids: set[str],
    level: RiskLevel,
    action: ProposedAction,
    deadline: datetime,
    reached_chat: bool,
    now: datetime,
    via: Via = "discord",
    channel: str = "Discord",
) -> tuple[Decision | None, Tally]:
    """The decision to apply now, if any, and the tally behind it: the votes (as they stood
    at the deadline) when they decide, else the register's default once the deadline has
    passed, else none yet. `via` and `channel` name the chat channel the votes came from
    (its registry name and its title)."""
    result = tally(votes, allowed=allowed, bot_user_ids=bot_user_ids, level=level, cutoff=deadline)
    if result.decision is not None:
        decision = Decision(
            action_id=action.action_id,
            decision=result.decision,
            decider=", ".join(result.deciders),
            via=via,
            intended_at=now,
        )
        return decision, result
    if now >= deadline:
        choice, why = deadline_decision(level, action, reached_chat=reached_chat, channel=channel)
        decision = Decision(
            action_id=action.action_id,
            decision=choice,
            decider="deadline default",
            via="deadline",
            comment=why,
            intended_at=now,
        )
        return decision, result
    return None, result


class ResumeOutcome(StrEnum):
    """What Prefect's answer to a resume means for the decision sent with it."""

    APPLIED = "applied"  # our input was applied
    TAKEN = "taken"  # the run was resumed already (the Prefect UI, another listener)
    RETRY = "retry"  # the run is still entering its pause: try again next poll
    REFUSED = "refused"  # any other refusal: reported


class ResumeAnswer(Frozen):
    """Prefect's answer to one resume: what it means, and the reason Prefect gave."""

    outcome: ResumeOutcome
    reason: str = ""


def resume_outcome(status: str, reason: str) -> ResumeOutcome:
    """What Prefect's answer to a resume means: ACCEPT → our input was applied; ABORT →
    the run was resumed already (the UI, another listener); a REJECT for "schema not
    found" → the run is still entering its pause, try again; any other REJECT → refused."""
    if status == "ACCEPT":
        return ResumeOutcome.APPLIED
    if status == "ABORT":
        return ResumeOutcome.TAKEN
    if "schema not found" in reason.lower():
        return ResumeOutcome.RETRY
    return ResumeOutcome.REFUSED


def applied_by_prefect(
    response: Mapping[str, Any],
    *,
    intent: Decision | None,
    level: RiskLevel,
    action_id: str,
    now: datetime,
) -> Decision | None:
    """The decision a run was resumed with, when the resume was not confirmed as the
    listener's: the recorded intent if the input matches it (another listener, or one
    killed before marking it applied), else a Prefect UI decision — or None for a UI
    approve the register refuses (the run pauses again and stays gated)."""
    choice = response.get("decision")
    if choice not in ("approve", "reject"):
        return None
    if intent is not None and intent.via != "ui" and choice == intent.decision:
        return intent.model_copy(update={"applied_at": intent.applied_at or now})
    if choice == "approve" and not level.ui_approval_allowed:
        return None
    return Decision(
        action_id=action_id,
        decision=choice,
        decider="Prefect UI",
        via="ui",
        comment=(str(response.get("comment") or "") or None),
        intended_at=now,
        applied_at=now,
    )


def reminder_due(
    requested_at: datetime,
    deadline: datetime,
    now: datetime,
    *,
    fraction: float,
    before_seconds: float | None = None,
) -> bool:
    """Is it time for the one reminder? When `before_seconds` (or else `fraction` of the
    decision window) remains before the deadline, and the deadline has not passed."""
    if now >= deadline:
        return False
    window = (deadline - requested_at).total_seconds()
    lead = before_seconds if before_seconds is not None else window * fraction
    return (deadline - now).total_seconds() <= lead


# --- the listener's rules ------------------------------------------------------------------
def deleted_at_deadline(channel: str) -> str:
    """The comment of a deadline default on a request deleted from `channel`."""
    return f"deadline passed; the approval request was deleted from {channel}"


DELETED_AT_DEADLINE = deleted_at_deadline("Discord")


def roles_needed(user_id: str, approvers: Approvers, guild_id: str | None) -> bool:
    """Whether `may_approve` needs the user's roles looked up first (a listed user
    never does; without a guild they cannot be looked up). A channel's "guild" is where
    its groups live and "roles" are its groups: a Discord guild and its roles, a Slack
    workspace and its user groups."""
    if user_id in approvers.user_ids or not guild_id:
        return False
    if approvers.role_ids:
        return True
    return not approvers.user_ids and approvers.any_member


def may_approve(
    user_id: str, approvers: Approvers, *, guild_id: str | None, roles: Sequence[str] | None
) -> bool:
    """May `user_id` decide in a chat channel? Approver user ids or role ids (Slack: user
    group ids) from the channel's block; with neither listed, any member only if
    `any_member` is set.

    `roles` are the user's role (or approver group) ids as looked up when `roles_needed`
    said so (None: not a member of the guild or workspace, or not looked up). Roles
    cannot be checked without the guild, and a person who left it no longer counts as a
    channel member."""
    if user_id in approvers.user_ids:
        return True
    if approvers.role_ids:
        return bool(guild_id and roles and set(roles) & set(approvers.role_ids))
    if approvers.user_ids or not approvers.any_member:
        return False
    return not guild_id or roles is not None


def with_deleted_request(
    decision: Decision | None, deleted: bool, channel: str = "Discord"
) -> Decision | None:
    """A deadline default applied to a request deleted from the chat channel says so (the
    votes recorded before stand; nobody could object after, so it never runs by default)."""
    if deleted and decision is not None and decision.via == "deadline":
        return decision.model_copy(update={"comment": deleted_at_deadline(channel)})
    return decision


def run_to_confirm(record: ActionRecord, paused: Container[str]) -> str | None:
    """The run whose applied input must be read back for an intent recorded but not
    marked applied (a listener died between resuming and marking, or lost a race); None
    when there is nothing to confirm, or the run is still paused (the intent is then
    applied by the poll's resume)."""
    if record.decision is None or record.decision.applied_at is not None:
        return None
    run_id = (record.request.flow_run_id if record.request else None) or record.flow_run_id
    return None if run_id is None or run_id in paused else run_id


def request_channel(request: ApprovalRequest, approvals_channel_id: str) -> str:
    """The channel the request was posted in (older records: the approvals channel)."""
    return request.channel_id or approvals_channel_id


def operator_answer(record: ActionRecord, now: datetime, *, decider: str, comment: str) -> Decision:
    """What the kill switch answers a pending approval with: an intent recorded before
    the switch went on, as it is (the first intent always wins; an approve is then
    refused by the launcher), else a reject by the operator."""
    return record.decision or Decision(
        action_id=record.proposal.action_id,
        decision="reject",
        decider=decider,
        via="operator",
        comment=comment,
        intended_at=now,
    )


class PollStats(BaseModel):
    """What one listener poll did."""

    paused_runs: int = 0
    pending: int = 0
    resumed: int = 0
    reminders: int = 0
    confirmed: int = 0  # decisions applied earlier, confirmed from Prefect in this poll
    announced: int = 0
    errors: list[str] = []


class ListenerReport(BaseModel):
    """What one bounded run of the loop did."""

    polls: int = 0
    resumed: int = 0
    reminders: int = 0
    errors: int = 0

    def add(self, stats: PollStats) -> None:
        self.polls += 1
        self.resumed += stats.resumed
        self.reminders += stats.reminders
        self.errors += len(stats.errors)
