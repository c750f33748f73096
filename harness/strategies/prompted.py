"""Prompted strategies: zero-shot, few-shot and RAG. One code path calls the model and parses its answers; the
three differ only in what they put in the prompt.

Every prompt is two messages rendered from Jinja2 templates in the strategy's config: a system message that is
the same for every item (instructions, the label list, fixed exemplars), then a user message for the item.
The shared part comes first so a server with prefix caching (llama.cpp, most API providers) reuses it."""
from __future__ import annotations

import sys
import time
from typing import Any, Iterator, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.retrieval import nearest
from harness.strategies.base import API, PROMPTED, SELF_HOSTED, Prediction, PromptArtefact, Strategy
from harness.strategies.templates import compile_template, render, sha256_text, system_prompt

SELECTIONS = ("random", "nearest")


class PromptedStrategy(Strategy):
    """fit: connect to the model, choose what the prompt shows (subclasses), render the shared system message.
    predict: one chat request per item through the run's shared client; the answer becomes a label by
    `harness.llm.parsing`. Subclasses override `_prepare` (fit-time context) and `_item_contexts`."""

    family = PROMPTED
    prompts = True

    def __init__(self, *, name: str, model: dict, system_template: str, user_template: str,
                 output_mode: str | None = None, closest_cutoff: float = 0.8) -> None:
        super().__init__(name=name)
        self.model = model
        self.system_template = system_template
        self.user_template = user_template
        self.output_mode = output_mode
        self.closest_cutoff = closest_cutoff

    # ---------------------------------------------------------------------------------------------- fit
    def fit(self, train, services) -> "PromptedStrategy":
        from harness.llm.parsing import LabelParser, request_extra

        compile_template(self.system_template, "system_template")  # a syntax error surfaces before any server starts
        self.user_ = compile_template(self.user_template, "user_template")
        self.task_ = train.task
        self.hardware_ = services.hardware
        self.endpoint_ = services.llm(self.model)
        self.model_name = self.endpoint_.name
        self.billing = SELF_HOSTED if self.endpoint_.info.get("price_mode") == "per_second" else API
        self.latency_basis = f"per-item (concurrency {self.endpoint_.max_concurrency})"
        self.output_mode_ = self.output_mode or self.endpoint_.output_mode
        self.request_extra_ = request_extra(self.output_mode_, train.labels)
        self.parser_ = LabelParser(train.labels, cutoff=self.closest_cutoff)
        t0 = time.perf_counter()
        shared = self._prepare(train, services)
        # Strategies that embed the training split report the embeddings' measured time (honest even when the
        # run's embedder cache served them, as for the embed_* strategies); the rest of their fit is negligible.
        # Connecting to the model (starting a local server) is serving, not fitting.
        self.fit_seconds_ = getattr(self, "index_seconds_", time.perf_counter() - t0)
        self.system_prompt_ = system_prompt(self.system_template, train, **shared)
        self.system_prompt_file_ = services.artifacts(self.name) / "system_prompt.txt"
        self.system_prompt_file_.write_text(self.system_prompt_, encoding="utf-8")
        self.run_dir_ = services.run_dir
        probe = train.train[:1]  # a template error surfaces now, not as the first of many failed items
        self.messages(probe[0], self._item_contexts(probe)[0][0])
        return self

    def _prepare(self, train, services) -> dict[str, Any]:
        """What the system template sees besides the dataset's `task`, `labels` and `descriptions` (e.g. fixed
        exemplars)."""
        return {"examples": []}

    # ------------------------------------------------------------------------------------------ predict
    def _item_contexts(self, items: Sequence) -> tuple[list[dict], np.ndarray]:
        """Per item: what the user template sees besides `text`, and the seconds spent finding it (retrieval)."""
        return [{"examples": []} for _ in items], np.zeros(len(items))

    def messages(self, item, context: dict) -> list[dict[str, str]]:
        user = render(self.user_, "user_template", text=item.text, task=self.task_, **context)
        return [{"role": "system", "content": self.system_prompt_}, {"role": "user", "content": user}]

    def predict(self, items: Sequence) -> Iterator[Prediction]:
        from harness.llm.base import ChatRequest

        contexts, retrieval_seconds = self._item_contexts(items)
        by_key = {ex.id: (ex, seconds) for ex, seconds in zip(items, retrieval_seconds)}
        requests = (ChatRequest(key=ex.id, messages=self.messages(ex, ctx), extra=self.request_extra_)
                    for ex, ctx in zip(items, contexts))
        n_cached = 0
        for request, completion in self.endpoint_.client.run(requests):
            if completion.error:
                self.endpoint_.check_alive()  # a dead local server fails the run, naming its log
            n_cached += completion.cached
            item, seconds = by_key[request.key]
            yield self._prediction(item, request, completion, seconds)
        if n_cached:
            from tqdm.auto import tqdm

            # tqdm.write keeps the runner's progress bar intact
            tqdm.write(f"{self.name}: {n_cached} of {len(items)} answers came from the response cache (no model "
                       "call, nothing paid for them)", file=sys.stderr)

    def _prediction(self, item, request, completion, retrieval_s: float) -> Prediction:
        label, step = (None, "error") if completion.error else self.parser_.parse(completion.text)
        # Retrieval runs on the user's hardware whatever the model: its measured time is part of the item's
        # latency and cost.
        retrieval_usd = self.hardware_.cost_usd(retrieval_s)
        return Prediction(
            item_id=item.id, gold=item.label, pred=label, raw=completion.text,
            latency_ms=completion.latency_ms + 1000.0 * retrieval_s,
            prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
            cost_usd=completion.cost_usd + retrieval_usd, spent_usd=completion.spent_usd + retrieval_usd,
            cached=completion.cached, error=completion.error,
            extra={"parse": step, "attempts": completion.attempts, "retrieval_ms": 1000.0 * retrieval_s,
                   "user_prompt": request.messages[-1]["content"]})

    def prompt_artefact(self) -> PromptArtefact:
        return PromptArtefact(
            system_prompt_file=str(self.system_prompt_file_.relative_to(self.run_dir_)),
            system_prompt_sha256=sha256_text(self.system_prompt_),
            templates_sha256={"system": sha256_text(self.system_template), "user": sha256_text(self.user_template)},
            output_mode=self.output_mode_, measured_at_concurrency=self.endpoint_.max_concurrency)

    def describe(self) -> dict:
        return {"model_info": self.endpoint_.info}


