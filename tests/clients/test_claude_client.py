"""ClaudeClient against the sandbox Anthropic server: replies, usage, retries, errors."""

from __future__ import annotations

import logging
import socket
import time
import traceback
import typing
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest
from anthropic._data import DEPRECATED_MODELS
from anthropic.types.model_param import ModelParam

from clients.claude import DEFAULT_MODEL, ClaudeClient, default_model
from clients.errors import ClaudeError
from core.errors import ConfigError
from core.wire import TextContent, ToolUseContent
from sandbox.anthropic import AnthropicServer, text_answer, tool_answer, truncated
from tests.fixtures.anthropic import ANTHROPIC_TEST_KEY

USER = [{"role": "user", "content": "What is wrong with web1?"}]
TOOL = {"name": "submit_analysis", "input_schema": {"type": "object"}}


@pytest.fixture
async def claude(anthropic: AnthropicServer) -> AsyncIterator[ClaudeClient]:
    async with ClaudeClient(
        ANTHROPIC_TEST_KEY, model=DEFAULT_MODEL, base_url=anthropic.url, max_retries=0
    ) as client:
        yield client


def client_for(server: AnthropicServer, **kwargs: Any) -> ClaudeClient:
    kwargs.setdefault("model", DEFAULT_MODEL)
    return ClaudeClient(kwargs.pop("api_key", ANTHROPIC_TEST_KEY), base_url=server.url, **kwargs)


async def test_create_returns_blocks_stop_reason_and_usage(
    anthropic: AnthropicServer, claude: ClaudeClient
) -> None:
    anthropic.enqueue(tool_answer("submit_analysis", {"actions": []}, text="Looking."))
    reply = await claude.create(
        system="You are the analyst.",
        messages=USER,
        tools=[TOOL],
        tool_choice={"type": "tool", "name": "submit_analysis"},
        max_tokens=777,
    )
    assert reply.model == DEFAULT_MODEL
    assert reply.stop_reason == "tool_use"
    assert [type(b) for b in reply.content] == [TextContent, ToolUseContent]
    assert reply.text == "Looking." and reply.tool_input("submit_analysis") == {"actions": []}
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    [body] = anthropic.message_bodies()
    assert body["max_tokens"] == 777 and body["model"] == DEFAULT_MODEL
    assert body["system"] == "You are the analyst." and body["messages"] == USER
    assert body["tools"] == [TOOL]
    assert body["tool_choice"] == {"type": "tool", "name": "submit_analysis"}


async def test_defaults_omit_tools_and_use_the_configured_max_tokens(
    anthropic: AnthropicServer,
) -> None:
    async with client_for(anthropic, max_tokens=321) as claude:
        await claude.create(system="s", messages=USER)
    [body] = anthropic.message_bodies()
    assert body["max_tokens"] == 321 and "tools" not in body and "tool_choice" not in body


async def test_usage_reports_cache_writes_then_reads(
    anthropic: AnthropicServer, claude: ClaudeClient
) -> None:
    system = [{"type": "text", "text": "x" * 4000, "cache_control": {"type": "ephemeral"}}]
    first = await claude.create(system=system, messages=USER)
    second = await claude.create(system=system, messages=USER)
    assert (first.usage.cache_creation_input_tokens, first.usage.cache_read_input_tokens) == (
        1000,
        0,
    )
    assert (second.usage.cache_creation_input_tokens, second.usage.cache_read_input_tokens) == (
        0,
        1000,
    )
    assert second.usage.input_tokens == first.usage.input_tokens > 0


async def test_count_tokens(anthropic: AnthropicServer, claude: ClaudeClient) -> None:
    small = await claude.count_tokens(system="s" * 40, messages=USER)
    large = await claude.count_tokens(system="s" * 400, messages=USER, tools=[TOOL])
    assert small == 10 + 6  # ceil(40 / 4) + ceil(len("What is wrong with web1?") / 4)
    assert large > small + 90
    [_, body] = [r.json() for r in anthropic.received("POST", "/v1/messages/count_tokens")]
    assert body["tools"] == [TOOL] and body["model"] == DEFAULT_MODEL


