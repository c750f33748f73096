"""The prompted strategies' prompts priced on API models, without calling them: what a team would pay to run the
same prompts on the model it would buy. At the end of a run, each prompted strategy's recorded prompts are
counted with each listed model's tokenizer (the whole prompt, and the shared system prompt that prompt caching
can serve), completion tokens are the ones measured here, and the model's prices in every billing mode and its
retirement date come from litellm's offline price map (or the config's overrides). The rows go to the manifest,
so a report re-prices them at any plan without importing litellm; the accuracy they carry is the run's own
model's, never the projected model's."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from harness.costs.api import Quote, Tokens
from harness.errors import HarnessError
from harness.files import write_csv
from harness.strategies.base import API, PROMPTED

_QUOTE_KEYS = {"input": "input_cost_per_token", "output": "output_cost_per_token",
               "batch_input": "input_cost_per_token_batches", "batch_output": "output_cost_per_token_batches",
               "cache_read": "cache_read_input_token_cost", "cache_write": "cache_creation_input_token_cost"}


@dataclass(frozen=True)
class Projection:
    strategy: str  # the measured strategy whose prompts (and accuracy) this carries
    quote: Quote
    tokens: Tokens
    n: int
    tokenizer: str
    measured_model: str  # the model the accuracy was measured on
    own_model: bool  # the strategy ran on this API model itself: its accuracy is this model's

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Projection":
        data = dict(data)
        return cls(**{**data, "quote": Quote(**data["quote"]), "tokens": Tokens(**data["tokens"])})


def project(rundir, config: Mapping | None) -> list[dict]:
    """The run's prompted strategies on `config.models` (and, for a strategy that ran on an API model, on its
    own model), written to projection.csv; returns the manifest's rows. Empty without a prompted strategy."""
    models = [dict(spec) for spec in (config or {}).get("models") or []]
    for spec in models:
        if not spec.get("name"):
            raise HarnessError("projection.models: every entry needs a 'name' (a litellm model name, e.g. "
                               "gpt-4o-mini)")
    manifest = rundir.read_manifest()
    prompted = {name: fit for name, fit in manifest.strategies.items()
                if fit.family == PROMPTED and fit.prompt is not None}
    if not prompted:
        return []
    records = rundir.load_records()
    rows = []
    for name, fit in prompted.items():
        system = (rundir.path / fit.prompt.system_prompt_file).read_text(encoding="utf-8")
        group = records[records["strategy"] == name]
        users = [u for u in (_extra(e).get("user_prompt") for e in group["extra"]) if u is not None]
        completion = float(group["completion_tokens"].astype(float).mean())
        own = fit.details.get("model_info", {}).get("litellm_model") if fit.billing == API else None
        specs = models + ([{"name": own}] if own and own not in {s["name"] for s in models} else [])
        for spec in specs:
            rows.append(Projection(
                strategy=name, quote=quote(spec), tokens=_count(spec["name"], system, users, completion),
                n=len(users), tokenizer=tokenizer_name(spec["name"]), measured_model=fit.model,
                own_model=spec["name"] == own))
    write_csv(frame(rows), rundir.path / "projection.csv")
    return [row.to_dict() for row in rows]


def frame(rows: list[Projection]) -> pd.DataFrame:
    """projection.csv: one row per (strategy, API model), prices in USD per million tokens."""
    return pd.DataFrame([{"strategy": r.strategy, "api_model": r.quote.model, "provider": r.quote.provider,
                          "n": r.n, "prompt_tokens_mean": r.tokens.prompt, "prefix_tokens": r.tokens.prefix,
                          "completion_tokens_mean": r.tokens.completion,
                          **{f"{k}_usd_per_1m_tokens": None if getattr(r.quote, k) is None else
                             round(getattr(r.quote, k) * 1e6, 6) for k in _QUOTE_KEYS},
                          "retires_on": r.quote.retires_on, "measured_model": r.measured_model,
                          "own_model": r.own_model, "tokenizer": r.tokenizer, "price_source": r.quote.source}
                         for r in rows])


def _count(model: str, system: str, users: list[str], completion: float) -> Tokens:
    import litellm

    prompts = [litellm.token_counter(model=model, messages=[{"role": "system", "content": system},
                                                            {"role": "user", "content": user}]) for user in users]
    prefix = litellm.token_counter(model=model, messages=[{"role": "system", "content": system}])
    return Tokens(prompt=float(np.mean(prompts)) if prompts else float("nan"), prefix=float(prefix),
                  completion=completion)


def quote(spec: Mapping) -> Quote:
    """The model's prices: the config's overrides (USD per million tokens), else litellm's offline map."""
    import litellm

    litellm.suppress_debug_info = True  # an unmapped name would print its help banner
    name = spec["name"]
    try:  # get_model_info resolves provider prefixes (anthropic/claude-haiku-4-5), as the LLM client does
        info = dict(litellm.get_model_info(model=name))
        entry = litellm.model_cost.get(info.get("key") or name, {})
    except Exception:  # noqa: BLE001  (litellm raises several types for "not mapped")
        info, entry = {}, {}
    prices = {}
    for ours, theirs in _QUOTE_KEYS.items():
        override = spec.get(f"{ours}_usd_per_1m_tokens")
        mapped = info.get(theirs)
        prices[ours] = (float(override) / 1e6 if override is not None else
                        float(mapped) if mapped is not None else None)
    for required in ("input", "output"):
        if prices[required] is None:
            raise HarnessError(f"projection.models: no price known for '{name}'; set its "
                               f"{required}_usd_per_1m_tokens (and its other prices) in the projection config")
    overridden = any(spec.get(f"{k}_usd_per_1m_tokens") is not None for k in _QUOTE_KEYS)
    source = spec.get("source") or ("config override" if overridden else
                                    f"litellm {_litellm_version()} offline price map")
    return Quote(model=name, provider=str(spec.get("provider") or info.get("litellm_provider") or "unknown"),
                 **prices, retires_on=spec.get("retires_on") or entry.get("deprecation_date"),
                 retirement_source=spec.get("retirement_source") or entry.get("deprecation_source"), source=source)


def tokenizer_name(model: str) -> str:
    """Which tokenizer litellm counts `model`'s prompts with, and whether it is the model's own."""
    # litellm has no public API for this; these helpers are internal, so any change degrades to a plain note.
    try:
        from litellm.litellm_core_utils import token_counter as counter
        from litellm.utils import huggingface_tokenizer_kind

        if counter.is_openai_model(model):
            return f"tiktoken {counter.openai_tokenizer_encoding_name(model)} (the model's own)"
        kind = huggingface_tokenizer_kind(model)
        if kind:
            return f"litellm's {kind} tokenizer (approximate)"
        return "tiktoken cl100k_base (approximate: none known)"
    except (ImportError, AttributeError):
        return "litellm token_counter default"


def _extra(value) -> dict:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        return json.loads(value)
    return {}


def _litellm_version() -> str:
    from importlib.metadata import version

    return version("litellm")
