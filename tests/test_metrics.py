"""Metrics against hand-computed values."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness import metrics
from harness.stats import bootstrap_ci, mcnemar_exact, paired_diff_ci


def records(gold, pred, latency=None, cost=None, errors=None, strategy="s"):
    n = len(gold)
    return pd.DataFrame({
        "strategy": strategy, "item_id": [str(i) for i in range(n)], "gold": gold, "pred": pred,
        "correct": [p is not None and p == g for g, p in zip(gold, pred)],
        "latency_ms": latency or [10.0] * n, "prompt_tokens": 0, "completion_tokens": 0,
        "cost_usd": cost or [0.0] * n, "spent_usd": cost or [0.0] * n, "cached": False,
        "error": errors or [None] * n, "raw": "", "extra": None})


def test_accuracy_macro_f1_counts_by_hand():
    gold = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", None, None]
    errors = [None, None, None, None, None, "timeout"]
    row = metrics.score(records(gold, pred, errors=errors))
    assert row["accuracy"] == pytest.approx(3 / 6)
    # a: P=1, R=2/3, F1=0.8; b: P=1/2, R=1/2, F1=0.5; c: P=0, R=0, F1=0 -> macro over gold classes = 1.3/3
    assert row["macro_f1"] == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    assert row["n_errors"] == 1 and row["n_invalid"] == 1


def test_latency_percentiles_and_cost_per_1k():
    latency = list(np.arange(1, 101, dtype=float))  # 1..100 ms
    row = metrics.score(records(["a"] * 100, ["a"] * 100, latency=latency, cost=[0.002] * 100))
    assert row["latency_p50_ms"] == pytest.approx(50.5)
    assert row["latency_p95_ms"] == pytest.approx(95.05)
    assert row["latency_p99_ms"] == pytest.approx(99.01)
    assert row["cost_per_1k_usd"] == pytest.approx(2.0)


def test_per_class_and_confusion():
    frame = records(["a", "a", "b", "b"], ["a", "b", "b", None])
    table = metrics.per_class(frame).set_index("label")
    assert table.loc["a", "recall"] == pytest.approx(0.5) and table.loc["b", "precision"] == pytest.approx(0.5)
    matrix = metrics.confusion(frame, "s")
    assert matrix.loc["a", "b"] == 1 and matrix.loc["b", metrics.INVALID] == 1 and matrix.values.sum() == 4


def test_bootstrap_interval_brackets_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = rng.random(100) < 0.8
    large = rng.random(3000) < 0.8
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 4
    # normal approximation for a proportion: half-width ~ 1.96 * sqrt(p(1-p)/n)
    assert (hi_l - lo_l) / 2 == pytest.approx(1.96 * np.sqrt(0.8 * 0.2 / 3000), rel=0.15)


def test_paired_statistics_by_hand():
    a = np.array([1, 1, 0, 0, 1, 0, 1, 1], bool)
    b = np.array([1, 0, 1, 1, 1, 1, 1, 1], bool)
    # discordant pairs: 1 (a only) vs 3 (b only): exact two-sided binomial p = 2 * (1 + 4) / 16
    assert mcnemar_exact(a, b) == pytest.approx(0.625)
    assert mcnemar_exact(a, a) == 1.0
    diff, low, high = paired_diff_ci(a, b)
    assert diff == pytest.approx(0.25) and low <= diff <= high
