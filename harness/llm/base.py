"""The contract between prompted strategies and the LLM client."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ChatRequest:
    """One chat call. `key` comes back with its Completion (the item id)."""

    key: str
    messages: list[dict[str, str]]
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. response_format, extra_body={"grammar": ...}
    sample: int = 0  # which of an item's repeated samples (temperature > 0): each is cached apart


@dataclass
class Completion:
    """The outcome of one ChatRequest. A failed call is a Completion with `error` set, never an exception."""

    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0  # measured wall time of the call when it was made (kept with the cache entry)
    cost_usd: float = 0.0  # what the call costs (as if uncached): steady-state cost
    spent_usd: float = 0.0  # what this run paid for it: 0 when served from the cache
    cached: bool = False
    attempts: int = 1
    error: str | None = None
    # per generated token [text, logprob, {alternative: logprob}], when the request asked for log-probabilities
    logprobs: list | None = None


@dataclass(frozen=True)
class Pricing:
    """How a model's calls are priced, and where the price comes from (named in the manifest)."""

    mode: str = "per_token"  # "per_token": tokens x price; "per_second": measured seconds x usd_per_hour
    input_usd_per_token: float | None = None  # None: litellm's offline price map for the model
    output_usd_per_token: float | None = None
    usd_per_hour: float = 0.0  # per_second mode: the hardware profile's price
    source: str = ""