async def test_max_tokens_truncation_is_reported(
    anthropic: AnthropicServer, claude: ClaudeClient
) -> None:
    anthropic.enqueue(truncated(tool_answer("submit_analysis", {"a": "x" * 10, "b": "y" * 99}), 8))
    reply = await claude.create(system="s", messages=USER)
    assert reply.stop_reason == "max_tokens"
    assert reply.tool_input("submit_analysis") == {"a": "x" * 10}
    assert reply.usage.output_tokens == 8


# --- the default model ------------------------------------------------------------------
def test_default_model_is_a_current_sonnet_of_the_installed_sdk() -> None:
    [literal, _] = typing.get_args(ModelParam)
    assert default_model() == DEFAULT_MODEL
    assert DEFAULT_MODEL in typing.get_args(literal)
    assert DEFAULT_MODEL not in DEPRECATED_MODELS
    assert "sonnet" in DEFAULT_MODEL


# An id the project never uses, entered in the installed SDK's own deprecation table for
# one test: it proves the harness below catches a deprecated default on any SDK version,
# without depending on which real ids a given release still lists.
DEPRECATED_STAND_IN = "claude-test-deprecated-0-1"


@pytest.mark.parametrize("model", [DEFAULT_MODEL, DEPRECATED_STAND_IN])
async def test_the_sdk_does_not_warn_about_the_default_model(
    anthropic: AnthropicServer, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(DEPRECATED_MODELS, DEPRECATED_STAND_IN, "2020-01-01")
    async with client_for(anthropic, model=model) as claude:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            if model == DEFAULT_MODEL:
                await claude.create(system="s", messages=USER)
            else:
                with pytest.raises(DeprecationWarning, match=DEPRECATED_STAND_IN):
                    await claude.create(system="s", messages=USER)


# --- retries and errors -------------------------------------------------------------------
def attempts(server: AnthropicServer) -> list[float]:
    return [r.at for r in server.received("POST", "/v1/messages")]


async def test_429_retry_after_ms_is_honoured_then_succeeds(anthropic: AnthropicServer) -> None:
    # 600 ms is above the SDK's own first backoff (at most 0.5 s), so only the header
    # explains a gap this long.
    anthropic.rate_limit(times=1, retry_after_ms=600)
    anthropic.enqueue(text_answer("recovered"))
    async with client_for(anthropic, max_retries=1) as claude:
        reply = await claude.create(system="s", messages=USER)
    assert reply.text == "recovered"
    first, second = attempts(anthropic)
    assert second - first >= 0.6
    retry_counts = [r.headers["x-stainless-retry-count"] for r in anthropic.received("POST")]
    assert retry_counts == ["0", "1"]


async def test_429_retry_after_seconds_is_honoured(anthropic: AnthropicServer) -> None:
    anthropic.rate_limit(times=1, retry_after=0.7)
    async with client_for(anthropic, max_retries=1) as claude:
        await claude.create(system="s", messages=USER)
    first, second = attempts(anthropic)
    assert second - first >= 0.7


async def test_retries_are_bounded_by_max_retries(anthropic: AnthropicServer) -> None:
    anthropic.rate_limit(times=-1, retry_after_ms=1)
    async with client_for(anthropic, max_retries=2) as claude:
        with pytest.raises(ClaudeError) as caught:
            await claude.create(system="s", messages=USER)
    assert len(attempts(anthropic)) == 3
    assert caught.value.status_code == 429
    assert "rate_limit_error" in str(caught.value)


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [("overloaded", 529, "overloaded_error"), ("api_error", 500, "api_error")],
)
async def test_server_errors_retry_then_map_to_claude_error(
    anthropic: AnthropicServer, fault: str, status: int, error_type: str
) -> None:
    getattr(anthropic, fault)(times=1, retry_after_ms=1)
    anthropic.enqueue(text_answer("recovered"))
    async with client_for(anthropic, max_retries=1) as claude:
        assert (await claude.create(system="s", messages=USER)).text == "recovered"
        getattr(anthropic, fault)(times=-1, retry_after_ms=1)
        with pytest.raises(ClaudeError) as caught:
            await claude.create(system="s", messages=USER)
    assert caught.value.status_code == status
    assert error_type in str(caught.value)
    assert len(attempts(anthropic)) == 2 + 2


