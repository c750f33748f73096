"""Statistics against hand-computed values and reference implementations (scikit-learn, scipy)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness import stats


def test_mcnemar_exact_matches_the_binomial_test_on_discordant_pairs():
    # 1 item only a got right, 6 only b: two-sided exact p = 2 * P(X <= 1 | n=7, p=0.5) = 2 * 8/128
    a = [True] * 10 + [True] + [False] * 6
    b = [True] * 10 + [False] + [True] * 6
    assert stats.mcnemar_exact(a, b) == pytest.approx(0.125)
    from scipy.stats import binomtest

    assert stats.mcnemar_exact(a, b) == pytest.approx(binomtest(1, 7, 0.5).pvalue)
    assert stats.mcnemar_exact(a, a) == 1.0


def test_holm_adjusts_like_the_hand_computation():
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04)
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([]) == []


def test_paired_difference_and_its_interval():
    a = np.array([1, 1, 0, 0, 1, 0, 1, 1, 0, 1] * 10, bool)
    b = np.array([1, 1, 1, 0, 1, 1, 1, 1, 0, 1] * 10, bool)
    diff, low, high = stats.paired_diff_ci(a, b)
    assert diff == pytest.approx(0.2)
    assert 0.0 < low < diff < high < 0.4
    assert stats.paired_diff_ci(a, a)[1:] == (0.0, 0.0)


def test_macro_f1_rows_agree_with_scikit_learn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    gold = rng.integers(0, 6, size=(5, 200))
    pred = np.where(rng.random((5, 200)) < 0.7, gold, rng.integers(0, 7, size=(5, 200)))  # 6 = no class
    ours = stats._macro_f1_rows(gold, pred, 7)
    for row in range(5):
        labels = sorted(set(gold[row]))
        expected = f1_score(gold[row], pred[row], labels=labels, average="macro", zero_division=0)
        assert ours[row] == pytest.approx(expected)


def test_macro_f1_interval_brackets_the_estimate_and_is_reproducible():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    gold = rng.choice(list("abcde"), 300)
    pred = np.where(rng.random(300) < 0.8, gold, rng.choice(list("abcdez"), 300)).astype(object)
    pred[:5] = None  # no answer: wrong for its class, no class of its own
    point = f1_score(gold, [p or "<invalid>" for p in pred], labels=sorted(set(gold)), average="macro",
                     zero_division=0)
    low, high = stats.macro_f1_ci(gold, pred)
    assert low < point < high and high - low < 0.2
    assert stats.macro_f1_ci(gold, pred) == (low, high)
    assert stats.macro_f1_ci(gold, gold) == (1.0, 1.0)


def test_pairwise_compares_every_pair_on_shared_items():
    correct = pd.DataFrame({
        "x": [True] * 10 + [True] + [False] * 6 + [True],
        "y": [True] * 10 + [False] + [True] * 6 + [None],  # y has no record for the last item
        "z": [True] * 18,
    }, dtype=object)
    table = stats.pairwise(correct)
    assert list(zip(table["a"], table["b"])) == [("x", "y"), ("x", "z"), ("y", "z")]
    xy = table.iloc[0]
    assert xy["n_items"] == 17
    assert (xy["only_a_correct"], xy["only_b_correct"]) == (1, 6)
    assert xy["p_mcnemar"] == pytest.approx(0.125)
    assert xy["diff_b_minus_a"] == pytest.approx(5 / 17)
    assert list(table["p_holm"]) == pytest.approx(stats.holm(table["p_mcnemar"]))
