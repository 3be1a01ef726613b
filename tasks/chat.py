"""Posting to the chat channel: the one way tasks (and through them, flows) say
something to people. Every message is a channel-neutral `core.messages` model; the
channel's adapter (`Connections.chat`, from `channels.registry`) renders and posts it.

Never retried here: a retried post could appear twice (the clients already honour
rate limits)."""

from __future__ import annotations

from logging import Logger, LoggerAdapter
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from channels.port import ChatChannel, Posted
from channels.registry import BLOCK_FIELDS
from clients.errors import UpstreamError
from core.messages import ApprovalCard, ChatMessage, Notice, RequestUpdate
from core.records import ApprovalRequest
from tasks.connections import Connections

# The block fields of every chat channel, for a flow's NEEDED_BLOCKS (an unconfigured
# channel is skipped when the blocks load).
CHAT_BLOCKS: tuple[str, ...] = BLOCK_FIELDS


@task(name="post-to-chat", cache_policy=NO_CACHE, retries=0)
async def _post(chat: ChatChannel, message: ChatMessage) -> Posted:
    return await chat.post(message)


@task(name="post-approval-request", cache_policy=NO_CACHE, retries=0)
async def _ask(chat: ChatChannel, card: ApprovalCard) -> Posted:
    return await chat.ask(card)


# The Prefect tasks get the channel, not the connections: a task's inputs should not
# carry every block (and its secrets) of the run.
async def post_message(conns: Connections, message: ChatMessage) -> Posted:
    """Post a message in the approvals channel (a Prefect task run: `post-to-chat`)."""
    return await _post(conns.chat, message)


async def ask(conns: Connections, card: ApprovalCard) -> Posted:
    """Post the approval request and add ✅ and ❌ as the bot, so people only click (a
    Prefect task run: `post-approval-request`)."""
    return await _ask(conns.chat, card)


@task(name="post-in-thread", cache_policy=NO_CACHE, retries=0)
async def _post_in_thread(
    chat: ChatChannel, request: ApprovalRequest, message: ChatMessage
) -> Posted:
    return await chat.post_in_thread(request, message)


async def post_in_thread(
    conns: Connections, request: ApprovalRequest, message: ChatMessage
) -> Posted:
    """Post about a request beside it (a reminder, a follow-up; Slack: in its thread)."""
    return await _post_in_thread(conns.chat, request, message)


async def post_about(conns: Connections, action_id: str, message: ChatMessage) -> Posted:
    """Post about an action: beside its approval request when it has one that reached
    the channel (Slack: in the request's thread), else in the channel."""
    record = await conns.ledger.actions.get_action(action_id)
    request = record.request if record is not None else None
    if request is not None and request.message_id:
        return await post_in_thread(conns, request, message)
    return await post_message(conns, message)


async def update_request(
    conns: Connections, request: ApprovalRequest, update: RequestUpdate
) -> None:
    """Edit a request to show how it ended (a deleted request is left alone)."""
    await conns.chat.update_request(request, update)


async def say(
    conns: Connections,
    message: Notice,
    log: Logger | LoggerAdapter[Any],
    *,
    about: str | None = None,
) -> bool:
    """Post one notice to the approvals channel (about an action: beside its request,
    `post_about`). A failure is logged, never raised: a notice must not stop what it
    reports on. True when it was posted."""
    try:
        if about is not None:
            await post_about(conns, about, message)
        else:
            await post_message(conns, message)
        return True
    except UpstreamError as exc:
        log.error("%s post %r failed: %s", conns.chat.title, message.title, exc)
        return False
