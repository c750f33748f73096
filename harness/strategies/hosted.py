"""hosted_finetune: a model fine-tuned by an API provider (OpenAI's `ft:` models) as a strategy.

Training happens at the provider, once: its cost is the training file's tokens (the training split in the chat
fine-tuning JSONL format: system prompt, item text, label), counted with the model's tokenizer by
`litellm.token_counter`, x epochs x the training price per million tokens from conf/training_prices/default.yaml.
Inference is the prompted strategies' code path (one chat request per item through the LLM client) with the
fine-tuned model's prices. `harness hosted-finetune --dry-run` writes the file and prints the estimate;
`--launch` uploads it and starts the job through litellm's fine-tuning API, and needs the API key.

Providers wind fine-tuning down: each entry of the price table says when new jobs close (`new_jobs_close`) and
when the fine-tuned model retires (`retires`). From the first of those days on, the base model is not offered:
the dry run refuses it, and a run's fit record marks the strategy as no option to adopt."""
from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

from harness.data import per_class_sample
from harness.errors import HarnessError, choices
from harness.strategies.base import TRAINED
from harness.strategies.prompted import PromptedStrategy
# The training file's system prompt is rendered exactly as the one sent at inference.
from harness.strategies.templates import system_prompt


@dataclass(frozen=True)
class TrainingEstimate:
    """What one fine-tuning job costs: tokens of the training file x epochs x the price per million tokens."""

    base_model: str
    n_examples: int
    tokens_per_epoch: int
    epochs: int
    training_usd_per_1m_tokens: float
    source: str

    @property
    def cost_usd(self) -> float:
        return self.tokens_per_epoch * self.epochs * self.training_usd_per_1m_tokens / 1e6


def training_rows(examples: Sequence, system_prompt: str) -> list[dict]:
    """The chat fine-tuning format: one conversation per training item, the label as the assistant's answer."""
    return [{"messages": [{"role": "system", "content": system_prompt}, {"role": "user", "content": ex.text},
                          {"role": "assistant", "content": ex.label}]} for ex in examples]


def count_tokens(rows: Sequence[dict], model: str) -> int:
    """Tokens of every conversation, as the model's tokenizer counts them (chat formatting overhead included)."""
    import litellm

    return sum(litellm.token_counter(model=model, messages=row["messages"]) for row in rows)


