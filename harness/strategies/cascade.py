"""The cascade: a trained first stage answers the items it is sure of, a prompted second stage the rest
(FrugalGPT's LLM cascade, Chen et al. 2023, with a cheap classifier as the first model).

fit carves a validation split from the training items (stratified, seeded; never the held-out set), fits both
stages on the rest, and runs both on the validation items: for every threshold on the first stage's confidence
(its top class probability) that gives the share the first stage answers (coverage), its accuracy on those, the
cascade's accuracy and its cost per 1,000 items. The threshold is chosen by `objective`:
- `target`: the first stage answers only where its own validation accuracy reaches `accuracy` (the answers that
  skip the LLM are that good); the lowest such threshold, so it answers as much as it can.
- `floor`: the cheapest threshold whose cascade accuracy on validation reaches `accuracy`.
When no threshold meets it, `target` defers every item and `floor` takes the most accurate threshold; the fit
record says `met: false`. The second stage is then refitted on every training item (its retrieval index and
exemplars are then those of the pure prompted strategy, whose answers a shared response cache can serve); the
first stage stays as validated, so the threshold applies to the model it was chosen for.

predict: the first stage scores every item; items at or above the threshold keep its answer, the rest go to the
second stage together (a local server reuses their shared prompt). Each record's extra says which `stage`
answered; a deferred item's latency, cost and tokens are both stages' sums as measured."""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from harness.calibration import thinned
from harness.data import stratified_sample
from harness.errors import HarnessError, choices
from harness.strategies.base import API, CASCADE, PROMPTED, SELF_HOSTED, TRAINED, Prediction, Strategy
from harness.strategies.nested import build, fitted, predicted

OBJECTIVES = ("target", "floor")
CURVE_POINTS = 41  # thresholds kept in the fit record's curve (the chosen point always among them)
CURVE_COLUMNS = ["threshold", "coverage", "first_accuracy", "accuracy", "llm_share", "cost_per_1k_usd"]


