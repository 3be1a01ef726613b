"""A message that cannot be rendered is sent as plain text with a notice, never lost.

Renderers are pure and tested over every value the catalog allows; one that still raises
must not stop the cycle or the action that wanted to say something. `render_or_plain`
runs a renderer and, when it raises, gives a minimal plain-text message instead: what
could not be rendered and why, and the renderer's inputs as inert text. `degrades` wraps
a renderer with it, so call sites stay as they are; a `FallbackEmbed` carries its notice
so the posting path can report it (`fallback_notices`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence, Set
from typing import Any, Literal, ParamSpec, TypeVar

from pydantic import BaseModel, Field

from core.models import Frozen
from core.params import cut, parameters_json, value_text
from core.wire import Embed

P = ParamSpec("P")
R = TypeVar("R")
ORANGE = 0xE67E22
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


class FallbackEmbed(Embed):
    """A plain-text stand-in for a message whose renderer raised."""

    notice: str = Field(description="Why the real message could not be rendered.")


class Rendered(Frozen):
    embeds: list[Embed]
    notice: str | None = Field(default=None, description="Set when the fallback was used.")


def _block(text: str, limit: int) -> str:
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


def _notice(what: str, exc: BaseException) -> str:
    detail = cut(f"{type(exc).__name__}: {exc}", 300)
    return f"The {what} could not be rendered ({detail}); it is shown as plain text."


def plain_embed(
    what: str, exc: BaseException, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> FallbackEmbed:
    notice = _notice(what, exc)
    cycle_id = kwargs.get("cycle_id")
    return FallbackEmbed(
        title=cut(f"⚠️ {what} (plain-text fallback)", 256),
        description=f"⚠️ {notice}\n" + _block(plain_text(args, kwargs), 3500),
        color=ORANGE,
        footer=f"cycle {value_text(cycle_id)}" if cycle_id else None,
        notice=notice,
    )


def render_or_plain(
    what: str, render: Callable[..., Embed | Sequence[Embed]], *args: Any, **kwargs: Any
) -> Rendered:
    """The embeds `render` makes of its inputs, or one plain fallback embed and a notice."""
    try:
        out = render(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a renderer bug degrades the message, not the run
        embed = plain_embed(what, exc, args, kwargs)
        return Rendered(embeds=[embed], notice=embed.notice)
    return Rendered(embeds=[out] if isinstance(out, Embed) else list(out))


def plain_markdown(
    what: str, exc: BaseException, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> str:
    return f"> ⚠️ {_notice(what, exc)}\n\n" + _block(plain_text(args, kwargs), 20000) + "\n"


def degrades(
    what: str, shape: Literal["embed", "embeds", "markdown"]
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Wrap a renderer returning one embed, a list of embeds or Markdown so that an
    exception gives the plain fallback of the same shape instead."""

    def wrap(render: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(render)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            if shape != "markdown":
                embeds = render_or_plain(what, render, *args, **kwargs).embeds  # type: ignore[arg-type]
                return embeds[0] if shape == "embed" else embeds  # type: ignore[return-value]
            try:
                return render(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - degrade the message, not the run
                return plain_markdown(what, exc, args, kwargs)  # type: ignore[return-value]

        return guarded

    return wrap


def fallback_notices(embeds: Sequence[Embed]) -> list[str]:
    """The notices of the fallback embeds among `embeds`."""
    return [e.notice for e in embeds if isinstance(e, FallbackEmbed)]
