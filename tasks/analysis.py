"""Asking Claude (the SDK retries 429/5xx/timeouts itself, bounded by the block)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from core.prompt import AnalysisRequest
from core.wire import ClaudeReply

if TYPE_CHECKING:  # the SDK is imported only where Claude is called
    from clients.claude import ClaudeClient


@task(name="ask-claude", cache_policy=NO_CACHE, retries=0)
async def ask_claude(claude: ClaudeClient, request: AnalysisRequest) -> ClaudeReply:
    reply = await claude.create(
        system=request.system,
        messages=request.messages,
        tools=request.tools,
        tool_choice=request.tool_choice,
    )
    u = reply.usage
    get_run_logger().info(
        "Claude %s answered (stop %s): input %d, output %d, cache read %d, cache write %d tokens",
        reply.model,
        reply.stop_reason,
        u.input_tokens,
        u.output_tokens,
        u.cache_read_input_tokens,
        u.cache_creation_input_tokens,
    )
    return reply
