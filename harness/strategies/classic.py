"""Trained baselines that need no LLM: TF-IDF features or frozen sentence embeddings, plus any scikit-learn
classifier head (logistic regression, k-nearest-neighbour vote, ...)."""
from __future__ import annotations

import time
from typing import Any, Iterator, Sequence

import numpy as np

from harness.strategies.base import TRAINED, Prediction, Strategy


class BatchedClassifier(Strategy):
    """Shared predict loop for local classifiers that score items in batches. Latency per item is the
    batch's measured time divided by its size (batch-amortised); cost is that time on the hardware profile."""

    family = TRAINED
    latency_basis = "batch-amortised"

    def __init__(self, *, name: str, head: Any, batch_size: int = 256) -> None:
        super().__init__(name=name)
        self.head = head
        self.batch_size = batch_size

    # subclasses provide features for a list of texts and the measured seconds each text's features took;
    # `desc` names fit-time work worth a progress bar
    def _features(self, texts: list[str], desc: str | None = None) -> tuple[Any, np.ndarray]:
        raise NotImplementedError

    def fit(self, train, services):
        from sklearn.base import clone

        self.hardware_ = services.hardware
        t0 = time.perf_counter()
        self._prepare(train, services)
        prepare_seconds = time.perf_counter() - t0
        features, feature_seconds = self._features([ex.text for ex in train.train], desc="embedding training items")
        t1 = time.perf_counter()
        self.head_ = clone(self.head).fit(features, [ex.label for ex in train.train])
        # Features served from the run's cache still count at their measured cost: fit time is what fitting
        # this strategy alone takes.
        self.fit_seconds_ = prepare_seconds + float(feature_seconds.sum()) + time.perf_counter() - t1
        return self

    def _prepare(self, train, services) -> None:
        """Hook for subclasses that need services before featurising."""

    def predict(self, items: Sequence) -> Iterator[Prediction]:
        """Each record's extra carries the head's top class probability as `confidence` when the head has
        `predict_proba` (harness.calibration), and only that: a 77-label vector per item would dwarf the record."""
        for start in range(0, len(items), self.batch_size):
            chunk = items[start:start + self.batch_size]
            features, feature_seconds = self._features([ex.text for ex in chunk])
            t0 = time.perf_counter()
            labels, confidence = self._decide(features)
            # as Python floats: a numpy scalar costs several times as much to pickle (executor=ray ships them)
            per_item = (feature_seconds + (time.perf_counter() - t0) / len(chunk)).tolist()
            for ex, label, top, seconds in zip(chunk, labels, confidence, per_item):
                cost = self.hardware_.cost_usd(seconds)
                yield Prediction(item_id=ex.id, gold=ex.label, pred=str(label), latency_ms=1000.0 * seconds,
                                 cost_usd=cost, spent_usd=cost,
                                 extra={} if top is None else {"confidence": round(float(top), 6)})

    def _decide(self, features) -> tuple[np.ndarray, list]:
        """Labels and, where the head gives class probabilities, each label's probability (else None)."""
        if not hasattr(self.head_, "predict_proba"):
            labels = self.head_.predict(features)
            return labels, [None] * len(labels)
        proba = self.head_.predict_proba(features)
        best = proba.argmax(axis=1)
        return np.asarray(self.head_.classes_)[best], proba[np.arange(len(best)), best].tolist()

    def probabilities(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities of `texts` (columns in the order of `head_.classes_`), for the label audit."""
        features, _ = self._features(list(texts))
        return self.head_.predict_proba(features), np.asarray(self.head_.classes_).astype(str)


class TfidfClassifier(BatchedClassifier):
    """Word and character TF-IDF features (one `TfidfVectorizer` per entry of `vectorizers`) and a head."""

    model_name = "tf-idf"

    def __init__(self, *, name: str, head: Any, vectorizers: Sequence[dict], batch_size: int = 256) -> None:
        super().__init__(name=name, head=head, batch_size=batch_size)
        self.vectorizers = vectorizers

    def _prepare(self, train, services) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_union

        # YAML has lists; scikit-learn's parameter validation wants ngram_range as a tuple.
        self.features_ = make_union(*[
            TfidfVectorizer(**{k: tuple(v) if k == "ngram_range" else v for k, v in spec.items()})
            for spec in self.vectorizers])
        self.features_.fit([ex.text for ex in train.train])

    def _features(self, texts, desc=None):
        t0 = time.perf_counter()
        matrix = self.features_.transform(texts)
        return matrix, np.full(len(texts), (time.perf_counter() - t0) / max(len(texts), 1))


class EmbeddingClassifier(BatchedClassifier):
    """Frozen sentence embeddings (the run's shared embedder) and a scikit-learn head: logistic regression
    for `embed_logreg`, a cosine nearest-neighbour vote for `embed_knn`."""

    def _prepare(self, train, services) -> None:
        self.embedder_ = services.embedder
        self.model_name = self.embedder_.name

    def _features(self, texts, desc=None):
        return self.embedder_.encode(texts, desc=desc)
