"""The sandbox Anthropic server speaks the Messages API: shapes, usage, caching, faults."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic as sdk
import httpx
import pytest
from anthropic.types import Message

from sandbox.anthropic import (
    Answer,
    AnthropicServer,
    fenced_json_answer,
    json_answer,
    malformed_json_answer,
    prose_json_answer,
    text_answer,
    tool_answer,
    trailing_comma_answer,
    truncated,
)
from tests.fixtures.anthropic import ANTHROPIC_TEST_KEY

MODEL = "claude-sonnet-5-5"
ANALYSIS = {"summary": "s", "actions": [{"catalog_key": "restart_unit"}], "manual_issues": []}
HEADERS = {"x-api-key": ANTHROPIC_TEST_KEY, "anthropic-version": "2023-06-01"}
HTTP = httpx.Client(timeout=10)  # one client: creating one costs ~40 ms (SSL context)


def teardown_module() -> None:
    HTTP.close()


def post(server: AnthropicServer, body: dict[str, Any], **headers: str) -> httpx.Response:
    return HTTP.post(f"{server.url}/v1/messages", json=body, headers={**HEADERS, **headers})


def ask(content: Any = "hello", max_tokens: int = 1024, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


def count(server: AnthropicServer, body: dict[str, Any]) -> int:
    resp = HTTP.post(f"{server.url}/v1/messages/count_tokens", json=body, headers=HEADERS)
    assert resp.status_code == 200, resp.text
    return resp.json()["input_tokens"]


# --- answer shapes ------------------------------------------------------------------
SHAPES = {
    "text": (text_answer("plain words"), "end_turn"),
    "tool_use": (tool_answer("submit_analysis", ANALYSIS), "tool_use"),
    "text+tool_use": (tool_answer("submit_analysis", ANALYSIS, text="thinking"), "tool_use"),
    "unknown_keys": (tool_answer("submit_analysis", {**ANALYSIS, "extra": 1}), "tool_use"),
    "schema_invalid": (tool_answer("submit_analysis", {"actions": "none"}), "tool_use"),
    "json": (json_answer(ANALYSIS), "end_turn"),
    "fenced": (fenced_json_answer(ANALYSIS), "end_turn"),
    "prose": (prose_json_answer(ANALYSIS), "end_turn"),
    "trailing_commas": (trailing_comma_answer(ANALYSIS), "end_turn"),
    "malformed": (malformed_json_answer(ANALYSIS), "end_turn"),
    "truncated_text": (truncated(json_answer(ANALYSIS), 5), "max_tokens"),
    "truncated_tool": (truncated(tool_answer("submit_analysis", ANALYSIS), 5), "max_tokens"),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_every_answer_shape_is_a_valid_sdk_message(anthropic: AnthropicServer, shape: str) -> None:
    answer, stop_reason = SHAPES[shape]
    anthropic.enqueue(answer)
    resp = post(anthropic, ask(model="claude-any-model"))
    assert resp.status_code == 200, resp.text
    message = Message.model_validate(resp.json())
    assert message.stop_reason == stop_reason
    assert message.model == "claude-any-model"
    assert re.fullmatch(r"msg_01\w{22}", message.id)
    assert [b.type for b in message.content] == [b["type"] for b in answer.content]
    for block in message.content:
        if block.type == "tool_use":
            assert block.id.startswith("toolu_") and isinstance(block.input, dict)
    assert message.usage.output_tokens >= 1
    assert resp.headers["request-id"].startswith("req_")


def test_text_helpers_produce_what_they_name() -> None:
    def text(answer: Answer) -> str:
        return answer.content[0]["text"]

    assert json.loads(text(json_answer(ANALYSIS))) == ANALYSIS
    fenced = text(fenced_json_answer(ANALYSIS))
    assert fenced.startswith("```json\n") and fenced.endswith("\n```")
    assert json.loads(fenced[8:-4]) == ANALYSIS
    prose = text(prose_json_answer(ANALYSIS))
    assert not prose.startswith("{") and json.loads(prose[prose.index("{") : prose.rindex("}") + 1])
    commas = text(trailing_comma_answer(ANALYSIS))
    with pytest.raises(ValueError):
        json.loads(commas)
    assert json.loads(re.sub(r",(\s*[}\]])", r"\1", commas)) == ANALYSIS
    with pytest.raises(ValueError):
        json.loads(text(malformed_json_answer(ANALYSIS)))


def test_the_sdk_reads_a_tool_answer(anthropic: AnthropicServer) -> None:
    anthropic.enqueue(tool_answer("submit_analysis", ANALYSIS))
    client = sdk.Anthropic(api_key=ANTHROPIC_TEST_KEY, base_url=anthropic.url, max_retries=0)
    message = client.messages.create(
        model=MODEL, max_tokens=500, messages=[{"role": "user", "content": "go"}]
    )
    assert message.stop_reason == "tool_use"
    assert message.content[0].type == "tool_use" and message.content[0].input == ANALYSIS
    # SDK 2.x authenticates with a Bearer token, which the server accepts.
    [received] = anthropic.received("POST", "/v1/messages")
    assert received.headers["authorization"] == f"Bearer {ANTHROPIC_TEST_KEY}"


def test_an_answer_that_is_no_valid_message_fails_loudly(anthropic: AnthropicServer) -> None:
    anthropic.enqueue(Answer(content=[{"type": "text", "text": "x"}], stop_reason="finished"))
    resp = post(anthropic, ask())
    assert resp.status_code == 500
    assert resp.headers["x-should-retry"] == "false"
    assert resp.json()["error"]["type"] == "api_error"
    assert "invalid Message" in resp.json()["error"]["message"]


# --- authentication and request checks ----------------------------------------------
def test_keys_by_header_or_bearer_and_anthropic_error_bodies(anthropic: AnthropicServer) -> None:
    assert post(anthropic, ask()).status_code == 200
    bearer = {"x-api-key": "", "authorization": f"Bearer {ANTHROPIC_TEST_KEY}"}
    assert post(anthropic, ask(), **bearer).status_code == 200
    wrong = post(anthropic, ask(), **{"x-api-key": "sk-ant-wrong"})
    assert wrong.status_code == 401
    assert wrong.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }
    assert post(anthropic, ask(), **{"x-api-key": ""}).status_code == 401
    unversioned = post(anthropic, ask(), **{"anthropic-version": ""})
    assert unversioned.status_code == 400


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"model": MODEL, "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        (ask(max_tokens=0), "max_tokens"),
        ({**ask(), "messages": []}, "at least one message"),
        ({**ask(), "messages": [{"role": "system", "content": "x"}]}, "role"),
        (ask(tool_choice={"type": "tool", "name": "nope"}), "Tool 'nope' not found"),
        (
            ask(
                [
                    {"type": "text", "text": str(i), "cache_control": {"type": "ephemeral"}}
                    for i in range(5)
                ]
            ),
            "maximum of 4 blocks",
        ),
    ],
)
def test_invalid_requests_are_refused_like_the_api(
    anthropic: AnthropicServer, body: dict[str, Any], complaint: str
) -> None:
    resp = post(anthropic, body)
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert complaint in resp.json()["error"]["message"]


def test_unknown_path_has_anthropic_error_shape(anthropic: AnthropicServer) -> None:
    resp = HTTP.get(f"{anthropic.url}/v1/nothing", headers=HEADERS)
    assert resp.status_code == 404
    assert resp.json()["error"]["type"] == "not_found_error"


# --- usage, count_tokens and prompt caching -----------------------------------------
def test_count_tokens_is_ceil_chars_over_4_per_segment(anthropic: AnthropicServer) -> None:
    tool = {"name": "t", "input_schema": {"type": "object"}}
    tool_chars = len(json.dumps(tool, separators=(",", ":"), sort_keys=True))
    body = {"model": MODEL, "system": "s" * 41, "messages": [{"role": "user", "content": "hello"}]}
    assert count(anthropic, body) == 11 + 2
    assert count(anthropic, {**body, "tools": [tool]}) == 13 + -(-tool_chars // 4)
    resp = post(anthropic, ask("hello", system="s" * 41))
    assert resp.json()["usage"]["input_tokens"] == 13


def _usage(server: AnthropicServer, body: dict[str, Any]) -> dict[str, int]:
    resp = post(server, body)
    assert resp.status_code == 200, resp.text
    return resp.json()["usage"]


def cached_system(text: str, ttl: str | None = None) -> list[dict[str, Any]]:
    control = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return [{"type": "text", "text": text, "cache_control": control}]


def test_cache_first_creates_then_reads_and_a_new_prefix_creates(
    anthropic: AnthropicServer,
) -> None:
    body = ask("question one", system=cached_system("p" * 400))
    first = _usage(anthropic, body)
    assert (first["cache_creation_input_tokens"], first["cache_read_input_tokens"]) == (100, 0)
    assert first["input_tokens"] == 3  # "question one": only the uncached rest
    assert first["cache_creation"] == {
        "ephemeral_5m_input_tokens": 100,
        "ephemeral_1h_input_tokens": 0,
    }
    again = _usage(anthropic, ask("another question", system=cached_system("p" * 400)))
    assert (again["cache_creation_input_tokens"], again["cache_read_input_tokens"]) == (0, 100)
    assert again["input_tokens"] == 4
    changed = _usage(anthropic, ask("question one", system=cached_system("q" * 400)))
    assert (changed["cache_creation_input_tokens"], changed["cache_read_input_tokens"]) == (100, 0)
    other_model = _usage(anthropic, {**body, "model": "claude-opus-5"})
    assert other_model["cache_creation_input_tokens"] == 100  # caches are per model


def test_breakpoints_on_tools_and_messages_and_partial_reads(anthropic: AnthropicServer) -> None:
    tool = {"name": "t", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}
    tool_tokens = count(
        anthropic, {"model": MODEL, "tools": [tool], "messages": [{"role": "user", "content": ""}]}
    )
    assert _usage(anthropic, ask("x", tools=[tool]))["cache_creation_input_tokens"] == tool_tokens

    def turn(text: str) -> dict[str, Any]:
        block = {"type": "text", "text": "d" * 200, "cache_control": {"type": "ephemeral"}}
        return ask([block, {"type": "text", "text": text}], system=cached_system("s" * 400))

    anthropic.clear_cache()
    assert _usage(anthropic, turn("a"))["cache_creation_input_tokens"] == 150
    # Same prefix up to the second breakpoint: all 150 read, only the tail is input.
    assert _usage(anthropic, turn("bbbb"))["cache_read_input_tokens"] == 150
    # The document block changed: the system prefix (100) is read, the rest written.
    changed = ask(
        [{"type": "text", "text": "e" * 200, "cache_control": {"type": "ephemeral"}}],
        system=cached_system("s" * 400),
    )
    usage = _usage(anthropic, changed)
    assert (usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]) == (100, 50)
    total = count(anthropic, changed)
    assert total == sum(
        usage[k] for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    )


def test_top_level_cache_control_ttl_and_minimum(anthropic: AnthropicServer) -> None:
    body = ask("m" * 40, cache_control={"type": "ephemeral", "ttl": "1h"})
    usage = _usage(anthropic, body)
    assert usage["cache_creation_input_tokens"] == 10 and usage["input_tokens"] == 0
    assert usage["cache_creation"]["ephemeral_1h_input_tokens"] == 10
    assert HTTP.get(f"{anthropic.url}/_control/cache").json() == {"entries": 1}
    HTTP.post(f"{anthropic.url}/_control/settings", json={"min_cacheable_tokens": 1024})
    short = _usage(anthropic, ask("n" * 40, system=cached_system("p" * 400)))
    assert short["cache_creation_input_tokens"] == 0 and short["input_tokens"] == 110
    anthropic.reset()
    assert anthropic.min_cacheable_tokens == 1024  # a setting, not state: reset keeps it
    anthropic.min_cacheable_tokens = 0
    assert _usage(anthropic, body)["cache_creation_input_tokens"] == 10  # reset emptied it


# --- max_tokens -----------------------------------------------------------------------
def test_text_longer_than_max_tokens_is_cut(anthropic: AnthropicServer) -> None:
    anthropic.enqueue(text_answer("abcdefgh" * 10))  # 20 tokens
    message = Message.model_validate(post(anthropic, ask(max_tokens=3)).json())
    assert message.stop_reason == "max_tokens"
    assert message.content[0].text == "abcdefghabcd"
    assert message.usage.output_tokens == 3
    anthropic.enqueue(text_answer("abcdefgh" * 10))
    exact = Message.model_validate(post(anthropic, ask(max_tokens=20)).json())
    assert exact.stop_reason == "end_turn" and exact.usage.output_tokens == 20


def test_cut_tool_use_keeps_only_complete_parameters(anthropic: AnthropicServer) -> None:
    tool_input = {"summary": "s" * 20, "actions": [{"k": "v" * 40}], "manual_issues": []}
    # {"summary":"ssss…"} is 32 characters: complete within 10 tokens (40 characters).
    anthropic.enqueue(tool_answer("submit_analysis", tool_input))
    message = Message.model_validate(post(anthropic, ask(max_tokens=10)).json())
    assert message.stop_reason == "max_tokens"
    [block] = message.content
    assert block.type == "tool_use" and block.input == {"summary": "s" * 20}
    assert message.usage.output_tokens == 10
    anthropic.enqueue(truncated(tool_answer("submit_analysis", tool_input), 1))
    tiny = Message.model_validate(post(anthropic, ask(max_tokens=4096)).json())
    assert tiny.stop_reason == "max_tokens" and tiny.content[0].input == {}


# --- scripted queue and modes ---------------------------------------------------------
def test_queue_is_fifo_one_answer_per_request_then_the_model(anthropic: AnthropicServer) -> None:
    anthropic.enqueue(text_answer("one"), text_answer("two"))
    HTTP.post(f"{anthropic.url}/_control/answers", json=text_answer("three").model_dump())
    assert len(HTTP.get(f"{anthropic.url}/_control/answers").json()) == 3
    texts = [post(anthropic, ask()).json()["content"][0]["text"] for _ in range(4)]
    assert texts[:3] == ["one", "two", "three"]
    assert "sandbox model (simulation)" in texts[3]
    assert [b["messages"][0]["content"] for b in anthropic.message_bodies()] == ["hello"] * 4


def test_scripted_mode_without_answers_fails_without_retry(anthropic: AnthropicServer) -> None:
    settings = HTTP.post(f"{anthropic.url}/_control/settings", json={"mode": "scripted"})
    assert settings.json()["mode"] == "scripted"
    resp = post(anthropic, ask())
    assert resp.status_code == 500 and resp.headers["x-should-retry"] == "false"
    anthropic.enqueue(text_answer("scripted"))
    HTTP.delete(f"{anthropic.url}/_control/answers")
    assert post(anthropic, ask()).status_code == 500
    HTTP.post(f"{anthropic.url}/_control/reset")
    assert anthropic.mode == "model" and post(anthropic, ask()).status_code == 200


def test_control_api_rejects_bad_answers(anthropic: AnthropicServer) -> None:
    bad = {"content": [{"type": "tool_use", "name": "t", "input": ["not", "an", "object"]}]}
    assert HTTP.post(f"{anthropic.url}/_control/answers", json=bad).status_code == 422
    assert anthropic.pending() == []


# --- faults -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "status", "error_type"),
    [
        ("rate_limit", 429, "rate_limit_error"),
        ("overloaded", 529, "overloaded_error"),
        ("api_error", 500, "api_error"),
    ],
)
def test_error_faults_use_anthropic_bodies_then_clear(
    anthropic: AnthropicServer, kind: str, status: int, error_type: str
) -> None:
    spec = {"kind": kind, "times": 1, "retry_after_ms": 5}
    assert HTTP.post(f"{anthropic.url}/_control/errors", json=spec).status_code == 201
    resp = post(anthropic, ask())
    assert resp.status_code == status
    assert resp.json()["type"] == "error" and resp.json()["error"]["type"] == error_type
    assert resp.headers["retry-after-ms"] == "5"
    assert post(anthropic, ask()).status_code == 200


def test_rate_limit_sends_retry_after_seconds(anthropic: AnthropicServer) -> None:
    anthropic.rate_limit(retry_after=2)
    resp = post(anthropic, ask())
    assert resp.status_code == 429 and resp.headers["retry-after"] == "2"
    assert "retry-after-ms" not in resp.headers


def test_slow_and_disconnect(anthropic: AnthropicServer) -> None:
    anthropic.slow(1.0)
    with pytest.raises(httpx.ReadTimeout):
        HTTP.post(f"{anthropic.url}/v1/messages", json=ask(), headers=HEADERS, timeout=0.2)
    anthropic.disconnect()
    with pytest.raises(httpx.TransportError):
        post(anthropic, ask())
    assert len(anthropic.received("POST", "/v1/messages")) == 2


def test_a_request_held_across_a_reset_leaves_the_new_queue_alone(
    anthropic: AnthropicServer,
) -> None:
    anthropic.slow(0.3)
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(post, anthropic, ask())
        while not anthropic.received("POST", "/v1/messages"):  # arrived, now held
            time.sleep(0.005)
        anthropic.reset()
        anthropic.enqueue(text_answer("for the next test"))
        resp = held.result(timeout=5)
    assert resp.status_code == 500 and "reset" in resp.json()["error"]["message"]
    assert [a.content[0]["text"] for a in anthropic.pending()] == ["for the next test"]