async def test_timeout(anthropic: AnthropicServer) -> None:
    anthropic.slow(2.0)
    started = time.monotonic()
    async with client_for(anthropic, timeout=0.3, max_retries=0) as claude:
        with pytest.raises(ClaudeError) as caught:
            await claude.create(system="s", messages=USER)
    assert time.monotonic() - started < 1.5
    assert "timeout" in str(caught.value)
    assert caught.value.status_code is None and caught.value.request_sent is True


async def test_connection_refused_was_not_sent() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    claude = ClaudeClient(
        ANTHROPIC_TEST_KEY, model=DEFAULT_MODEL, base_url=f"http://127.0.0.1:{port}", max_retries=0
    )
    async with claude:
        with pytest.raises(ClaudeError) as caught:
            await claude.count_tokens(system="s", messages=USER)
    assert caught.value.request_sent is False and caught.value.status_code is None
    assert caught.value.operation == "count_tokens"


async def test_dropped_connection_may_have_been_sent(anthropic: AnthropicServer) -> None:
    anthropic.disconnect()
    async with client_for(anthropic, max_retries=0) as claude:
        with pytest.raises(ClaudeError) as caught:
            await claude.create(system="s", messages=USER)
    assert caught.value.request_sent is True
    assert len(attempts(anthropic)) == 1


async def test_wrong_key_is_401_and_not_retried(anthropic: AnthropicServer) -> None:
    async with client_for(anthropic, api_key="sk-ant-wrong-key-123456", max_retries=2) as claude:
        with pytest.raises(ClaudeError) as caught:
            await claude.create(system="s", messages=USER)
    assert caught.value.status_code == 401
    assert "authentication_error" in str(caught.value)
    assert len(attempts(anthropic)) == 1


async def test_bad_request_is_400(anthropic: AnthropicServer, claude: ClaudeClient) -> None:
    with pytest.raises(ClaudeError) as caught:
        await claude.create(system="s", messages=[])
    assert caught.value.status_code == 400
    assert "invalid_request_error" in str(caught.value)


async def test_planted_key_never_appears_in_errors_or_logs(
    anthropic: AnthropicServer, caplog: pytest.LogCaptureFixture
) -> None:
    planted = "plantedkey7f3a9c1e5d2b"  # matches no redaction pattern: only the secret list
    anthropic.api_keys = anthropic.api_keys | {planted}
    try:
        # An upstream that echoes the credential it was sent (a proxy, a debug page).
        anthropic.error(400, "invalid_request_error", f"unexpected credential {planted}")
        caplog.set_level(logging.DEBUG)
        async with client_for(anthropic, api_key=planted, max_retries=0) as claude:
            with pytest.raises(ClaudeError) as caught:
                await claude.create(system="s", messages=USER)
    finally:
        anthropic.api_keys = frozenset({ANTHROPIC_TEST_KEY})
    [received] = anthropic.received("POST", "/v1/messages")
    assert received.headers["authorization"] == f"Bearer {planted}"
    error = caught.value
    assert "[REDACTED]" in str(error) and error.status_code == 400
    shown = "".join(traceback.format_exception(error)) + repr(error) + repr(error.args)
    assert planted not in shown
    assert error.__cause__ is None and error.__context__ is None
    assert planted not in caplog.text
    assert caplog.records  # the SDK did log at DEBUG, so the absence means something


def test_an_empty_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        ClaudeClient("", model=DEFAULT_MODEL)
