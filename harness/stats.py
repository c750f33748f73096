"""Uncertainty: bootstrap confidence intervals (scipy) for per-item statistics."""
from __future__ import annotations

import numpy as np


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
