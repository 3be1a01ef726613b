"""Several chat channels at once (Discord and Slack): one `ChatChannel` over all of them.

Each action is asked in every channel; its `ApprovalRequest` then holds every channel's
ids (`channel_id` "discord=<channel>;slack=<channel>", `message_id`
"discord=<channel>/<message>;slack=<channel>/<ts>"), so nothing else changes: the ledger,
the listener and `core.approval` see one request and one ballot. The ballot merges the
channels' reactions with each person's id prefixed by their channel ("slack:U…"), so
one ❌ in either channel beats ✅ in either, a quorum must be reached within one channel
(`core.approval.quorum`: one person may hold an account in each, and they are not
linked), and a vote is checked against the approvers of the channel it was cast in.
Posts, follow-ups and the decision's edit go to every channel where the request was
asked.

A channel that fails to post is logged and left out (the others still ask); only when
every channel fails does the error reach the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from prefect.exceptions import MissingContextError
from prefect.logging import get_logger, get_run_logger

from channels.port import Ballot, ChatChannel, Posted, Reaction
from clients.errors import UpstreamError
from core.approvers import Approvers
from core.messages import ApprovalCard, ChatMessage, RequestUpdate
from core.records import ApprovalRequest

T = TypeVar("T")
_PART, _ID = ";", "/"


def _log() -> Any:
    try:
        return get_run_logger()
    except MissingContextError:
        return get_logger("remediation.chat")


def encode_ids(posted: dict[str, Posted]) -> tuple[str, str]:
    """A request's `channel_id` and `message_id` for the channels it was asked in."""
    channels = _PART.join(f"{name}={p.channel_id}" for name, p in posted.items())
    messages = _PART.join(f"{name}={p.channel_id}{_ID}{p.message_id}" for name, p in posted.items())
    return channels, messages


def decode_ids(request: ApprovalRequest) -> dict[str, ApprovalRequest]:
    """Each channel's view of a request asked in several: its own channel and message id.
    A request recorded by a single channel (no "name=" parts) belongs to none here."""
    out: dict[str, ApprovalRequest] = {}
    for part in (request.message_id or "").split(_PART):
        name, sep, ids = part.partition("=")
        channel, sep2, message = ids.partition(_ID)
        if sep and sep2 and channel and message:
            out[name] = request.model_copy(update={"channel_id": channel, "message_id": message})
    return out


def voter_id(channel: str, user_id: str) -> str:
    return f"{channel}:{user_id}"


class ChannelSet:
    """Every configured chat channel as one (`Connections.chat` when several are)."""

    name = "chat"  # a decision made here is `via="chat"`; the decider's name says where

    def __init__(self, channels: Sequence[ChatChannel]) -> None:
        self.channels = {c.name: c for c in channels}
        self.title = " and ".join(c.title for c in channels)
        self.channel_id = encode_ids(
            {c.name: Posted(channel_id=c.channel_id, message_id="-") for c in channels}
        )[0]
        # The approvers are each channel's own; a vote is checked in its channel.
        self.approvers = Approvers(
            user_ids=[voter_id(c.name, u) for c in channels for u in c.approvers.user_ids],
            role_ids=[voter_id(c.name, r) for c in channels for r in c.approvers.role_ids],
            any_member=any(c.approvers.any_member for c in channels),
        )

    async def _each(self, what: str, calls: dict[str, Callable[[], Awaitable[T]]]) -> dict[str, T]:
        """Run one call per channel at once; a failing channel is logged and left out,
        unless every channel failed (then the first error is raised)."""
        names = list(calls)
        results = await asyncio.gather(*(calls[n]() for n in names), return_exceptions=True)
        done: dict[str, T] = {}
        errors: list[BaseException] = []
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, UpstreamError):
                    raise result
                _log().error("%s %s failed: %s", self.channels[name].title, what, result)
                errors.append(result)
            else:
                done[name] = result
        if errors and not done:
            raise errors[0]
        return done

    async def post(self, message: ChatMessage) -> Posted:
        posted = await self._each(
            "post", {n: (lambda c=c: c.post(message)) for n, c in self.channels.items()}
        )
        return self._combined(posted)

    async def ask(self, card: ApprovalCard) -> Posted:
        """Ask in each channel, each card naming that channel's own approvers (the set's
        `approvers` hold prefixed ids, meaningful to no channel)."""
        posted = await self._each(
            "approval request",
            {
                n: (lambda c=c: c.ask(card.model_copy(update={"approvers": c.approvers})))
                for n, c in self.channels.items()
            },
        )
        return self._combined(posted)

    def _combined(self, posted: dict[str, Posted]) -> Posted:
        channel_id, message_id = encode_ids(posted)
        notices = [n for p in posted.values() for n in p.notices]
        return Posted(channel_id=channel_id, message_id=message_id, notices=notices)

    def _asked_in(self, request: ApprovalRequest) -> dict[str, tuple[ChatChannel, ApprovalRequest]]:
        return {
            name: (self.channels[name], own)
            for name, own in decode_ids(request).items()
            if name in self.channels
        }

    async def post_in_thread(self, request: ApprovalRequest, message: ChatMessage) -> Posted:
        asked = self._asked_in(request)
        if not asked:  # asked in no channel (or by a single channel before): post anew
            return await self.post(message)
        posted = await self._each(
            "post",
            {n: (lambda c=c, r=r: c.post_in_thread(r, message)) for n, (c, r) in asked.items()},
        )
        return self._combined(posted)

    async def update_request(self, request: ApprovalRequest, update: RequestUpdate) -> None:
        asked = self._asked_in(request)
        await self._each(
            "edit of the approval request",
            {n: (lambda c=c, r=r: c.update_request(r, update)) for n, (c, r) in asked.items()},
        )

    async def read_ballot(self, request: ApprovalRequest) -> Ballot:
        """Every channel's reactions, each voter's id prefixed by its channel; gone only
        when the request is gone from every channel (else people can still object)."""
        asked = self._asked_in(request)
        ballots = await self._each(
            "reading the votes",
            {n: (lambda c=c, r=r: c.read_ballot(r)) for n, (c, r) in asked.items()},
        )
        if len(ballots) < len(asked):
            # A channel could not be read: deciding on the others alone could miss a ❌.
            raise UpstreamError("read ballot", "a channel's votes could not be read")
        reactions = [
            Reaction(
                user_id=voter_id(name, r.user_id),
                username=f"{r.username} ({self.channels[name].title})",
                emoji=r.emoji,
            )
            for name, ballot in ballots.items()
            if not ballot.gone
            for r in ballot.reactions
        ]
        bots = {voter_id(name, b) for name, ballot in ballots.items() for b in ballot.bot_ids}
        gone = bool(ballots) and all(b.gone for b in ballots.values())
        return Ballot(reactions=reactions, bot_ids=bots, gone=gone)

    async def may_approve(self, user_id: str, *, cache_seconds: float) -> bool:
        """Asked of the channel the vote was cast in (the prefix of its id)."""
        name, sep, own_id = user_id.partition(":")
        channel = self.channels.get(name) if sep else None
        return channel is not None and await channel.may_approve(
            own_id, cache_seconds=cache_seconds
        )

    async def aclose(self) -> None:
        for channel in self.channels.values():
            await channel.aclose()
