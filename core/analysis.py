"""Claude's analysis: the answer contract, and a tolerant reader for what comes back.

The structured path is a forced `submit_analysis` tool call. Whatever arrives — a valid
tool call, a tool call cut at `max_tokens` or failing the schema, JSON in fences, JSON
wrapped in prose, trailing commas, truncated text — is read item by item, keeping only
complete, valid items. Nothing salvaged from a broken answer can run without passing
policy (`core.vetting`).
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


class ManualIssue(Frozen):
    """Something a human must look at."""

    host: str
    problem: str
    severity: str = "warning"
    recommendation: str = ""
    source: Literal[
        "model", "policy", "analysis_unavailable", "capacity", "attempts", "maintenance"
    ] = "model"


class _ModelManualIssue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    host: str = Field(min_length=1, max_length=255)
    problem: str = Field(min_length=1, max_length=4000)
    severity: str = Field(default="warning", max_length=32)
    recommendation: str = Field(default="", max_length=4000)


class Analysis(Frozen):
    summary: str = ""
    actions: list[ModelAction] = Field(default_factory=list)
    manual_issues: list[ManualIssue] = Field(default_factory=list)
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
        },
        "required": ["host", "problem", "severity", "recommendation"],
    }
    return {
        "type": "object",
        "properties": {
            "summary": {"type": "string"},
            "actions": {"type": "array", "items": action},
            "manual_issues": {"type": "array", "items": manual},
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


def _validated(
    raw_actions: list[Any], raw_manual: list[Any], notes: list[str]
) -> tuple[list[ModelAction], list[ManualIssue]]:
    actions, manual = [], []
    for i, item in enumerate(raw_actions):
        try:
            actions.append(ModelAction.model_validate(item))
        except ValidationError as exc:
            notes.append(f"action {i} dropped: {exc.errors()[0]['msg']}")
    for i, item in enumerate(raw_manual):
        try:
            m = _ModelManualIssue.model_validate(item)
            manual.append(ManualIssue(**m.model_dump(), source="model"))
        except ValidationError as exc:
            notes.append(f"manual issue {i} dropped: {exc.errors()[0]['msg']}")
    return actions, manual


def read_analysis(reply: ClaudeReply) -> Analysis:
    """Read the model's answer; raise AnalysisUnreadable when nothing can be salvaged."""
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
        raw_actions = data.get("actions") if isinstance(data.get("actions"), list) else []
        raw_manual = data.get("manual_issues")
        raw_manual = raw_manual if isinstance(raw_manual, list) else []
        if not isinstance(data.get("actions", []), list):
            notes.append("'actions' is not a list: ignored")
        summary = data.get("summary") if isinstance(data.get("summary"), str) else ""
        if "actions" not in data and "manual_issues" not in data:
            raise AnalysisUnreadable(
                "the answer has neither actions nor manual_issues", json.dumps(data)[:500]
            )
    else:
        raw_actions = _array_items(text, "actions")
        raw_manual = _array_items(text, "manual_issues")
        summary = _summary(text)
        if not raw_actions and not raw_manual and not re.search(r'"actions"\s*:\s*\[', text):
            raise AnalysisUnreadable("no JSON object could be read from the answer", text[:500])
        notes.append("salvaged complete items from a broken answer")
    actions, manual = _validated(raw_actions, raw_manual, notes)
    return Analysis(
        summary=summary,
        actions=actions,
        manual_issues=manual,
        notes=notes,
        salvaged=salvaged,
        stop_reason=reply.stop_reason,
        usage=reply.usage,
    )
