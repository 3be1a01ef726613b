"""A Discord message that cannot be rendered is sent as plain text with a notice, never lost.

`render_or_plain` runs a renderer and, when it raises, gives one plain-text embed
instead: what could not be rendered and why, and the renderer's inputs as inert text
(`core.fallback`). `degrades` wraps a renderer with it, so call sites stay as they are; a
`FallbackEmbed` carries its notice so the posting path can report it (`fallback_notices`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, ParamSpec, TypeVar

from pydantic import Field

from core import fallback, words
from core.models import Frozen
from core.params import cut, value_text
from core.wire import Embed

P = ParamSpec("P")
R = TypeVar("R")
ORANGE = 0xE67E22


class FallbackEmbed(Embed):
    """A plain-text stand-in for a message whose renderer raised."""

    notice: str = Field(description="Why the real message could not be rendered.")


class Rendered(Frozen):
    embeds: list[Embed]
    notice: str | None = Field(default=None, description="Set when the fallback was used.")


def plain_embed(
    what: str, exc: BaseException, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> FallbackEmbed:
    notice = fallback.failure_notice(what, exc)
    cycle_id = kwargs.get("cycle_id")
    return FallbackEmbed(
        title=cut(words.plain_fallback_title(what), 256),
        description=f"⚠️ {notice}\n" + fallback.block(fallback.plain_text(args, kwargs), 3500),
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


def degrades(
    what: str, shape: Literal["embed", "embeds", "markdown"]
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Wrap a renderer returning one embed, a list of embeds or Markdown so that an
    exception gives the plain fallback of the same shape instead."""

    def wrap(render: Callable[P, R]) -> Callable[P, R]:
        if shape == "markdown":
            return fallback.degrades(what, shape)(render)  # type: ignore[arg-type, return-value]

        @functools.wraps(render)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            embeds = render_or_plain(what, render, *args, **kwargs).embeds  # type: ignore[arg-type]
            return embeds[0] if shape == "embed" else embeds  # type: ignore[return-value]

        return guarded

    return wrap


def fallback_notices(embeds: Sequence[Embed]) -> list[str]:
    """The notices of the fallback embeds among `embeds`."""
    return [e.notice for e in embeds if isinstance(e, FallbackEmbed)]
