"""A message that cannot be rendered is shown as plain text with a notice, never lost.

Renderers are pure and tested over every value the catalog allows; one that still raises
must not stop the cycle or the action that wanted to say something. Here: the renderer's
inputs as inert plain text (`plain_text`), why it failed (`failure_notice`), and the
Markdown fallback of the Prefect reports (`degrades`); a chat channel's renderers degrade
to their own shape with these (Discord: `channels.discord_fallback`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence, Set
from typing import Any, Literal, ParamSpec, TypeVar

from pydantic import BaseModel

from core.params import cut, parameters_json, value_text

P = ParamSpec("P")
R = TypeVar("R")
# The fields that say what a model is about (an action, an issue, a decision...).
_SHOWN = (
    "catalog_key",
    "host",
    "risk",
    "parameters",
    "action_id",
    "decision",
    "decider",
    "title",
    "problem",
    "severity",
    "fingerprint",
    "summary",
    "reason",
)
_MAX_ITEMS = 25


def block(text: str, limit: int) -> str:
    return "```text\n" + cut(text.replace("```", "ʼʼʼ"), limit) + "\n```"


def _one(value: Any) -> str:
    if isinstance(value, Mapping):
        return parameters_json(value)
    if isinstance(value, BaseModel):
        return type(value).__name__
    return value_text(value)


def _describe(value: Any, *, nested: bool = False) -> list[str]:
    if isinstance(value, BaseModel):
        shown = [k for k in _SHOWN if k in type(value).model_fields]
        if not shown:
            return [type(value).__name__]
        return [" · ".join(f"{k}: {_one(getattr(value, k))}" for k in shown)]
    if isinstance(value, str | bytes) or nested:
        return [_one(value)]
    if isinstance(value, Sequence | Set):
        items = list(value)
        lines = [line for v in items[:_MAX_ITEMS] for line in _describe(v, nested=True)]
        if len(items) > _MAX_ITEMS:
            lines.append(f"… {len(items) - _MAX_ITEMS} more")
        return lines
    return [_one(value)]


def plain_text(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """A renderer's inputs as plain lines (never raises)."""
    try:
        lines = [line for a in args for line in _describe(a)]
        for name, value in kwargs.items():
            described = _describe(value)
            if len(described) == 1:
                lines.append(f"{name}: {described[0]}")
            else:
                lines += [f"{name}:", *described]
        return "\n".join(lines) or "(no inputs)"
    except Exception as exc:  # noqa: BLE001 - the fallback itself must not fail
        return f"(the inputs could not be shown either: {type(exc).__name__})"


def failure_notice(what: str, exc: BaseException) -> str:
    """Why a message is shown as plain text. (Its words stay here, not in `core.words`:
    core.report → core.fallback → core.words → core.report would be an import cycle.)"""
    detail = cut(f"{type(exc).__name__}: {exc}", 300)
    return f"The {what} could not be rendered ({detail}); it is shown as plain text."


def plain_markdown(
    what: str, exc: BaseException, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> str:
    return f"> ⚠️ {failure_notice(what, exc)}\n\n" + block(plain_text(args, kwargs), 20000) + "\n"


def degrades(
    what: str, shape: Literal["markdown"]
) -> Callable[[Callable[P, str]], Callable[P, str]]:
    """Wrap a Markdown renderer so that an exception gives the plain fallback instead
    (a channel's renderers degrade to its own shape: `channels.discord_fallback`)."""

    def wrap(render: Callable[P, str]) -> Callable[P, str]:
        @functools.wraps(render)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> str:
            try:
                return render(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - degrade the message, not the run
                return plain_markdown(what, exc, args, kwargs)

        return guarded

    return wrap
