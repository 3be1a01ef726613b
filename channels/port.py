"""The chat-channel port: what the project asks of any chat channel.

An adapter (Discord today, `channels.discord`) renders `core.messages` its own way and
posts them, asks for a decision (a card people answer with ✅ or ❌), edits a request to
show how it was decided, reads the reactions back as votes, and says who may approve.
The decision rules stay in `core.approval` (one ❌ beats ✅, quorum, deadline, bots never
count), the same for every channel: an adapter only reports what it sees.

A request is addressed by the ledger's `ApprovalRequest` (its `channel_id` and
`message_id`: a Discord channel and message id, a Slack channel and `ts`).
"""

from __future__ import annotations

from typing import Protocol

from pydantic import Field

from core.approvers import Approvers
from core.messages import ApprovalCard, ChatMessage, RequestUpdate
from core.models import Frozen
from core.records import ApprovalRequest


class Posted(Frozen):
    """Where a message was posted."""

    channel_id: str
    message_id: str
    notices: list[str] = Field(
        default=[], description="Why a part was shown as plain text (a renderer failed)."
    )


class Reaction(Frozen):
    """One person's ✅ or ❌ on a request, as the channel shows it now."""

    user_id: str
    username: str
    emoji: str


class Ballot(Frozen):
    """Every reaction on a request (all pages), bots apart."""

    reactions: list[Reaction] = []
    bot_ids: set[str] = set()
    gone: bool = False  # the request was deleted: no new votes, nobody can object


class ChatChannel(Protocol):
    """One chat channel the project asks and reports in."""

    name: str  # its registry name and block field ("discord"), and a decision's `Via`
    title: str  # how people call it ("Discord")
    channel_id: str  # where requests and notices are posted
    approvers: Approvers

    async def post(self, message: ChatMessage) -> Posted:
        """Post a message in the channel's approvals channel."""
        ...

    async def ask(self, card: ApprovalCard) -> Posted:
        """Post an approval request and add ✅ and ❌ to it (people then only click)."""
        ...

    async def post_in_thread(self, request: ApprovalRequest, message: ChatMessage) -> Posted:
        """Post about a request beside it (Slack: in its thread; Discord: its channel)."""
        ...

    async def update_request(self, request: ApprovalRequest, update: RequestUpdate) -> None:
        """Edit the request to show how it ended; a deleted request is left alone."""
        ...

    async def read_ballot(self, request: ApprovalRequest) -> Ballot:
        """The ✅ and ❌ reactions on the request, every page, bots set apart."""
        ...

    async def may_approve(self, user_id: str, *, cache_seconds: float) -> bool:
        """May this person decide here (approver ids, groups or roles, or any member)?
        Group or role lookups are cached for `cache_seconds`."""
        ...

    async def aclose(self) -> None: ...
