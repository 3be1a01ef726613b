"""Claude over the Anthropic Messages API: one `anthropic.AsyncAnthropic` per client.

`create` returns a `core.wire.ClaudeReply` (text and tool_use blocks, stop_reason and
token usage including prompt-cache reads and writes); `count_tokens` the prompt's size.
Retries are the SDK's own: 408/409/429/5xx (529 included) and connection failures,
`max_retries` times, honouring `retry-after-ms` / `retry-after`, else exponential
backoff from 0.5 s. There is no second retry layer here.

Errors: every SDK error becomes `ClaudeError` (a `clients.errors.UpstreamError`) with
the HTTP status and the API's error type in the message, e.g.
"Claude create failed (HTTP 529): overloaded_error: Overloaded".
`request_sent` is False only when the connection could not be made (refused, DNS,
connect timeout); a read timeout or a dropped connection may have reached the API.
The API key is passed as a secret to every error (so it is masked even if an upstream
echoes it), and no SDK exception is chained (its request object carries the key in the
`Authorization` header, and a chained cause would travel with pickled task results).

No Prefect, no business rules: prompts and their parsing live in `core`.
"""

from __future__ import annotations

import logging
from typing import Any, Self

import anthropic
import httpx2
from anthropic.types import Message, TextBlock, ToolUseBlock

from clients.claude_model import DEFAULT_MODEL, default_model
from clients.errors import ClaudeError
from core.errors import ConfigError
from core.wire import ClaudeReply, TextContent, TokenUsage, ToolUseContent

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODEL", "ClaudeClient", "default_model"]

_CONNECT_FAILURES = (httpx2.ConnectError, httpx2.ConnectTimeout)


class ClaudeClient:
    """Async client for the Messages API; use `async with` or call `aclose()`."""

    def __init__(
        self,
        api_key: str,
        *,
        model: str,
        base_url: str | None = None,
        max_tokens: int = 4096,
        timeout: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        if not api_key:
            # An empty key would make the SDK fall back to environment credentials.
            raise ConfigError("api_key", "an Anthropic API key is required")
        if max_retries < 0:
            raise ConfigError("max_retries", "must be 0 or more")
        self.model = model
        self.max_tokens = max_tokens
        self.timeout = timeout
        self._secrets = (api_key,)
        self._sdk = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
        )

    async def create(
        self,
        *,
        system: str | list[dict[str, Any]],
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        tool_choice: dict[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> ClaudeReply:
        """Send one Messages request and return the model's reply."""
        extra: dict[str, Any] = {}
        if tools is not None:
            extra["tools"] = tools
        if tool_choice is not None:
            extra["tool_choice"] = tool_choice
        error: ClaudeError | None = None
        try:
            message = await self._sdk.messages.create(
                model=self.model,
                max_tokens=max_tokens or self.max_tokens,
                system=system,  # type: ignore[arg-type]  # plain dicts, checked by the API
                messages=messages,  # type: ignore[arg-type]
                **extra,
            )
        except anthropic.AnthropicError as exc:
            error = self._error("create", exc)
        if error is not None:
            # Raised outside the except block so the SDK error is not even the context.
            raise error
        reply = _reply(message)
        log.debug(
            "Claude %s: stop=%s input=%d output=%d cache_read=%d cache_write=%d",
            reply.model,
            reply.stop_reason,
            reply.usage.input_tokens,
            reply.usage.output_tokens,
            reply.usage.cache_read_input_tokens,
            reply.usage.cache_creation_input_tokens,
        )
        return reply

    async def count_tokens(
        self,
        *,
        system: str | list[dict[str, Any]],
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
    ) -> int:
        """The number of input tokens the prompt would use (system, messages, tools)."""
        extra: dict[str, Any] = {} if tools is None else {"tools": tools}
        error: ClaudeError | None = None
        try:
            counted = await self._sdk.messages.count_tokens(
                model=self.model,
                system=system,  # type: ignore[arg-type]
                messages=messages,  # type: ignore[arg-type]
                **extra,
            )
        except anthropic.AnthropicError as exc:
            error = self._error("count_tokens", exc)
        if error is not None:
            raise error
        return counted.input_tokens

    def _error(self, operation: str, exc: anthropic.AnthropicError) -> ClaudeError:
        """The `ClaudeError` for an SDK error, with the key masked and no SDK objects kept."""
        if isinstance(exc, anthropic.APIStatusError):
            # `type`/`api_message` come from Anthropic's error body; a proxy's non-JSON
            # answer has neither, and `message` then carries the raw body.
            kind = exc.type or type(exc).__name__
            return ClaudeError(
                operation,
                f"{kind}: {exc.api_message or exc.message}",
                status_code=exc.status_code,
                secrets=self._secrets,
            )
        if isinstance(exc, anthropic.APITimeoutError):
            return ClaudeError(
                operation, f"no answer within {self.timeout:g} s (timeout)", secrets=self._secrets
            )
        if isinstance(exc, anthropic.APIConnectionError):
            cause = exc.__cause__
            return ClaudeError(
                operation,
                f"connection failed: {type(cause).__name__ if cause else 'unknown'}: {cause}",
                secrets=self._secrets,
                request_sent=not isinstance(cause, _CONNECT_FAILURES),
            )
        return ClaudeError(operation, f"{type(exc).__name__}: {exc}", secrets=self._secrets)

    async def aclose(self) -> None:
        await self._sdk.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _reply(message: Message) -> ClaudeReply:
    content: list[TextContent | ToolUseContent] = []
    for block in message.content:
        # Other block types (thinking, server tools) are not used by this project.
        if isinstance(block, TextBlock):
            content.append(TextContent(text=block.text))
        elif isinstance(block, ToolUseBlock):
            content.append(ToolUseContent(id=block.id, name=block.name, input=block.input))
    usage = message.usage
    return ClaudeReply(
        model=message.model,
        content=content,
        stop_reason=message.stop_reason,
        usage=TokenUsage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_input_tokens=usage.cache_read_input_tokens or 0,
            cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
        ),
    )
