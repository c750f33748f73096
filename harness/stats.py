"""Uncertainty: bootstrap confidence intervals (scipy) and paired tests between strategies (statsmodels)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def bootstrap_ci(values, statistic=np.mean, *, confidence: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over per-item `values` (scipy.stats.bootstrap).

    Percentile rather than BCa: BCa is undefined when every item agrees (accuracy 0 or 1), which small
    held-out slices hit.
    """
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    result = bootstrap((values,), statistic, confidence_level=confidence, n_resamples=n_resamples,
                       method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def mcnemar_exact(a_correct, b_correct) -> float:
    """Two-sided exact McNemar p-value for paired outcomes on the same items (statsmodels)."""
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    table = [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
    if table[0][1] + table[1][0] == 0:
        return 1.0
    return float(mcnemar(table, exact=True).pvalue)


def paired_diff_ci(a_correct, b_correct, *, confidence: float = 0.95, n_resamples: int = 2000,
                   seed: int = 0) -> tuple[float, float, float]:
    """Accuracy difference b - a on the same items, with a paired percentile-bootstrap interval:
    (difference, low, high). Items are resampled together, so the interval reflects the pairing."""
    a, b = np.asarray(a_correct, float), np.asarray(b_correct, float)
    diff = b - a
    low, high = bootstrap_ci(diff, confidence=confidence, n_resamples=n_resamples, seed=seed)
    return float(diff.mean()) if len(diff) else float("nan"), low, high


def holm(pvalues) -> list[float]:
    """Holm-adjusted p-values (statsmodels), for many pairwise comparisons at once."""
    from statsmodels.stats.multitest import multipletests

    pvalues = list(pvalues)
    if not pvalues:
        return []
    return [float(p) for p in multipletests(pvalues, method="holm")[1]]


def macro_f1_ci(gold, pred, *, confidence: float = 0.95, n_resamples: int = 2000,
                seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of macro-F1, resampling (gold, pred) pairs together (scipy.stats.bootstrap).

    Macro over the gold classes present in each resample, as `metrics.score` averages over the gold classes of
    the whole set; a `pred` that is no class (None, "<invalid>") counts as wrong. The statistic is vectorised by
    hand because scikit-learn's f1_score, called once per resample, takes seconds per strategy."""
    from scipy.stats import bootstrap

    gold = np.asarray(gold, dtype=object)
    pred = np.asarray(pred, dtype=object)
    if len(gold) == 0:
        return float("nan"), float("nan")
    classes = {label: code for code, label in enumerate(sorted(set(map(str, gold))))}
    no_class = len(classes)
    gold_codes = np.array([classes[str(g)] for g in gold])
    pred_codes = np.array([classes.get(str(p), no_class) if p is not None else no_class for p in pred])
    if np.array_equal(gold_codes, pred_codes):
        return 1.0, 1.0

    def statistic(g, p, axis=-1):
        return _macro_f1_rows(g.reshape(-1, g.shape[-1]), p.reshape(-1, p.shape[-1]), no_class + 1) \
            .reshape(g.shape[:-1])

    result = bootstrap((gold_codes, pred_codes), statistic, paired=True, vectorized=True,
                       confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                       rng=np.random.default_rng(seed), batch=200)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _macro_f1_rows(gold: np.ndarray, pred: np.ndarray, n_codes: int) -> np.ndarray:
    """Macro-F1 of each row of integer-coded (gold, pred); the last code is "no class" and is never averaged."""
    rows = gold.shape[0]
    offsets = (np.arange(rows) * n_codes)[:, None]

    def counts(codes):
        return np.bincount(codes.ravel(), minlength=rows * n_codes).reshape(rows, n_codes)[:, :-1]

    gold_counts, pred_counts = counts(gold + offsets), counts(pred + offsets)
    hits = counts(np.where(gold == pred, gold, n_codes - 1) + offsets)
    present = gold_counts > 0
    # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (gold count + predicted count)
    f1 = np.divide(2.0 * hits, gold_counts + pred_counts, out=np.zeros(hits.shape), where=present)
    return f1.sum(axis=1) / present.sum(axis=1)


def pairwise(correct: pd.DataFrame, *, confidence: float = 0.95, n_resamples: int = 2000,
             seed: int = 0) -> pd.DataFrame:
    """Every pair of strategies compared on the items both answered.

    `correct`: one row per item, one boolean column per strategy (NaN where a strategy has no record).
    One row per pair (a, b), in column order: n_items, accuracy_a, accuracy_b, diff_b_minus_a with its paired
    bootstrap interval, McNemar's exact p-value and the Holm-adjusted p-value across all pairs."""
    import pandas as pd

    rows = []
    names = list(correct.columns)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = correct[[a, b]].dropna()
            a_correct, b_correct = both[a].astype(bool).to_numpy(), both[b].astype(bool).to_numpy()
            diff, low, high = paired_diff_ci(a_correct, b_correct, confidence=confidence,
                                             n_resamples=n_resamples, seed=seed)
            rows.append({"a": a, "b": b, "n_items": len(both),
                         "accuracy_a": float(a_correct.mean()) if len(both) else float("nan"),
                         "accuracy_b": float(b_correct.mean()) if len(both) else float("nan"),
                         "diff_b_minus_a": diff, "diff_ci_low": low, "diff_ci_high": high,
                         "only_a_correct": int(np.sum(a_correct & ~b_correct)),
                         "only_b_correct": int(np.sum(~a_correct & b_correct)),
                         "p_mcnemar": mcnemar_exact(a_correct, b_correct)})
    frame = pd.DataFrame(rows, columns=["a", "b", "n_items", "accuracy_a", "accuracy_b", "diff_b_minus_a",
                                        "diff_ci_low", "diff_ci_high", "only_a_correct", "only_b_correct",
                                        "p_mcnemar"])
    frame["p_holm"] = holm(frame["p_mcnemar"])
    return frame
