"""Claude's analysis: the answer contract, and a tolerant reader for what comes back.

The structured path is a forced `submit_analysis` tool call. Whatever arrives — a valid
tool call, a tool call cut at `max_tokens` or failing the schema, JSON in fences, JSON
wrapped in prose, trailing commas, truncated text — is read item by item, keeping only
complete, valid items. Nothing salvaged from a broken answer can run without passing
policy (`core.vetting`).

A malformed answer is never "nothing to do": a list that arrived as a JSON string (fenced
or not) is read as that list; a list field of any other shape (a number, an object, text
that is not a JSON list) makes the whole answer unreadable, so every issue goes to a human.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.models import Frozen, Risk
from core.wire import ClaudeReply, TokenUsage

ANALYSIS_TOOL = "submit_analysis"


class ModelAction(BaseModel):
    """One action as the model proposed it (untrusted until vetted)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    catalog_key: str = Field(min_length=1, max_length=128)
    host: str = Field(min_length=1, max_length=255)
    parameters: dict[str, Any] = Field(default_factory=dict)
    risk: Risk
    reason: str = Field(default="", max_length=4000)
    expected_outcome: str = Field(default="", max_length=2000)
    fingerprints: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("parameters", "fingerprints", mode="before")
    @classmethod
    def _decoded(cls, value: Any) -> Any:
        return _decoded_json(value)


class ManualIssue(Frozen):
    """Something a human must look at.

    `fingerprints` names the issues it covers; none covers every issue of its host.
    """

    host: str
    problem: str
    severity: str = "warning"
    recommendation: str = ""
    source: Literal[
        "model", "policy", "analysis_unavailable", "capacity", "attempts", "maintenance"
    ] = "model"
    fingerprints: list[str] = Field(default_factory=list)


class _ModelManualIssue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    host: str = Field(min_length=1, max_length=255)
    problem: str = Field(min_length=1, max_length=4000)
    severity: str = Field(default="warning", max_length=32)
    recommendation: str = Field(default="", max_length=4000)
    fingerprints: list[str] = Field(default_factory=list, max_length=1000)

    @field_validator("fingerprints", mode="before")
    @classmethod
    def _decoded(cls, value: Any) -> Any:
        return _decoded_json(value)


class NoActionNeeded(BaseModel):
    """The model's word that these issues need nothing done, and why (shown to people)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    fingerprints: list[str] = Field(min_length=1, max_length=1000)
    reason: str = Field(min_length=1, max_length=2000)

    @field_validator("fingerprints", mode="before")
    @classmethod
    def _decoded(cls, value: Any) -> Any:
        return _decoded_json(value)


class Analysis(Frozen):
    summary: str = ""
    actions: list[ModelAction] = Field(default_factory=list)
    manual_issues: list[ManualIssue] = Field(default_factory=list)
    no_action_needed: list[NoActionNeeded] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="What the reader repaired.")
    salvaged: bool = False
    stop_reason: str | None = None
    usage: TokenUsage = Field(default_factory=TokenUsage)


class AnalysisUnreadable(ValueError):
    """Nothing usable could be read from the model's answer."""

    def __init__(self, reason: str, excerpt: str) -> None:
        self.reason = reason
        self.excerpt = excerpt
        super().__init__(reason)


def analysis_tool_schema() -> dict[str, Any]:
    """The `submit_analysis` tool's input schema (the answer contract)."""
    action = {
        "type": "object",
        "properties": {
            "catalog_key": {"type": "string", "description": "Key of a catalog entry."},
            "host": {"type": "string", "description": "A host with a listed issue."},
            "parameters": {"type": "object", "description": "Parameters for the entry."},
            "risk": {"type": "string", "enum": ["low", "medium", "high"]},
            "reason": {"type": "string"},
            "expected_outcome": {"type": "string"},
            "fingerprints": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Fingerprints of the issues it addresses.",
            },
        },
        "required": [
            "catalog_key",
            "host",
            "parameters",
            "risk",
            "reason",
            "expected_outcome",
            "fingerprints",
        ],
    }
    manual = {
        "type": "object",
        "properties": {
            "host": {"type": "string"},
            "problem": {"type": "string"},
            "severity": {"type": "string", "enum": ["warning", "critical"]},
            "recommendation": {"type": "string"},
            "fingerprints": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Fingerprints of the issues it covers (none: all of its host's).",
            },
        },
        "required": ["host", "problem", "severity", "recommendation"],
    }
    no_action = {
        "type": "object",
        "properties": {
            "fingerprints": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "description": "Fingerprints of the issues that need no action.",
            },
            "reason": {"type": "string", "description": "Why; shown to people."},
        },
        "required": ["fingerprints", "reason"],
    }
    return {
        "type": "object",
        "properties": {
            "summary": {"type": "string"},
            "actions": {"type": "array", "items": action},
            "manual_issues": {"type": "array", "items": manual},
            "no_action_needed": {"type": "array", "items": no_action},
        },
        "required": ["summary", "actions", "manual_issues"],
    }


