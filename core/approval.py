"""Approval: what humans are shown, and how their reactions become one decision.

The Discord embed and the Prefect resume form show the same proposal and policy hash,
so approvers know they are deciding the same thing. `tally` is the pure core of the
listener: bots and people outside the approver list never count, ❌ beats ✅, a removed
reaction no longer counts, high risk needs a quorum of distinct approvers, and only
votes seen before the deadline count.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Literal

from core.models import Frozen
from core.policy import RiskLevel
from core.records import Vote
from core.render import quoted
from core.vetting import AttemptRecord, ProposedAction
from core.wire import Embed, EmbedField

APPROVE, REJECT = "✅", "❌"


class Approvers(Frozen):
    """Who may decide in Discord (from the Discord block)."""

    user_ids: list[str] = []
    role_ids: list[str] = []
    any_member: bool = False

    def describe(self) -> str:
        who = [f"<@{u}>" for u in self.user_ids] + [f"<@&{r}>" for r in self.role_ids]
        if who:
            return ", ".join(who)
        if self.any_member:
            return "any member of this channel"
        return "nobody from Discord (no approvers configured): use the Prefect UI"


def deadline_outcome(level: RiskLevel, action: ProposedAction) -> Literal["run", "skip"]:
    """What happens when nobody decides: the register's default, unless the catalog
    entry forbids a deadline default from running it."""
    if level.default_at_deadline == "run" and action.deadline_default_may_run:
        return "run"
    return "skip"


def _evidence(action: ProposedAction) -> str:
    lines = [f"• {i.summary or i.fingerprint}" for i in action.issues[:10]]
    return "\n".join(lines)[:1000] or "-"


def _history(records: Sequence[AttemptRecord]) -> str:
    if not records:
        return "no earlier attempts"
    return "\n".join(f"{r.at:%Y-%m-%d %H:%M} UTC: {r.outcome}" for r in records[-5:])


def approval_embed(
    action: ProposedAction,
    level: RiskLevel,
    *,
    deadline: datetime,
    approvers: Approvers,
    history: Sequence[AttemptRecord],
    ui_url: str | None,
) -> Embed:
    """The approval request posted to Discord (react ✅ or ❌)."""
    ts = int(deadline.timestamp())
    at_deadline = (
        "runs automatically" if deadline_outcome(level, action) == "run" else "will not run"
    )
    quorum = f" ({level.approvers_needed} approvers needed)" if level.approvers_needed > 1 else ""
    fields = [
        EmbedField(name="Host", value=f"`{action.host}`", inline=True),
        EmbedField(name="Risk", value=f"{level.emoji} {action.risk.value}{quorum}", inline=True),
        EmbedField(name="Action", value=f"`{action.catalog_key}`", inline=True),
        EmbedField(name="Parameters", value=quoted(json.dumps(action.parameters), 900)),
        EmbedField(name="Issue and evidence", value=_evidence(action)),
        EmbedField(name="Reason (Claude)", value=quoted(action.reason or "-", 900)),
        EmbedField(name="Expected outcome", value=quoted(action.expected_outcome or "-", 900)),
        EmbedField(name="Earlier attempts on this issue", value=_history(history)[:1024]),
        EmbedField(name="Who may approve", value=approvers.describe()[:1024]),
        EmbedField(name="Deadline", value=f"<t:{ts}:R> (<t:{ts}:f>) — then it {at_deadline}"),
    ]
    if action.notes:
        fields.append(EmbedField(name="Policy notes", value="\n".join(action.notes)[:1024]))
    if ui_url:
        fields.append(
            EmbedField(name="Prefect", value=f"[Open the run in the Prefect UI]({ui_url})")
        )
    return Embed(
        title=f"{level.emoji} Approve {action.catalog_key} on {action.host}? React ✅ or ❌",
        color=level.color,
        fields=fields,
        url=ui_url,
        footer=f"action {action.action_id} · policy {action.policy_hash}",
    )


def approval_markdown(
    action: ProposedAction, level: RiskLevel, *, deadline: datetime, ui_allowed: bool
) -> str:
    """The Prefect resume form's description (Markdown)."""
    params = "\n".join(f"  - `{k}`: `{v}`" for k, v in action.parameters.items()) or "  - none"
    issues = "\n".join(f"- {i.summary or i.fingerprint}" for i in action.issues[:10])
    ui_note = (
        "An approval here is sufficient."
        if ui_allowed
        else f"**An approval here is not sufficient for {action.risk.value} risk**: "
        f"{level.approvers_needed} approvers must approve in Discord. "
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


def tally(
    votes: Sequence[Vote],
    *,
    allowed: Callable[[str], bool],
    bot_user_ids: set[str],
    level: RiskLevel,
    cutoff: datetime | None = None,
) -> Tally:
    """Count the current votes of allowed humans (seen before `cutoff`, if given)."""
    approvals: dict[str, str] = {}
    rejections: dict[str, str] = {}
    ignored: list[str] = []
    for v in votes:
        if v.removed_at is not None or (cutoff is not None and v.first_seen_at > cutoff):
            continue
        if v.user_id in bot_user_ids or not allowed(v.user_id):
            ignored.append(v.username)
            continue
        if v.emoji == REJECT:
            rejections[v.user_id] = v.username
        elif v.emoji == APPROVE:
            approvals[v.user_id] = v.username
    if rejections:
        return Tally(
            decision="reject",
            deciders=sorted(rejections.values()),
            approvals=sorted(approvals.values()),
            rejections=sorted(rejections.values()),
            ignored=ignored,
        )
    if len(approvals) >= level.approvers_needed:
        return Tally(
            decision="approve",
            deciders=sorted(approvals.values()),
            approvals=sorted(approvals.values()),
            rejections=[],
            ignored=ignored,
        )
    return Tally(
        decision=None,
        deciders=[],
        approvals=sorted(approvals.values()),
        rejections=[],
        ignored=ignored,
    )


def decision_embed(
    original: Embed,
    *,
    outcome: str,
    color: int,
) -> Embed:
    """The approval message edited to show how it was decided."""
    return original.model_copy(
        update={
            "title": (original.title or "").split(" React ")[0].replace("Approve ", "")
            + f" — {outcome}",
            "color": color,
            "description": f"**{outcome}**",
        }
    )
