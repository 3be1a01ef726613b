"""One way to show catalog parameter values, used by every message, report and artifact.

The catalog allows strings, integers, numbers, booleans and enums of those
(`core.catalog.ParamSpec`); every renderer shows a value the same way: a string as it is,
a boolean as `true`/`false`, a number as JSON writes it. A string value is untrusted text
(a free-form parameter of a custom entry holds whatever the model wrote, up to 4096
characters), so the inline forms take out what could close a code span or break a line,
and callers show values only inside code spans or code blocks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

ELLIPSIS = "…"
# Look-alikes keep the text readable while making it inert inside a code span; every
# character `str.splitlines` breaks at counts as a line break.
_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_INLINE = str.maketrans({"`": "ʼ", "\t": " ", **dict.fromkeys(_BREAKS, "⏎")})


def cut(text: str, limit: int) -> str:
    """`text` if it fits in `limit` characters, else its head ending with "…"."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + ELLIPSIS


def value_text(value: Any) -> str:
    """A parameter value as plain text (never raises)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # past Python's int-to-str digit limit
            return f"<integer of {value.bit_length()} bits>"
    if isinstance(value, float):
        return json.dumps(value)  # 1.5, 1e+300, NaN, Infinity
    try:
        return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _json_value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else value_text(value)


def parameters_json(params: Mapping[str, Any]) -> str:
    """The parameters as one JSON-like object (strings quoted, non-ASCII kept readable)."""
    items = ", ".join(
        f"{json.dumps(str(k), ensure_ascii=False)}: {_json_value(v)}" for k, v in params.items()
    )
    return "{" + items + "}"


def inline(text: str, limit: int = 1000) -> str:
    """Text safe inside a code span: no backticks, no line breaks, at most `limit` long."""
    return cut(text.translate(_INLINE), limit)


def code_span(text: str, limit: int = 1000) -> str:
    """`text` as an inline code span (Discord and Markdown); empty text shows as "(empty)"."""
    return f"`{inline(text, max(limit - 2, 1)) or '(empty)'}`"


def parameters_inline(params: Mapping[str, Any], limit: int = 200) -> str:
    """`name=value, …` on one line, safe inside a code span, at most `limit` long."""
    return inline(", ".join(f"{k}={value_text(v)}" for k, v in params.items()), limit)
