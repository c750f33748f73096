"""Metrics computed from the per-item records alone (scikit-learn for the classification metrics)."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Mapping

import numpy as np
import pandas as pd

from harness.stats import bootstrap_ci

if TYPE_CHECKING:
    from harness.strategies.base import FitRecord

INVALID = "<invalid>"  # stands for "no label" in per-class tables and confusion matrices


def summarize(records: pd.DataFrame, fits: Mapping[str, "FitRecord"], *, seed: int = 0,
              groups: pd.Series | None = None) -> pd.DataFrame:
    """One row per strategy: accuracy with a 95% bootstrap interval, macro-F1, latency percentiles,
    throughput, cost per 1,000 items, fit time and cost, error and invalid counts.

    `fits` (the manifest's fit records) carry what records cannot: model name, fit seconds and cost, predict
    wall seconds, the training items. `groups` (item id -> group): intervals resample groups of items."""
    rows = []
    for name, group in records.groupby("strategy", sort=False):
        fit = fits[name]
        g = None if groups is None else groups.reindex(group["item_id"]).to_numpy()
        rows.append({"strategy": name, "model": fit.model, **score(group, seed=seed, groups=g),
                     "fit_seconds": fit.fit_seconds, "fit_cost_usd": fit.fit_cost_usd,
                     "throughput_items_per_s": _throughput(group, fit), "latency_basis": fit.latency_basis,
                     "single_item_latency_p50_ms": _single_item_p50(group), **training_columns(fit)})
    return pd.DataFrame(rows)


def training_columns(fit: "FitRecord") -> dict:
    """What a strategy learned from: training items per class (a learning-curve sweep's n, or few-shot's k per
    class, which belongs on the same axis), the sweep seed, and the number of training items its fit saw."""
    per_class = fit.stage.train_per_class
    return {"train_per_class": per_class if per_class is not None else fit.details.get("k_per_class"),
            "sweep_seed": fit.stage.sweep_seed, "n_train": fit.n_train}


def _single_item_p50(group: pd.DataFrame) -> float:
    """Median of the single-item latencies that batch-amortised strategies measure on a sample of items
    (records' extra `single_item_latency_ms`); NaN for strategies that do not."""
    values = [e["single_item_latency_ms"] for e in _extras(group) if "single_item_latency_ms" in e]
    return _pct(np.asarray(values, dtype=float), 50)


def sampling(group: pd.DataFrame) -> dict | None:
    """How stable one strategy's answers are when each item was sampled several times (records' extra
    `samples`, harness.strategies.prompted); None when it was asked once per item.

    n_samples: samples per item. changed_share: the share of items whose samples did not all give the same
    answer. sample_accuracy: the accuracy of one sample (correctness averaged over every sample), what
    `aggregate: first` estimates; against `accuracy` it shows what a majority vote adds.
    within_item_variance: the mean over items of the variance of one sample's correctness, k/(k-1) p(1-p) for
    p of k samples right (unbiased). sampling_se: the standard error that sampling alone adds to a
    single-sample accuracy, sqrt(within_item_variance / items)."""
    gold = group["gold"].astype(str).to_numpy()
    samples = [(e["samples"], g) for e, g in zip(_extras(group), gold) if "samples" in e]
    if not samples:
        return None
    right = [np.array([label == g for label in labels], dtype=float) for labels, g in samples]
    variance = np.array([r.var(ddof=1) for r in right])
    return {"n_samples": max(len(r) for r in right),
            "changed_share": float(np.mean([len(set(labels)) > 1 for labels, _ in samples])),
            "sample_accuracy": float(np.mean(np.concatenate(right))),
            "within_item_variance": float(variance.mean()),
            "sampling_se": float(np.sqrt(variance.mean() / len(right)))}


def _extras(group: pd.DataFrame) -> list[dict]:
    """One dictionary per record: its extra (JSON text in predictions.parquet), empty where it has none."""
    extras = [json.loads(e) if isinstance(e, str) else e for e in group["extra"]]
    return [e if isinstance(e, dict) else {} for e in extras]


def score(group: pd.DataFrame, *, seed: int = 0, groups=None) -> dict:
    from sklearn.metrics import f1_score

    correct = group["correct"].astype(bool).to_numpy()
    low, high = bootstrap_ci(correct, seed=seed, groups=groups)
    gold = group["gold"].astype(str)
    latency = group["latency_ms"].astype(float).to_numpy()
    errors = group["error"].notna()
    return {
        "n": len(group),
        "accuracy": float(correct.mean()) if len(group) else float("nan"),
        "accuracy_ci_low": low,
        "accuracy_ci_high": high,
        # Macro over the gold classes: an invalid answer costs its class recall, it is not a class of its own.
        "macro_f1": float(f1_score(gold, predictions(group), labels=sorted(gold.unique()), average="macro",
                                   zero_division=0)),
        "latency_p50_ms": _pct(latency, 50),
        "latency_p95_ms": _pct(latency, 95),
        "latency_p99_ms": _pct(latency, 99),
        "cost_per_1k_usd": 1000.0 * float(group["cost_usd"].astype(float).mean()),
        "spent_usd": float(group["spent_usd"].astype(float).sum()),
        "n_cached": int(group["cached"].astype(bool).sum()),
        "n_errors": int(errors.sum()),
        "n_invalid": int((group["pred"].isna() & ~errors).sum()),
    }


def per_class(records: pd.DataFrame) -> pd.DataFrame:
    """Precision, recall, F1 and support per (strategy, gold class)."""
    from sklearn.metrics import precision_recall_fscore_support

    frames = []
    for name, group in records.groupby("strategy", sort=False):
        labels = sorted(group["gold"].astype(str).unique())
        p, r, f, s = precision_recall_fscore_support(group["gold"].astype(str), predictions(group), labels=labels,
                                                     zero_division=0)
        frames.append(pd.DataFrame({"strategy": name, "label": labels, "precision": p, "recall": r, "f1": f,
                                    "support": s}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def confusion(records: pd.DataFrame, strategy: str) -> pd.DataFrame:
    """Confusion matrix (rows gold, columns predicted; INVALID for no label)."""
    from sklearn.metrics import confusion_matrix

    group = records[records["strategy"] == strategy]
    gold, pred = group["gold"].astype(str), predictions(group)
    labels = sorted(set(gold) | set(pred))
    return pd.DataFrame(confusion_matrix(gold, pred, labels=labels), index=labels, columns=labels)


def predictions(group: pd.DataFrame) -> pd.Series:
    """The predicted labels as strings, an invalid answer (no label) as INVALID."""
    return group["pred"].where(group["pred"].notna(), INVALID).astype(str)


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def _throughput(group: pd.DataFrame, fit: "FitRecord") -> float:
    """Items per second of prediction. Per-item strategies (possibly concurrent): items / measured wall time.
    Batch-amortised ones: items / summed measured compute, since the wall time of a run that reused
    embeddings computed for another strategy would flatter them."""
    if fit.latency_basis == "batch-amortised":
        seconds = group["latency_ms"].astype(float).sum() / 1000.0
    else:
        seconds = fit.predict_seconds
    return float(len(group) / seconds) if seconds else float("nan")