class Cascade(Strategy):
    family = CASCADE

    def __init__(self, *, name: str, first: dict, second: dict, objective: str = "target", accuracy: float = 0.95,
                 validation_fraction: float = 0.1, validation_max_items: int = 300) -> None:
        super().__init__(name=name)
        self.first = first
        self.second = second
        self.objective = objective
        self.accuracy = accuracy
        self.validation_fraction = validation_fraction
        self.validation_max_items = validation_max_items

    def fit(self, train, services) -> "Cascade":
        self._check()
        self.first_ = build(self.first, self.name, "first", TRAINED)
        self.second_ = build(self.second, self.name, "second", PROMPTED)
        size = min(self.validation_max_items, round(self.validation_fraction * len(train.train)))
        validation = stratified_sample(train.train, max(size, 1), services.seed)
        held = {ex.id for ex in validation}
        rest = replace(train, train=[ex for ex in train.train if ex.id not in held])
        fits = [fitted(self.first_, rest, services)]
        first, first_s = predicted(self.first_, validation)
        confidence = _confidence(first, validation, self.name, self.first["_target_"])
        fits.append(fitted(self.second_, rest, services))  # an index without the validation items: no leak
        second, second_s = predicted(self.second_, validation)
        fits.append(fitted(self.second_, train, services))
        self.curve_ = curve(confidence, *_outcomes(first, second, validation))
        chosen, self.met_ = choose(self.curve_, self.objective, self.accuracy)
        self.threshold_ = float(chosen["threshold"])
        self.chosen_ = _point(chosen)
        self.n_validation_ = len(validation)
        self.fit_seconds_ = sum(f.fit_seconds for f in fits) + first_s + second_s
        self.fit_cost_usd_ = sum(f.fit_cost_usd for f in fits) + sum(p.cost_usd for p in [*first.values(),
                                                                                          *second.values()])
        self.fit_basis_ = (f"the stages' measured fits, and both stages on {len(validation)} validation items "
                           "(the second stage's calls as billed)")
        self.n_train_ = len(train.train)
        self.model_name = f"{self.first_.model_name} -> {self.second_.model_name}"
        self.billing = API if API in (self.first_.billing, self.second_.billing) else SELF_HOSTED
        self.serving = "gpu" if "gpu" in (self.first_.serving, self.second_.serving) else "cpu"
        self.latency_basis = (f"first stage {self.first_.latency_basis}; deferred items add the second stage's "
                              f"{self.second_.latency_basis}")
        return self

    def _check(self) -> None:
        if self.objective not in OBJECTIVES:
            raise choices(f"cascade objective (strategy {self.name})", str(self.objective), OBJECTIVES)
        for key, low, high in (("accuracy", 0.0, 1.0), ("validation_fraction", 0.0, 0.5)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
                raise HarnessError(f"strategy {self.name}: {key} must be a number above {low:g} and at most "
                                   f"{high:g}, got {value!r}")

    def predict(self, items: Sequence) -> Iterator[Prediction]:
        firsts, _ = predicted(self.first_, items)
        deferred = []
        for ex in items:
            first = firsts[ex.id]
            if first.pred is not None and first.extra.get("confidence", -1.0) >= self.threshold_:
                first.extra["stage"] = "first"
                yield first
            else:
                deferred.append(ex)
        for second in self.second_.predict(deferred) if deferred else ():
            yield _combined(firsts[second.item_id], second)

    def describe(self) -> dict:
        return {"first": {"target": self.first["_target_"], "model": self.first_.model_name,
                          **self.first_.describe()},
                "second": {"target": self.second["_target_"], "model": self.second_.model_name,
                           **self.second_.describe()},
                "objective": self.objective, "accuracy": self.accuracy, "validation_items": self.n_validation_,
                "threshold": self.threshold_, "met": self.met_, "chosen": self.chosen_,
                "curve": [_point(r) for _, r in thinned(self.curve_, self.threshold_, CURVE_POINTS).iterrows()]}

    def artefacts(self) -> dict[str, str]:
        return {**self.first_.artefacts(), **self.second_.artefacts()}

    def prompt_artefact(self):
        return self.second_.prompt_artefact()

    def close(self) -> None:
        for part in (getattr(self, "first_", None), getattr(self, "second_", None)):
            if part is not None:
                part.close()


def curve(confidence: np.ndarray, first_correct: np.ndarray, second_correct: np.ndarray, first_usd: np.ndarray,
          second_usd: np.ndarray) -> pd.DataFrame:
    """Per threshold (every distinct first-stage confidence, then infinity: defer everything), what the cascade
    does on the validation items: coverage, the first stage's accuracy on what it answers (NaN when nothing),
    the cascade's accuracy, the share sent to the second stage and the cost per 1,000 items."""
    rows = []
    for threshold in [*np.unique(confidence), math.inf]:
        kept = confidence >= threshold
        rows.append({"threshold": float(threshold), "coverage": float(kept.mean()),
                     "first_accuracy": float(first_correct[kept].mean()) if kept.any() else math.nan,
                     "accuracy": float(np.where(kept, first_correct, second_correct).mean()),
                     "llm_share": float((~kept).mean()),
                     "cost_per_1k_usd": 1000.0 * float((first_usd + np.where(kept, 0.0, second_usd)).mean())})
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def choose(points: pd.DataFrame, objective: str, accuracy: float) -> tuple[pd.Series, bool]:
    """The threshold `objective` picks on the validation curve (module docstring), and whether it met `accuracy`."""
    if objective == "target":
        meeting = points[points["first_accuracy"] >= accuracy - 1e-12]
        if meeting.empty:
            return points.iloc[-1], False  # infinity: the second stage answers everything
        return meeting.loc[meeting["coverage"].idxmax()], True
    meeting = points[points["accuracy"] >= accuracy - 1e-12]
    if meeting.empty:
        return points.loc[points["accuracy"].idxmax()], False
    cheapest = meeting.sort_values(["cost_per_1k_usd", "coverage"], ascending=[True, False], kind="stable")
    return cheapest.iloc[0], True


def _point(row: pd.Series) -> dict:
    return {key: (None if pd.isna(row[key]) else round(float(row[key]), 6) if math.isfinite(row[key])
                  else float(row[key])) for key in CURVE_COLUMNS}


def _confidence(first: dict, validation: list, owner: str, target: str) -> np.ndarray:
    values = [first[ex.id].extra.get("confidence") for ex in validation]
    if any(value is None for value in values):
        raise HarnessError(f"strategy {owner}: its first stage {target} gives no confidence (class "
                           "probabilities); use one whose head has predict_proba (embed_logreg, tfidf_logreg, "
                           "embed_knn, finetune_encoder)")
    return np.array(values, dtype=float)


def _outcomes(first: dict, second: dict, validation: list) -> tuple[np.ndarray, ...]:
    """Correctness and measured cost of each validation item under either stage."""
    def column(preds: dict, attribute: str) -> np.ndarray:
        return np.array([getattr(preds[ex.id], attribute) for ex in validation], dtype=float)
    return column(first, "correct"), column(second, "correct"), column(first, "cost_usd"), column(second, "cost_usd")


def _combined(first: Prediction, second: Prediction) -> Prediction:
    """A deferred item: the second stage's answer, both stages' time, tokens and cost."""
    return replace(second, latency_ms=first.latency_ms + second.latency_ms, cost_usd=first.cost_usd + second.cost_usd,
                   spent_usd=first.spent_usd + second.spent_usd,
                   extra={**second.extra, "stage": "second", "first_label": first.pred,
                          "first_confidence": first.extra.get("confidence")})
