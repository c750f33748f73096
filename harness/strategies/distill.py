"""Distillation: a prompted strategy labels a share of the training texts, and a trained strategy (the student)
learns from those labels (Wang et al. 2021, "Want to reduce labeling cost? GPT-3 can help").

fit draws `share` of the training items (seeded; not stratified, since a team's unlabelled texts carry no label
to stratify by). The labeller is fitted on the other training items (its exemplars and retrieval index are the
human-labelled rest) and sees the drawn texts with their labels removed. The student then fits on the labeller's
answers (an item it gave no label is left out), plus the rest's human labels with `keep_human`. Without a
`labeller` the drawn items keep their human labels: the same student on the same items, for the comparison.
Labelling time and cost are part of the fit; the fit record says how often the labeller agreed with the human
labels. predict is the student's."""
from __future__ import annotations

from dataclasses import replace
from typing import Iterator, Sequence

import numpy as np

from harness.data import Example
from harness.errors import HarnessError
from harness.strategies.base import DISTILL, PROMPTED, TRAINED, Prediction, Strategy
from harness.strategies.nested import build, fitted, predicted



class Distill(Strategy):
    family = DISTILL

    def __init__(self, *, name: str, student: dict, labeller: dict | None = None, share: float = 0.1,
                 keep_human: bool = False) -> None:
        super().__init__(name=name)
        self.student = student
        self.labeller = labeller
        self.share = share
        self.keep_human = keep_human

    def fit(self, train, services) -> "Distill":
        if isinstance(self.share, bool) or not isinstance(self.share, (int, float)) or not 0 < self.share < 1:
            raise HarnessError(f"strategy {self.name}: share must be a number above 0 and below 1 (the labeller "
                               f"learns from the rest), got {self.share!r}")
        self.student_ = build(self.student, self.name, "student", TRAINED)
        order = np.random.default_rng(services.seed).permutation(len(train.train))
        drawn = set(order[:max(1, round(self.share * len(train.train)))].tolist())
        picked = [ex for i, ex in enumerate(train.train) if i in drawn]
        rest = [ex for i, ex in enumerate(train.train) if i not in drawn]
        labels, fit_seconds, fit_usd = self._labels(picked, replace(train, train=rest), services)
        learned = [replace(ex, label=labels[ex.id]) for ex in picked if ex.id in labels]
        if len({ex.label for ex in learned}) < 2 and not self.keep_human:
            raise HarnessError(f"strategy {self.name}: the labeller gave {len(learned)} of the {len(picked)} texts "
                               f"{len({ex.label for ex in learned})} distinct label(s); a student needs two or more "
                               "(check the labeller's model and output_mode, or raise share)")
        student = fitted(self.student_, replace(train, train=learned + (rest if self.keep_human else [])), services)
        self.fit_seconds_ = fit_seconds + student.fit_seconds
        self.fit_cost_usd_ = fit_usd + student.fit_cost_usd
        self.fit_basis_ = "the labeller's fit and its measured labelling calls, then the student's measured fit"
        self.n_train_ = student.n_train
        self.agreement_ = float(np.mean([labels.get(ex.id) == ex.label for ex in picked]))
        self.counts_ = {"drawn": len(picked), "labelled": len(learned), "no_label": len(picked) - len(learned),
                        "human_kept": len(rest) if self.keep_human else 0}
        self.model_name = self.student_.model_name + (f" on {self.labeller_name_} labels" if self.labeller else "")
        self.billing, self.serving = self.student_.billing, self.student_.serving
        self.latency_basis = self.student_.latency_basis
        return self

    def _labels(self, picked: list, rest, services) -> tuple[dict[str, str], float, float]:
        """Item id -> the label the student learns, and the seconds and cost that labelling took."""
        self.labelling_ = {"seconds": 0.0, "cost_usd": 0.0}
        if self.labeller is None:
            self.labeller_name_ = "human"
            return {ex.id: ex.label for ex in picked}, 0.0, 0.0
        labeller = build(self.labeller, self.name, "labeller", PROMPTED)
        try:
            fit = fitted(labeller, rest, services)
            hidden = [Example(ex.id, ex.text, "", ex.group) for ex in picked]  # the labeller never sees them
            answers, seconds = predicted(labeller, hidden)
            self.labeller_name_ = labeller.model_name
            self.labeller_info_ = {"target": self.labeller["_target_"], "model": labeller.model_name,
                                   **labeller.describe()}
        finally:
            labeller.close()
        cost = sum(p.cost_usd for p in answers.values())
        self.labelling_ = {"seconds": round(seconds, 3), "cost_usd": cost, "calls_errored": sum(
            p.error is not None for p in answers.values())}
        return ({item: p.pred for item, p in answers.items() if p.pred is not None}, fit.fit_seconds + seconds,
                fit.fit_cost_usd + cost)

    def predict(self, items: Sequence) -> Iterator[Prediction]:
        return self.student_.predict(items)

    def describe(self) -> dict:
        return {"share": self.share, "keep_human": self.keep_human, "labels_from": self.labeller_name_,
                "agreement_with_human": round(self.agreement_, 6), **self.counts_, "labelling": self.labelling_,
                "labeller": getattr(self, "labeller_info_", None),
                "student": {"target": self.student["_target_"], "model": self.student_.model_name,
                            **self.student_.describe()}}

    def artefacts(self) -> dict[str, str]:
        return self.student_.artefacts()

    def close(self) -> None:
        if getattr(self, "student_", None) is not None:
            self.student_.close()
