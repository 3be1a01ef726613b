"""The Messages API wire format as the sandbox speaks it: scripted answers, the token
estimate, prompt-cache breakpoints, max_tokens truncation and request checks.

Token accounting (deterministic, so tests can predict it): a request is cut into
segments in prompt-cache order — each tool, each system block (a string system is one
block), each message content block (a string content is one block). A segment costs
ceil(chars / 4) tokens of its text (text blocks) or of its canonical JSON without
`cache_control` (every other block and every tool). Output tokens use the same estimate
over the answer — a text block's text, a tool_use block's compact input JSON — and are
at least 1.

max_tokens: an answer longer than its budget (the request's `max_tokens`, or the
answer's own `max_output_tokens` when smaller) is cut, with `stop_reason: "max_tokens"`
and `output_tokens` equal to the budget. Text is cut at budget*4 characters. A cut
tool_use keeps its block, but its input holds only the top-level parameters that were
complete within the budget: the API buffers each tool parameter until it is complete,
so a value cut off by max_tokens never appears (anthropic-sdk-python issue #794); the
SDK's `input` is always an object.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from typing import Any, NamedTuple

from pydantic import BaseModel, Field, field_validator

MAX_BREAKPOINTS = 4


def error_body(error_type: str, message: str) -> dict[str, Any]:
    """Anthropic's error body: `{"type": "error", "error": {"type", "message"}}`."""
    return {"type": "error", "error": {"type": error_type, "message": message}}


def estimate_tokens(text: str) -> int:
    """The sandbox tokenizer: ceil(chars / 4)."""
    return math.ceil(len(text) / 4)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def canonical(value: Any) -> str:
    """Compact, key-sorted JSON without `cache_control`: what a cache key hashes."""
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k != "cache_control"}
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


# --- scripted answers ---------------------------------------------------------------
class Answer(BaseModel):
    """One scripted reply: content blocks (`text`, or `tool_use` with a dict `input`)."""

    content: list[dict[str, Any]]
    stop_reason: str | None = None  # None: tool_use if a tool_use block is present, else end_turn
    max_output_tokens: int | None = Field(default=None, ge=1)  # a cap below max_tokens

    @field_validator("content")
    @classmethod
    def _blocks(cls, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for block in blocks:
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str):
                continue
            if kind == "tool_use" and isinstance(block.get("input"), dict) and block.get("name"):
                continue
            raise ValueError(f"unsupported content block {block!r}")
        return blocks


def text_answer(text: str) -> Answer:
    """Plain text."""
    return Answer(content=[{"type": "text", "text": text}])


def tool_answer(name: str, tool_input: dict[str, Any], *, text: str | None = None) -> Answer:
    """A tool_use block (input as given: valid, unknown keys or schema-invalid alike)."""
    blocks = [{"type": "text", "text": text}] if text else []
    return Answer(content=[*blocks, {"type": "tool_use", "name": name, "input": tool_input}])


def json_answer(value: Any) -> Answer:
    """The value as bare JSON text."""
    return text_answer(json.dumps(value, indent=2))


def fenced_json_answer(value: Any) -> Answer:
    """JSON inside a ```json fence."""
    return text_answer(f"```json\n{json.dumps(value, indent=2)}\n```")


def prose_json_answer(value: Any) -> Answer:
    """JSON with prose before and after it."""
    return text_answer(
        f"Here is my analysis of the fleet.\n\n{json.dumps(value)}\n\n"
        "Let me know if you need anything else."
    )


def trailing_comma_answer(value: Any) -> Answer:
    """JSON with a trailing comma before every non-empty container's closing bracket."""
    lines = json.dumps(value, indent=2).split("\n")
    for i in range(1, len(lines)):
        if lines[i].strip()[:1] in ("}", "]") and lines[i - 1].rstrip()[-1:] not in ("{", "["):
            lines[i - 1] += ","
    return text_answer("\n".join(lines))


def malformed_json_answer(value: Any = None) -> Answer:
    """Unparsable JSON: single quotes and no closing bracket."""
    text = json.dumps(value if value is not None else {"summary": "x", "actions": []})
    return text_answer(text.replace('"', "'")[:-1])


def truncated(answer: Answer, tokens: int) -> Answer:
    """The answer cut at `tokens` output tokens (or at the request's max_tokens if lower)."""
    return answer.model_copy(update={"max_output_tokens": tokens})


# --- rendering an answer ------------------------------------------------------------
def _block_tokens(block: dict[str, Any]) -> int:
    if block["type"] == "text":
        return estimate_tokens(block["text"])
    return estimate_tokens(_compact(block["input"]))


def _partial_input(tool_input: dict[str, Any], chars: int) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in tool_input.items():
        if len(_compact({**kept, key: value})) - 1 > chars:  # -1: the closing brace
            break
        kept[key] = value
    return kept


