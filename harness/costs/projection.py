"""Cost projection: what each prompted strategy's recorded prompts would cost per 1,000 items on API models,
without calling them. Prompt tokens are counted with each model's tokenizer where litellm knows it; completion
tokens are the ones measured locally; prices come from litellm's offline map or the config's overrides.

Computed at the end of a run from the run directory alone (each prompted strategy's shared system prompt, named
by its fit record's prompt artefact, and each record's user prompt); the runner stores the rows in the manifest
and `projection.csv`. It assumes no provider-side prompt-caching discount (an upper bound)."""
from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.files import write_csv

COLUMNS = ["strategy", "api_model", "n", "prompt_tokens_mean", "completion_tokens_mean", "input_usd_per_1m_tokens",
           "output_usd_per_1m_tokens", "projected_cost_per_1k_usd", "measured_model", "measured_cost_per_1k_usd",
           "tokenizer", "price_source"]


def project(rundir, config: Mapping | None) -> list[dict]:
    """The run's prompted strategies priced on `config.models`, written to projection.csv; the rows go to the
    manifest, so `harness report` shows them without importing litellm or recounting. Empty when there is
    nothing to project (no prompted strategy or no API model listed)."""
    models = list((config or {}).get("models") or [])
    prompted = {name: fit for name, fit in rundir.read_manifest().strategies.items() if fit.prompt is not None}
    if not models or not prompted:
        return []
    records = rundir.load_records()
    rows = []
    for name, fit in prompted.items():
        system = (rundir.path / fit.prompt.system_prompt_file).read_text(encoding="utf-8")
        group = records[records["strategy"] == name]
        users = [_extra(extra).get("user_prompt") for extra in group["extra"]]
        measured = {"measured_model": fit.model,
                    "measured_cost_per_1k_usd": 1000.0 * float(group["cost_usd"].astype(float).mean())}
        for spec in models:
            rows.append({"strategy": name, **_project(dict(spec), system, users, group), **measured})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    write_csv(frame, rundir.path / "projection.csv")
    return json.loads(frame.to_json(orient="records"))


def _project(spec: dict, system: str, users: list[str | None], group: pd.DataFrame) -> dict[str, Any]:
    import litellm

    model = spec.get("name")
    if not model:
        raise HarnessError("projection.models: every entry needs a 'name' (a litellm model name, e.g. gpt-4o-mini)")
    counts = [litellm.token_counter(model=model, messages=[{"role": "system", "content": system},
                                                           {"role": "user", "content": user}])
              for user in users if user is not None]
    prompt_mean = float(np.mean(counts)) if counts else float("nan")
    completion_mean = float(group["completion_tokens"].astype(float).mean())
    input_price, output_price, source = _prices(spec)
    cost = 1000.0 * (prompt_mean * input_price + completion_mean * output_price) / 1e6
    return {"api_model": model, "n": len(counts), "prompt_tokens_mean": prompt_mean,
            "completion_tokens_mean": completion_mean, "input_usd_per_1m_tokens": input_price,
            "output_usd_per_1m_tokens": output_price, "projected_cost_per_1k_usd": cost,
            "tokenizer": tokenizer_name(model), "price_source": source}


def _prices(spec: dict) -> tuple[float, float, str]:
    """USD per million input and output tokens: the config's override, else litellm's offline map, else NaN."""
    import litellm

    litellm.suppress_debug_info = True  # an unmapped name would print its help banner
    try:  # get_model_info resolves provider prefixes (anthropic/claude-haiku-4-5), as the LLM client does
        listed = litellm.get_model_info(model=spec["name"])
    except Exception:  # noqa: BLE001  (litellm raises several types for "not mapped")
        listed = {}
    prices = []
    for kind in ("input", "output"):
        override = spec.get(f"{kind}_usd_per_1m_tokens")
        mapped = listed.get(f"{kind}_cost_per_token")
        # rounded: per-token prices x 1e6 carry float noise (0.09999999999999999)
        prices.append(float(override) if override is not None else
                      round(float(mapped) * 1e6, 6) if mapped is not None else float("nan"))
    overridden = any(spec.get(f"{kind}_usd_per_1m_tokens") is not None for kind in ("input", "output"))
    source = spec.get("source") or ("config override" if overridden else
                                    f"litellm {_litellm_version()} offline price map" if listed else
                                    "no price known: set input_usd_per_1m_tokens and output_usd_per_1m_tokens")
    return prices[0], prices[1], source


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
