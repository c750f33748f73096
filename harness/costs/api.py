"""What one item costs on a provider's API, as the bill will read it: on demand, with prompt caching, or through
the batch API. Prices come from a `Quote` (litellm's offline price map or a config override, read when the run
ended, so a report re-prices without importing litellm); token counts from the run's own prompts."""
from __future__ import annotations

import math
from dataclasses import dataclass

from harness.costs.plan import ApiBilling


@dataclass(frozen=True)
class Quote:
    """A model's published prices, USD per token, and its retirement, with where they come from."""

    model: str
    provider: str
    input: float
    output: float
    batch_input: float | None = None
    batch_output: float | None = None
    cache_read: float | None = None
    cache_write: float | None = None  # a premium some providers charge to write the cache; None: the input price
    retires_on: str | None = None  # ISO date
    retirement_source: str | None = None
    source: str = ""


@dataclass(frozen=True)
class Tokens:
    """Mean tokens per item, counted with the model's tokenizer: the whole prompt, its shared prefix (the system
    prompt every item repeats) and the completion."""

    prompt: float
    prefix: float
    completion: float


def warm_share(monthly_volume: float, billing: ApiBilling) -> float:
    """The share of items that find the cached prefix still warm: with items arriving at random (a Poisson
    process) over the active hours, an item hits when the previous one came within the cache's lifetime,
    probability 1 - exp(-rate x ttl)."""
    per_minute = monthly_volume / (billing.active_hours_per_month * 60.0)
    return 1.0 - math.exp(-per_minute * billing.cache_ttl_minutes)


def cacheable(quote: Quote, tokens: Tokens, billing: ApiBilling) -> bool:
    return quote.cache_read is not None and tokens.prefix >= billing.min_prefix(quote.provider)


def per_item_usd(quote: Quote, tokens: Tokens, mode: str, billing: ApiBilling, monthly_volume: float) -> float:
    """One item's price under `mode` (on_demand, cached, batch) at a monthly volume (which sets how often the
    cache is warm). Batch calls are not cached; a batch price the map lacks falls back to on-demand."""
    if mode == "batch":
        batch_in = quote.input if quote.batch_input is None else quote.batch_input
        batch_out = quote.output if quote.batch_output is None else quote.batch_output
        return tokens.prompt * batch_in + tokens.completion * batch_out
    on_demand = tokens.prompt * quote.input + tokens.completion * quote.output
    if mode == "on_demand" or not cacheable(quote, tokens, billing):
        return on_demand
    warm = warm_share(monthly_volume, billing)
    write = quote.input if quote.cache_write is None else quote.cache_write
    prefix = tokens.prefix * (warm * quote.cache_read + (1.0 - warm) * write)
    return prefix + (tokens.prompt - tokens.prefix) * quote.input + tokens.completion * quote.output


def mode_note(quote: Quote, tokens: Tokens, mode: str, billing: ApiBilling, monthly_volume: float) -> str:
    """How the price was reached, in words a reader can check."""
    if mode == "batch":
        return "batch API prices" if quote.batch_input is not None else "no batch price known: on-demand prices"
    if mode == "on_demand":
        return "on-demand prices"
    if quote.cache_read is None:
        return "on-demand prices (the provider publishes no cached-input price)"
    minimum = billing.min_prefix(quote.provider)
    if tokens.prefix < minimum:
        return (f"on-demand prices: the shared prefix ({tokens.prefix:,.0f} tokens) is below {quote.provider}'s "
                f"minimum cacheable {minimum:,.0f}")
    return (f"{tokens.prefix:,.0f} prefix tokens cached, warm for {warm_share(monthly_volume, billing):.0%} of "
            f"items{' (cache writes at a premium)' if quote.cache_write else ''}")