def write_jsonl(rows: Sequence[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def training_closed(base_model: str, price: Mapping, today: dt.date) -> str | None:
    """Why no new fine-tuning job on `base_model` can start on `today` (one clause, with its source), or None."""
    for key, what, source in (("new_jobs_close", "fine-tuning it closed to new jobs", "availability_source"),
                              ("retires", "its fine-tuned models retired", "retirement_source")):
        day = price.get(key)
        if day and dt.date.fromisoformat(str(day)) <= today:
            return f"{what} on {day} ({price.get(source)})"
    return None


def offer_lines(prices: Mapping[str, Mapping], rows: Sequence[dict], epochs: int, today: dt.date) -> list[str]:
    """Every base model of the price table, provider by provider: its prices with their source, and either what
    training `rows` for `epochs` would cost there (tokens counted with that model's tokenizer) or why it is closed."""
    lines = [f"hosted fine-tuning, provider by provider (conf/training_prices/; availability on {today}):"]
    for model, price in sorted(prices.items(), key=lambda item: (str(item[1].get("provider")), item[0])):
        head = (f"  {price.get('provider')} {model}: training ${price.get('training_usd_per_1m_tokens'):g}, inference "
                f"${price.get('input_usd_per_1m_tokens'):g} in / ${price.get('output_usd_per_1m_tokens'):g} out per 1M "
                f"tokens ({price.get('source')}, as of {price.get('as_of')})")
        closed = training_closed(model, price, today)
        if closed:
            lines.append(f"{head}; not offered: {closed}")
            continue
        e = estimate(model, price, rows, epochs)
        lines.append(f"{head}; this file: {e.tokens_per_epoch:,} tokens x {epochs} epochs = ${e.cost_usd:,.2f}; "
                     f"new jobs close on {price.get('new_jobs_close') or 'no announced date'}, the fine-tuned model "
                     f"retires on {price.get('retires') or 'no announced date'}")
    return lines


def estimate(base_model: str, price: Mapping, rows: Sequence[dict], epochs: int) -> TrainingEstimate:
    return TrainingEstimate(base_model, len(rows), count_tokens(rows, base_model), int(epochs),
                            float(price["training_usd_per_1m_tokens"]), f"{price.get('source')}, as of {price.get('as_of')}")


def estimate_lines(estimate: TrainingEstimate, jsonl: Path) -> list[str]:
    """What `harness hosted-finetune` prints."""
    e = estimate
    return [f"training file: {jsonl} ({e.n_examples:,} conversations, {jsonl.stat().st_size:,} bytes)",
            f"tokens per epoch: {e.tokens_per_epoch:,} (litellm.token_counter, {e.base_model})",
            f"training cost: {e.tokens_per_epoch:,} tokens x {e.epochs} epochs x ${e.training_usd_per_1m_tokens:g} "
            f"per 1M tokens = ${e.cost_usd:,.2f}",
            f"price source: {e.source}"]


def read_api_key(api_key_env: str | None, api_key_file: str | None) -> str:
    """The key from `api_key_file` if named, else from the environment variable; never echoed anywhere."""
    if api_key_file:
        path = Path(api_key_file).expanduser()
        if not path.is_file():
            raise HarnessError(f"api_key_file {path} does not exist")
        return path.read_text().strip()
    key = os.environ.get(api_key_env or "")
    if not key:
        raise HarnessError(f"no API key: set the environment variable {api_key_env} (or api_key_file=...); "
                           "nothing was uploaded")
    return key


class HostedFineTune(PromptedStrategy):
    """Its fit prices the training the provider does (it does not train: launching is `harness hosted-finetune
    --launch`); its predict asks the fine-tuned model `fine_tuned_model` about each item."""

    family = TRAINED

    def __init__(self, *, name: str, base_model: str, prices: Mapping[str, Mapping], fine_tuned_model: str | None = None,
                 provider: str = "openai", epochs: int = 3, suffix: str | None = None,
                 api_key_env: str | None = "OPENAI_API_KEY", api_key_file: str | None = None,
                 api_base: str | None = None, train_per_class: int | None = None, seed: int = 0,
                 system_template: str, user_template: str = "{{ text }}", output_mode: str | None = None,
                 closest_cutoff: float = 0.8, client: Mapping | None = None) -> None:
        price = prices.get(base_model) or {}
        if api_key_file:  # a named key file wins over the default variable, for launching and for predicting alike
            api_key_env = None
        model = {"name": fine_tuned_model or f"ft:{base_model}", "provider": "api", "litellm_model": fine_tuned_model,
                 "api_key_env": api_key_env, "api_key_file": api_key_file, "api_base": api_base,
                 "client": dict(client or {}),
                 "price": {"input_usd_per_1m_tokens": price.get("input_usd_per_1m_tokens"),
                           "output_usd_per_1m_tokens": price.get("output_usd_per_1m_tokens"),
                           "source": f"{price.get('source')}, as of {price.get('as_of')}"}}
        super().__init__(name=name, model=model, system_template=system_template, user_template=user_template,
                         output_mode=output_mode, closest_cutoff=closest_cutoff)
        self.base_model, self.prices, self.fine_tuned_model = base_model, prices, fine_tuned_model
        self.provider, self.epochs, self.suffix = provider, epochs, suffix
        self.api_key_env, self.api_key_file, self.api_base = api_key_env, api_key_file, api_base
        self.train_per_class, self.seed = train_per_class, seed

    # ------------------------------------------------------------------------------------ training plan
    def training_file(self, train) -> tuple[list[dict], TrainingEstimate]:
        """The rows the provider would train on, and what training on them costs."""
        price = self._price()
        examples = per_class_sample(train.train, self.train_per_class, self.seed)
        rows = training_rows(examples, system_prompt(self.system_template, train, examples=[]))
        return rows, estimate(self.base_model, price, rows, self.epochs)

    def check_open(self, today: dt.date) -> None:
        """Refuses (one line, with the base models still open) a base model whose fine-tuning has closed."""
        closed = training_closed(self.base_model, self._price(), today)
        if closed:
            still = [m for m, p in sorted(self.prices.items()) if not training_closed(m, p, today)]
            raise HarnessError(f"strategy {self.name}: base_model '{self.base_model}' cannot be fine-tuned: {closed}; "
                               f"still open on {today}: {', '.join(still) or '(none)'}")

    def _price(self) -> Mapping:
        if self.base_model not in self.prices:
            raise choices("training price for base_model", self.base_model, self.prices)
        price = self.prices[self.base_model]
        if price.get("training_usd_per_1m_tokens") is None:
            raise HarnessError(f"training price table (conf/training_prices/): '{self.base_model}' has no "
                               "training_usd_per_1m_tokens")
        return price

    def launch(self, jsonl: Path):
        """Uploads the training file and starts the provider's fine-tuning job; returns the job."""
        import litellm

        key = read_api_key(self.api_key_env, self.api_key_file)
        options = {"custom_llm_provider": self.provider, "api_key": key, "api_base": self.api_base}
        try:
            with open(jsonl, "rb") as fh:
                uploaded = litellm.create_file(file=fh, purpose="fine-tune", **options)
            return litellm.create_fine_tuning_job(model=self.base_model, training_file=uploaded.id,
                                                  hyperparameters={"n_epochs": int(self.epochs)},
                                                  suffix=self.suffix, seed=self.seed, **options)
        except Exception as exc:  # litellm raises many types; the user needs one line, without the key
            message = (str(exc).splitlines() or [""])[0].replace(key, "***")
            raise HarnessError(f"launching the {self.provider} fine-tuning job failed: "
                               f"{type(exc).__name__}: {message}") from None

    # ---------------------------------------------------------------------------------------------- fit
    def fit(self, train, services):
        if not self.fine_tuned_model:
            raise HarnessError(f"strategy {self.name}: config key 'fine_tuned_model' is required to predict (the "
                               "ft: model id); estimate and start the training with `harness hosted-finetune "
                               "--dry-run` / `--launch`")
        _, self.estimate_ = self.training_file(train)
        self.training_closed_ = training_closed(self.base_model, self._price(), dt.date.today())
        super().fit(train, services)
        # The provider's training time is not measured here; its price is the fit cost, and what one retrain costs.
        self.fit_seconds_ = float("nan")
        self.fit_cost_usd_ = self.estimate_.cost_usd
        self.fit_basis_ = "provider training price (tokens x epochs x price); training time not measured"
        self.n_train_ = self.estimate_.n_examples
        return self

    def fit_record(self, **kwargs):
        record = super().fit_record(**kwargs)
        if self.training_closed_:  # a fine-tune that can no longer be started (or retrained) is no option to adopt
            record.stage = replace(record.stage, candidate=False)
        return record

    def describe(self) -> dict:
        e, price = self.estimate_, self._price()
        return {**super().describe(), "base_model": self.base_model,
                "training_tokens_per_epoch": e.tokens_per_epoch, "training_epochs": e.epochs,
                "training_usd_per_1m_tokens": e.training_usd_per_1m_tokens, "training_price_source": e.source,
                "training_closed": self.training_closed_, "new_jobs_close": price.get("new_jobs_close"),
                "retires": price.get("retires")}
