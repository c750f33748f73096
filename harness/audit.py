"""The label audit: which gold labels look wrong (Northcutt et al. 2021, "Pervasive label errors in test sets";
confident learning, cleanlab's `find_label_issues`).

A trained strategy with class probabilities (config key `audit.strategy`, e.g. embed_logreg) gives every
training item an out-of-fold probability for each label (`audit.folds`-fold cross-validation, stratified and
seeded), and every held-out item one from a model fitted on the whole training split; cleanlab flags the items
whose given label those probabilities contradict, and suggests the most probable label instead. The run writes
every suspect to label_audit.csv and a summary (estimated error rates, the top suspects, every held-out suspect)
to the manifest, which the report reads."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.files import write_csv
from harness.run.manifest import LabelAudit, SplitAudit

AUDIT_FILE = "label_audit.csv"
AUDIT_KEYS = ("strategy", "folds", "top")
HELDOUT_SUSPECTS_KEPT = 200  # every held-out suspect goes to the manifest, for what it means to the accuracies


def label_audit(node, dataset, services, run_dir: Path) -> LabelAudit:
    """Audits the training split (cross-validated) and the held-out set (a model fitted on the training split)."""
    node = dict(node)
    unknown = sorted(set(node) - set(AUDIT_KEYS))
    if unknown:
        raise HarnessError(f"no audit key '{unknown[0]}'; known: {', '.join(AUDIT_KEYS)}")
    if not node.get("strategy"):
        raise HarnessError("config key 'audit.strategy' is required: a trained strategy config with class "
                           "probabilities, e.g. audit.strategy=${strategies.embed_logreg}")
    folds, top = int(node.get("folds") or 5), int(node.get("top") or 10)
    labels = list(dataset.labels)
    train_probs = _cross_validated(node["strategy"], dataset, services, folds)
    model, heldout_probs = _fitted_probabilities(node["strategy"], dataset, dataset.train, dataset.heldout, services,
                                                 "audit", labels)
    frames = {split: suspects(items, probs, labels)
              for split, items, probs in (("train", dataset.train, train_probs),
                                          ("heldout", dataset.heldout, heldout_probs))}
    table = pd.concat([f.assign(split=split) for split, f in frames.items()], ignore_index=True)
    write_csv(table[["split", *table.columns[:-1]]], run_dir / AUDIT_FILE)
    return LabelAudit(strategy=node["strategy"]["_target_"], model=model, folds=folds, file=AUDIT_FILE,
                      train=_summary(frames["train"], len(dataset.train), top),
                      heldout=_summary(frames["heldout"], len(dataset.heldout), HELDOUT_SUSPECTS_KEPT))


def suspects(items: Sequence, probs: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """The items cleanlab flags, most suspect first (lowest probability of the given label), with the
    suggested label (the most probable one) and both probabilities."""
    from cleanlab.filter import find_label_issues

    given = np.array([labels.index(ex.label) for ex in items])
    ranked = find_label_issues(given, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    suggested = probs[ranked].argmax(axis=1)
    return pd.DataFrame({"rank": np.arange(1, len(ranked) + 1), "item_id": [items[i].id for i in ranked],
                         "text": [items[i].text for i in ranked], "given_label": [labels[g] for g in given[ranked]],
                         "suggested_label": [labels[s] for s in suggested],
                         "given_probability": probs[ranked, given[ranked]].round(4),
                         "suggested_probability": probs[ranked, suggested].round(4)})


def _cross_validated(node, dataset, services, folds: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    gold = [ex.label for ex in dataset.train]
    smallest = min(pd.Series(gold).value_counts())
    if smallest < 2:
        raise HarnessError(f"audit: a training label has {smallest} item; cross-validation needs 2 per label")
    probs = np.zeros((len(dataset.train), len(dataset.labels)))
    split = StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=services.seed)
    for fold, (fit_rows, score_rows) in enumerate(split.split(np.zeros(len(gold)), gold)):
        _, probs[score_rows] = _fitted_probabilities(node, dataset, [dataset.train[i] for i in fit_rows],
                                                     [dataset.train[i] for i in score_rows], services,
                                                     f"audit.fold{fold}", list(dataset.labels))
    return probs


def _fitted_probabilities(node, dataset, fit_items, score_items, services, name, labels):
    """(model name, probabilities of `score_items` over `labels`) from `node` fitted on `fit_items`. A label the
    fit never saw gets probability 0."""
    from harness.config import instantiate

    strategy = instantiate(node, name=name)
    if not hasattr(strategy, "probabilities"):
        raise HarnessError(f"audit.strategy {node['_target_']} gives no class probabilities; use a trained "
                           "strategy such as embed_logreg or tfidf_logreg")
    try:
        strategy.fit(replace(dataset, train=list(fit_items)), services)
        scored, classes = strategy.probabilities([ex.text for ex in score_items])
    finally:
        strategy.close()
    out = np.zeros((len(score_items), len(labels)))
    out[:, [labels.index(c) for c in classes]] = scored
    return strategy.model_name, out


def _summary(frame: pd.DataFrame, n_items: int, keep: int) -> SplitAudit:
    columns = ["item_id", "text", "given_label", "suggested_label", "given_probability"]
    return SplitAudit(n_items=n_items, n_issues=len(frame), error_rate=len(frame) / n_items if n_items else 0.0,
                      suspects=frame[columns].head(keep).to_dict("records"))
