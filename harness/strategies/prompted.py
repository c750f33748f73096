"""Prompted strategies: zero-shot, few-shot and RAG. One code path calls the model and parses its answers; the
three differ only in what they put in the prompt.

Every prompt is two messages rendered from Jinja2 templates in the strategy's config: a system message that is
the same for every item (instructions, the label list, fixed exemplars), then a user message for the item.
The shared part comes first so a server with prefix caching (llama.cpp, most API providers) reuses it."""
from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any, Iterator, Sequence

import numpy as np

from harness.calibration import label_probability
from harness.errors import HarnessError
from harness.retrieval import nearest
from harness.strategies.base import API, PROMPTED, SELF_HOSTED, Prediction, PromptArtefact, Strategy
from harness.strategies.templates import compile_template, render, sha256_text, system_prompt

SELECTIONS = ("random", "nearest")
AGGREGATES = ("first", "majority")  # which of an item's samples the prediction takes


class PromptedStrategy(Strategy):
    """fit: connect to the model, choose what the prompt shows (subclasses), render the shared system message.
    predict: one chat request per item through the run's shared client; the answer becomes a label by
    `harness.llm.parsing`. Subclasses override `_prepare` (fit-time context) and `_item_contexts`.

    Repeated sampling: with `samples` above 1 (at a temperature above 0) each item is asked that many times;
    the prediction takes the first sample's answer (`aggregate: first`, what one call would have answered) or
    the most common label (`aggregate: majority`, self-consistency), and its extra keeps every sample's label
    and the share that agrees with the prediction (harness.metrics.sampling summarises them).

    Confidence (harness.calibration): with `logprobs` (alternatives per token, 2 or more) each answer's extra
    carries the probability of its label from the token log-probabilities; else, with repeated samples, the
    agreement of the samples."""

    family = PROMPTED
    prompts = True

    def __init__(self, *, name: str, model: dict, system_template: str, user_template: str,
                 output_mode: str | None = None, closest_cutoff: float = 0.8, samples: int = 1,
                 aggregate: str = "first", logprobs: int | None = None) -> None:
        super().__init__(name=name)
        self.model = model
        self.system_template = system_template
        self.user_template = user_template
        self.output_mode = output_mode
        self.closest_cutoff = closest_cutoff
        self.samples = samples
        self.aggregate = aggregate
        self.logprobs = logprobs

    # ---------------------------------------------------------------------------------------------- fit
    def fit(self, train, services) -> "PromptedStrategy":
        from harness.llm.parsing import LabelParser, request_extra

        compile_template(self.system_template, "system_template")  # a syntax error surfaces before any server starts
        self.user_ = compile_template(self.user_template, "user_template")
        if not isinstance(self.samples, int) or isinstance(self.samples, bool) or self.samples < 1:
            raise HarnessError(f"strategy {self.name}: samples must be a positive integer, got {self.samples!r}")
        if self.aggregate not in AGGREGATES:
            raise HarnessError(f"strategy {self.name}: no aggregate '{self.aggregate}'; known: {', '.join(AGGREGATES)}")
        self.task_ = train.task
        self.hardware_ = services.hardware
        self.endpoint_ = services.llm(self.model)
        if self.samples > 1 and not self.endpoint_.client.temperature > 0:
            raise HarnessError(f"strategy {self.name}: samples={self.samples} needs a temperature above 0 "
                               "(llm.temperature, or the model's client.temperature); at 0 every sample is the "
                               "same answer, paid for again")
        self.model_name = self.endpoint_.name
        self.billing = SELF_HOSTED if self.endpoint_.info.get("price_mode") == "per_second" else API
        self.latency_basis = f"per-item (concurrency {self.endpoint_.max_concurrency})"
        if self.samples > 1:
            self.latency_basis += f", {self.samples} samples per item, their latencies summed"
        self.output_mode_ = self.output_mode or self.endpoint_.output_mode
        self.request_extra_ = {**request_extra(self.output_mode_, train.labels), **self._logprobs_request()}
        self.labels_ = list(train.labels)
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

    def __getstate__(self) -> dict:
        # A compiled Jinja2 template does not pickle; the worker that unpickles a shipped strategy recompiles it.
        return {key: value for key, value in self.__dict__.items() if key != "user_"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "task_" in state:  # fitted
            self.user_ = compile_template(self.user_template, "user_template")

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

        def requests():  # an item's samples one after another, so a server reuses their shared prompt
            for ex, ctx in zip(items, contexts):
                messages = self.messages(ex, ctx)
                for sample in range(self.samples):
                    yield ChatRequest(key=ex.id, messages=messages, extra=self.request_extra_, sample=sample)

        n_cached = 0
        answered: dict[str, list] = {}  # item id -> its (request, completion) pairs so far
        for request, completion in self.endpoint_.client.run(requests()):
            if completion.error:
                self.endpoint_.check_alive()  # a dead local server fails the run, naming its log
            n_cached += completion.cached
            calls = answered.setdefault(request.key, [])
            calls.append((request, completion))
            if len(calls) == self.samples:
                del answered[request.key]
                item, seconds = by_key[request.key]
                yield self._prediction(item, sorted(calls, key=lambda call: call[0].sample), seconds)
        if n_cached:
            from tqdm.auto import tqdm

            # tqdm.write keeps the runner's progress bar intact
            tqdm.write(f"{self.name}: {n_cached} of {len(items)} answers came from the response cache (no model "
                       "call, nothing paid for them)", file=sys.stderr)

    def _prediction(self, item, calls: list, retrieval_s: float) -> Prediction:
        """One item's Prediction from its (request, completion) calls, one per sample in sample order. Every
        sample is paid for and, answered one after another, waited for: tokens, cost and latency add up."""
        parsed = [(None, "error") if completion.error else self.parser_.parse(completion.text)
                  for _, completion in calls]
        labels = [label for label, _ in parsed]
        chosen = self._chosen(labels)
        (request, completion), (label, step) = calls[chosen], parsed[chosen]
        # Retrieval runs on the user's hardware whatever the model: its measured time is part of the item's
        # latency and cost.
        retrieval_usd = self.hardware_.cost_usd(retrieval_s)
        completions = [c for _, c in calls]
        extra = {"parse": step, "attempts": sum(c.attempts for c in completions), "retrieval_ms": 1000.0 * retrieval_s,
                 "user_prompt": request.messages[-1]["content"]}
        if len(calls) > 1:
            extra.update(samples=labels, agreement=sum(one == label for one in labels) / len(labels))
        confidence = (label_probability(completion.logprobs, label, self.labels_) if completion.logprobs
                      else extra.get("agreement"))
        if confidence is not None:
            extra["confidence"] = round(confidence, 6)
        return Prediction(
            item_id=item.id, gold=item.label, pred=label, raw=completion.text,
            latency_ms=sum(c.latency_ms for c in completions) + 1000.0 * retrieval_s,
            prompt_tokens=sum(c.prompt_tokens for c in completions),
            completion_tokens=sum(c.completion_tokens for c in completions),
            cost_usd=sum(c.cost_usd for c in completions) + retrieval_usd,
            spent_usd=sum(c.spent_usd for c in completions) + retrieval_usd,
            cached=all(c.cached for c in completions), error=completion.error, extra=extra)

    def _logprobs_request(self) -> dict:
        """What asks the model for token log-probabilities. llama.cpp computes them only for a server started
        with `--logits_all True`, which the local model's server leaves off (it slows every prompt)."""
        if self.logprobs is None:
            return {}
        if isinstance(self.logprobs, bool) or not isinstance(self.logprobs, int) or self.logprobs < 2:
            raise HarnessError(f"strategy {self.name}: logprobs must be null or a whole number of alternatives per "
                               f"token, 2 or more, got {self.logprobs!r}")
        server = self.endpoint_.server
        if server is not None and not _keeps_logits(server.extra_args):
            raise HarnessError(f"strategy {self.name}: logprobs needs the local server to keep logits; add "
                               "model.server.extra_args=[--logits_all,True] (it slows each item: see docs/beyond.md)")
        return {"logprobs": True, "top_logprobs": self.logprobs}

    def _chosen(self, labels: list) -> int:
        """Which sample the prediction takes: the first, or under a majority vote the earliest sample of the
        most common label (an answer that is no label wins only when no sample has one)."""
        votes = Counter(label for label in labels if label is not None)
        if self.aggregate == "first" or not votes:
            return 0
        most = max(votes.values())
        return next(i for i, label in enumerate(labels) if label is not None and votes[label] == most)

    def prompt_artefact(self) -> PromptArtefact:
        return PromptArtefact(
            system_prompt_file=str(self.system_prompt_file_.relative_to(self.run_dir_)),
            system_prompt_sha256=sha256_text(self.system_prompt_),
            templates_sha256={"system": sha256_text(self.system_template), "user": sha256_text(self.user_template)},
            output_mode=self.output_mode_, measured_at_concurrency=self.endpoint_.max_concurrency)

    def describe(self) -> dict:
        sampling = {"samples": self.samples, "aggregate": self.aggregate} if self.samples > 1 else {}
        logprobs = {"logprobs": self.logprobs} if self.logprobs else {}
        return {"model_info": self.endpoint_.info, **sampling, **logprobs}


def _keeps_logits(server_args) -> bool:
    """Whether the local server's extra flags end with `--logits_all True` (of repeated flags the last wins)."""
    args = [str(arg).lower() for arg in server_args]
    flags = [i for i, arg in enumerate(args) if arg == "--logits_all"]
    return bool(flags) and args[flags[-1] + 1:flags[-1] + 2] == ["true"]


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