def render(answer: Answer, max_tokens: int) -> tuple[list[dict[str, Any]], str, int]:
    """Content blocks (with ids), stop_reason and output_tokens under a token budget."""
    budget = min(max_tokens, answer.max_output_tokens or max_tokens)
    used, blocks, cut = 0, [], False
    for block in answer.content:
        block = dict(block)
        if block["type"] == "tool_use":
            block.setdefault("id", f"toolu_01{uuid.uuid4().hex[:22]}")
        cost = _block_tokens(block)
        if used + cost <= budget:
            blocks.append(block)
            used += cost
            continue
        cut, room = True, budget - used
        if room > 0 and block["type"] == "tool_use":
            blocks.append({**block, "input": _partial_input(block["input"], room * 4)})
        elif room > 0:
            blocks.append({"type": "text", "text": block["text"][: room * 4]})
        used = budget
        break
    if cut:
        stop = "max_tokens"
    else:
        has_tool = any(b["type"] == "tool_use" for b in blocks)
        stop = answer.stop_reason or ("tool_use" if has_tool else "end_turn")
    return blocks, stop, max(used, 1)


# --- requests -----------------------------------------------------------------------
def segments(body: dict[str, Any]) -> list[tuple[int, str, str | None]]:
    """(tokens, cache-key material, breakpoint ttl or None) per segment, in cache order."""
    out: list[tuple[int, str, str | None]] = []

    def add(kind: str, block: Any) -> None:
        if isinstance(block, str):
            block = {"type": "text", "text": block}
        text = block.get("text") if block.get("type") == "text" else None
        tokens = estimate_tokens(text if isinstance(text, str) else canonical(block))
        control = block.get("cache_control")
        ttl = (control.get("ttl") or "5m") if isinstance(control, dict) else None
        out.append((tokens, f"{kind}:{canonical(block)}", ttl))

    for tool in body.get("tools") or []:
        add("tool", tool)
    system = body.get("system")
    for block in [system] if isinstance(system, str) else system or []:
        add("system", block)
    for message in body["messages"]:
        content = message["content"]
        for block in [content] if isinstance(content, str) else content:
            add(message["role"], block)
    top = body.get("cache_control")
    if isinstance(top, dict) and out and out[-1][2] is None:
        out[-1] = (out[-1][0], out[-1][1], top.get("ttl") or "5m")
    return out


class Breakpoint(NamedTuple):
    """A cacheable prefix: its cache key, its size in tokens and its TTL."""

    key: str
    tokens: int
    ttl: str


def cache_breakpoints(body: dict[str, Any], min_tokens: int = 0) -> tuple[int, list[Breakpoint]]:
    """Total input tokens, and the request's cacheable prefixes of at least `min_tokens`."""
    # Each key chains the model and every segment up to the breakpoint, so a change
    # anywhere before a breakpoint misses the cache from there on, as in the API.
    total, digest, points = 0, body["model"], []
    for tokens, material, ttl in segments(body):
        total += tokens
        digest = hashlib.sha256(f"{digest}\0{material}".encode()).hexdigest()
        if ttl is not None and total >= min_tokens:
            points.append(Breakpoint(digest, total, ttl))
    return total, points


def request_problem(body: Any, need_max_tokens: bool) -> str | None:
    """The API's complaint about a request body, or None when it is acceptable."""
    if not isinstance(body, dict):
        return "body: Input should be an object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if need_max_tokens:
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            return "max_tokens: Field required"
        if max_tokens < 1:
            return "max_tokens: Input should be greater than or equal to 1"
    if body.get("stream"):
        return "stream: the sandbox does not simulate streaming"
    messages = body.get("messages")
    if not isinstance(messages, list):
        return "messages: Field required"
    if not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        content = message.get("content")
        if not isinstance(content, str | list) or (
            isinstance(content, list) and not all(isinstance(b, dict) for b in content)
        ):
            return f"messages.{i}.content: Input should be a valid string or list of blocks"
    system = body.get("system")
    if system is not None and not (
        isinstance(system, str)
        or (isinstance(system, list) and all(isinstance(b, dict) for b in system))
    ):
        return "system: Input should be a valid string or list of text blocks"
    tools = body.get("tools") or []
    if not isinstance(tools, list) or not all(isinstance(t, dict) and t.get("name") for t in tools):
        return "tools: each tool needs a name"
    choice = body.get("tool_choice")
    if (
        isinstance(choice, dict)
        and choice.get("type") == "tool"
        and choice.get("name") not in {t["name"] for t in tools}
    ):
        return f"tool_choice.name: Tool '{choice.get('name')}' not found in provided tools"
    marks = sum(1 for _, _, ttl in segments(body) if ttl is not None)
    if marks > MAX_BREAKPOINTS:
        return (
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {marks}."
        )
    return None
