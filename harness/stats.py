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