class ZeroShot(PromptedStrategy):
    """The label list (and descriptions, when the taxonomy has them) and the item: no examples."""


class _TrainIndex:
    """The training split embedded with the run's shared embedder, for nearest-neighbour lookups."""

    def __init__(self, train, embedder) -> None:
        self.items = list(train.train)
        labels = np.array([ex.label for ex in self.items])
        self.members = [np.flatnonzero(labels == label) for label in np.unique(labels)]  # indices per label
        self.embedder = embedder
        self.vectors, seconds = embedder.encode([ex.text for ex in self.items], desc="embedding training items")
        self.seconds = float(seconds.sum())  # measured even when served from the embedder's run cache

    def embed(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors of the queries and the measured embedding seconds of each."""
        return self.embedder.encode(list(texts), desc="embedding queries")


def _example(ex) -> dict:
    return {"text": ex.text, "label": ex.label}


class FewShot(PromptedStrategy):
    """Labelled training examples in the prompt. `selection: random` draws them once (stratified, seeded) into
    the shared system message; `selection: nearest` picks each item's most similar training examples (by the
    run's embedder) into its user message. Exactly one of `k_per_class` and `k_total` is set."""

    def __init__(self, *, selection: str = "random", k_per_class: int | None = None, k_total: int | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.selection = selection
        self.k_per_class = k_per_class
        self.k_total = k_total

    def _prepare(self, train, services) -> dict[str, Any]:
        if self.selection not in SELECTIONS:
            raise HarnessError(f"strategy {self.name}: no selection '{self.selection}'; known: "
                               f"{', '.join(SELECTIONS)}")
        if (self.k_per_class is None) == (self.k_total is None):
            raise HarnessError(f"strategy {self.name}: set exactly one of k_per_class and k_total")
        if self.selection == "nearest":
            self.index_ = _TrainIndex(train, services.embedder)
            self.index_seconds_ = self.index_.seconds
            return {"examples": []}
        rng = np.random.default_rng(services.seed)
        chosen = self._random(train, rng)
        return {"examples": [_example(chosen[i]) for i in rng.permutation(len(chosen))]}

    def _random(self, train, rng) -> list:
        if self.k_total is not None:
            from harness.data import stratified_sample

            return stratified_sample(train.train, self.k_total, int(rng.integers(2**31)))
        chosen = []
        for label in train.labels:
            pool = [ex for ex in train.train if ex.label == label]
            chosen += [pool[i] for i in rng.choice(len(pool), size=min(self.k_per_class, len(pool)), replace=False)]
        return chosen

    def _item_contexts(self, items):
        if self.selection != "nearest":
            return super()._item_contexts(items)
        queries, seconds = self.index_.embed([ex.text for ex in items])
        return [{"examples": [_example(self.index_.items[i]) for i in self._nearest(self.index_.vectors @ query)]}
                for query in queries], seconds

    def _nearest(self, sims: np.ndarray) -> list[int]:
        """Indices of the chosen neighbours, least similar first so the closest sits next to the question."""
        if self.k_total is not None:
            top = np.argsort(-sims, kind="stable")[:self.k_total]
        else:
            top = np.concatenate([members[np.argsort(-sims[members], kind="stable")[:self.k_per_class]]
                                  for members in self.index_.members])
        return sorted(top.tolist(), key=lambda i: sims[i])

    def describe(self) -> dict:
        return {**super().describe(), "selection": self.selection, "k_per_class": self.k_per_class,
                "k_total": self.k_total}


class Rag(PromptedStrategy):
    """Retrieval-augmented: each item's `k_examples` most similar labelled training items (`examples`) and, when
    the dataset's taxonomy has descriptions, the `k_labels` labels whose descriptions are closest to it
    (`candidates`) go into its user message."""

    def __init__(self, *, k_examples: int = 5, k_labels: int = 5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.k_examples = k_examples
        self.k_labels = k_labels

    def _prepare(self, train, services) -> dict[str, Any]:
        self.index_ = _TrainIndex(train, services.embedder)
        # Label names alone retrieve poorly (BANKING77's 'country_support' item drew 'get_physical_card' and
        # 'visa_or_mastercard'), and misleading candidates cost tokens: candidates need descriptions.
        self.candidates_ = [(label, text) for label, text in train.descriptions.items() if text]
        texts = [f"{label.replace('_', ' ')}: {text}" for label, text in self.candidates_]
        self.label_vectors_, label_seconds = services.embedder.encode(texts, desc="embedding label descriptions")
        self.index_seconds_ = self.index_.seconds + float(label_seconds.sum())
        return {"examples": []}

    def _item_contexts(self, items):
        queries, seconds = self.index_.embed([ex.text for ex in items])
        examples, _ = nearest(queries, self.index_.vectors, self.k_examples)
        candidates = (nearest(queries, self.label_vectors_, self.k_labels)[0] if self.k_labels and self.candidates_
                      else [[] for _ in items])
        return [{"examples": [_example(self.index_.items[i]) for i in row[::-1]],  # closest last, by the question
                 "candidates": [dict(zip(("label", "description"), self.candidates_[i])) for i in label_row]}
                for row, label_row in zip(examples, candidates)], seconds

    def describe(self) -> dict:
        return {**super().describe(), "k_examples": self.k_examples, "k_labels": self.k_labels}