# --- tolerant reading ---------------------------------------------------------------
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)(?:```|$)", re.S)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def _loads_lenient(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return json.loads(_TRAILING_COMMA.sub(r"\1", text))


def _balanced(text: str, start: int) -> int | None:
    """Index just past the JSON value opening at `start` ('{' or '['), or None if cut."""
    depth, in_str, esc = 0, False, False
    for i in range(start, len(text)):
        c = text[i]
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _array_items(text: str, key: str) -> list[Any]:
    """Complete objects of the array under `"key": [` — even if the text is cut later."""
    m = re.search(rf'"{key}"\s*:\s*\[', text)
    if not m:
        return []
    items, i = [], m.end()
    while i < len(text):
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text) or text[i] != "{":
            break
        end = _balanced(text, i)
        if end is None:
            break  # truncated item: dropped
        try:
            items.append(_loads_lenient(text[i:end]))
        except ValueError:
            pass
        i = end
    return items


def _summary(text: str) -> str:
    m = re.search(r'"summary"\s*:\s*"((?:[^"\\]|\\.)*)"', text)
    if not m:
        return ""
    try:
        return json.loads(f'"{m.group(1)}"')
    except ValueError:
        return m.group(1)


def _candidate_objects(text: str) -> Any | None:
    """The whole answer object, if one parses (fences, prose around, trailing commas)."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for cand in candidates:
        start = cand.find("{")
        if start < 0:
            continue
        end = _balanced(cand, start)
        if end is None:
            continue
        try:
            return _loads_lenient(cand[start:end])
        except ValueError:
            continue
    return None


def _json_in_string(text: str) -> Any:
    """The JSON value a string holds (fenced or not, trailing commas allowed); raises
    ValueError when it holds none."""
    fenced = _FENCE.search(text)
    return _loads_lenient((fenced.group(1) if fenced else text).strip())


def _decoded_json(value: Any) -> Any:
    """A list or object that arrived as a JSON string, decoded; anything else unchanged
    (so validation still names what is wrong)."""
    if isinstance(value, str):
        try:
            decoded = _json_in_string(value)
        except ValueError:
            return value
        if isinstance(decoded, list | dict):
            return decoded
    return value


def _shape(value: Any) -> str:
    if isinstance(value, str):
        return "text that is not a JSON list"
    if isinstance(value, bool):
        kind = "a boolean"
    elif isinstance(value, int | float):
        kind = "a number"
    elif isinstance(value, dict):
        kind = "an object"
    else:
        kind = type(value).__name__
    return f"{kind}, not a list"


def _as_list(data: dict[str, Any], key: str, notes: list[str]) -> list[Any]:
    """The list under `key`: absent or null is empty and a JSON string holding a list is
    that list; any other shape makes the answer unreadable — never "nothing to do"."""
    value = data.get(key)
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        try:
            decoded = _json_in_string(value)
        except ValueError:
            decoded = None
        if isinstance(decoded, list):
            notes.append(f"{key!r} arrived as a JSON string: read as a list")
            return decoded
    raise AnalysisUnreadable(f"{key!r} is {_shape(value)}", json.dumps(data, default=str)[:500])


def _validated(
    raw_actions: list[Any], raw_manual: list[Any], raw_no_action: list[Any], notes: list[str]
) -> tuple[list[ModelAction], list[ManualIssue], list[NoActionNeeded]]:
    actions, manual, no_action = [], [], []
    for i, item in enumerate(raw_actions):
        try:
            actions.append(ModelAction.model_validate(_decoded_json(item)))
        except ValidationError as exc:
            notes.append(f"action {i} dropped: {exc.errors()[0]['msg']}")
    for i, item in enumerate(raw_manual):
        try:
            m = _ModelManualIssue.model_validate(_decoded_json(item))
            manual.append(ManualIssue(**m.model_dump(), source="model"))
        except ValidationError as exc:
            notes.append(f"manual issue {i} dropped: {exc.errors()[0]['msg']}")
    for i, item in enumerate(raw_no_action):
        try:
            no_action.append(NoActionNeeded.model_validate(_decoded_json(item)))
        except ValidationError as exc:
            notes.append(f"no-action entry {i} dropped: {exc.errors()[0]['msg']}")
    return actions, manual, no_action


LIST_FIELDS = ("actions", "manual_issues", "no_action_needed")


def read_analysis(reply: ClaudeReply) -> Analysis:
    """Read the model's answer; raise AnalysisUnreadable when it cannot be read."""
    notes: list[str] = []
    truncated = reply.stop_reason == "max_tokens"
    if truncated:
        notes.append("answer cut at max_tokens: only complete items kept")
    data: Any = reply.tool_input(ANALYSIS_TOOL)
    text = reply.text
    salvaged = truncated
    if isinstance(data, str):  # a tool input that arrived as raw (possibly cut) JSON text
        text, data = data, None
    if not isinstance(data, dict):
        data = _candidate_objects(text)
        salvaged = True
        if data is not None:
            notes.append("read JSON from text")
    if isinstance(data, dict):
        if not any(key in data for key in LIST_FIELDS):
            raise AnalysisUnreadable(
                "the answer has neither actions nor manual_issues", json.dumps(data)[:500]
            )
        raw_actions, raw_manual, raw_no_action = (_as_list(data, k, notes) for k in LIST_FIELDS)
        summary = data.get("summary") if isinstance(data.get("summary"), str) else ""
    else:
        raw_actions, raw_manual, raw_no_action = (_array_items(text, k) for k in LIST_FIELDS)
        summary = _summary(text)
        if not (raw_actions or raw_manual or raw_no_action) and not re.search(
            r'"actions"\s*:\s*\[', text
        ):
            raise AnalysisUnreadable("no JSON object could be read from the answer", text[:500])
        notes.append("salvaged complete items from a broken answer")
    actions, manual, no_action = _validated(raw_actions, raw_manual, raw_no_action, notes)
    return Analysis(
        summary=summary,
        actions=actions,
        manual_issues=manual,
        no_action_needed=no_action,
        notes=notes,
        salvaged=salvaged,
        stop_reason=reply.stop_reason,
        usage=reply.usage,
    )
