"""Estimated Claude cost from token usage (USD per million tokens; an estimate only —
check your contract's prices and override `PRICES` per deployment if they differ)."""

from __future__ import annotations

from core.models import Frozen
from core.wire import TokenUsage


class Price(Frozen):
    input: float
    output: float
    cache_write: float
    cache_read: float


# Family defaults; the family is read from the model id ("opus", "sonnet", "haiku", ...).
PRICES: dict[str, Price] = {
    "opus": Price(input=15.0, output=75.0, cache_write=18.75, cache_read=1.5),
    "sonnet": Price(input=3.0, output=15.0, cache_write=3.75, cache_read=0.3),
    "haiku": Price(input=1.0, output=5.0, cache_write=1.25, cache_read=0.1),
}
DEFAULT_PRICE = PRICES["sonnet"]


def price_for(model: str) -> Price:
    return next((p for family, p in PRICES.items() if family in model), DEFAULT_PRICE)


def estimate_cost(usage: TokenUsage, model: str) -> float:
    p = price_for(model)
    return (
        usage.input_tokens * p.input
        + usage.output_tokens * p.output
        + usage.cache_creation_input_tokens * p.cache_write
        + usage.cache_read_input_tokens * p.cache_read
    ) / 1_000_000


def add_usage(a: TokenUsage, b: TokenUsage) -> TokenUsage:
    return TokenUsage(
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        cache_read_input_tokens=a.cache_read_input_tokens + b.cache_read_input_tokens,
        cache_creation_input_tokens=a.cache_creation_input_tokens + b.cache_creation_input_tokens,
    )
