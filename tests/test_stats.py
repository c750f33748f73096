"""Statistics against hand-computed values and reference implementations (scikit-learn, scipy)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom, t

from harness import stats
from harness.errors import HarnessError


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
    from statsmodels.stats.multitest import multipletests

    pvalues = np.random.default_rng(2).random(40) ** 3
    pvalues[[3, 7]] = pvalues[5]  # ties
    assert stats.holm(pvalues) == pytest.approx(list(multipletests(pvalues, method="holm")[1]))


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


# ------------------------------------------------------------------------------------------------- groups


def clustered(n_groups: int = 50, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correctness that is strongly correlated within groups: each group has its own accuracy."""
    rng = np.random.default_rng(seed)
    accuracy = rng.beta(2, 0.6, n_groups)
    groups = np.repeat(np.arange(n_groups), size)
    return rng.random(n_groups * size) < accuracy[groups], groups


def test_cluster_bootstrap_of_equal_groups_is_the_bootstrap_of_group_means():
    values, groups = clustered()
    group_means = values.reshape(50, 8).mean(axis=1)
    # the bootstrap variance of a mean of 50 group means is their plug-in variance / 50
    half_width = 1.959964 * group_means.std() / np.sqrt(50)
    low, high = stats.bootstrap_ci(values, groups=groups, n_resamples=4000)
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.08)
    assert low < values.mean() < high
    naive_low, naive_high = stats.bootstrap_ci(values)
    assert high - low > 1.5 * (naive_high - naive_low)


def test_groups_of_one_item_give_the_ordinary_bootstrap():
    rng = np.random.default_rng(1)
    values = rng.random(400) < 0.7
    ours = stats.bootstrap_ci(values, groups=np.arange(400), n_resamples=4000)
    assert ours == (pytest.approx(stats.bootstrap_ci(values, n_resamples=4000)[0], abs=0.006),
                    pytest.approx(stats.bootstrap_ci(values, n_resamples=4000)[1], abs=0.006))


def test_one_group_is_refused_and_the_mean_is_the_only_clustered_statistic():
    with pytest.raises(HarnessError, match="all belong to group 'x'"):
        stats.bootstrap_ci([0, 1, 1], groups=["x", "x", "x"])
    with pytest.raises(ValueError, match="statistic is the mean"):
        stats.bootstrap_ci([0, 1, 1], np.median, groups=["x", "y", "y"])


def test_design_effect_is_statsmodels_cluster_robust_over_ordinary_variance():
    import statsmodels.api as sm

    values, groups = clustered(n_groups=30, size=6, seed=2)
    values = values.astype(float)
    ones = np.ones((len(values), 1))
    robust = sm.OLS(values, ones).fit(cov_type="cluster", cov_kwds={"groups": groups}).bse[0] ** 2
    ordinary = sm.OLS(values, ones).fit().bse[0] ** 2
    assert stats.design_effect(values, groups) == pytest.approx(robust / ordinary)
    assert stats.design_effect(values, np.arange(len(values))) == pytest.approx(1.0)


def test_clustered_mcnemar_with_groups_of_one_is_mcnemars_statistic():
    from statsmodels.stats.contingency_tables import mcnemar

    a = np.array([True] * 10 + [True] * 4 + [False] * 13 + [False] * 3)
    b = np.array([True] * 10 + [False] * 4 + [True] * 13 + [False] * 3)
    chi2 = mcnemar([[10, 4], [13, 3]], exact=False, correction=False).statistic
    expected = 2 * t.sf(np.sqrt(chi2), 29)  # McNemar's statistic, referred to t with 30 groups - 1
    assert stats.paired_pvalue(a, b, groups=np.arange(30)) == pytest.approx(expected)
    assert stats.paired_pvalue(a, b) == stats.mcnemar_exact(a, b)
    # the same flips, but each group of five items flips together: fewer independent pieces of evidence
    assert stats.paired_pvalue(a, b, groups=np.arange(30) // 5) > expected


def test_grouped_macro_f1_counts_agree_with_scikit_learn_on_a_resample():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(5)
    gold = rng.choice(list("abcd"), 120)
    pred = np.where(rng.random(120) < 0.7, gold, rng.choice(list("abcdz"), 120)).astype(object)
    groups = rng.integers(0, 15, 120)
    gold_codes, (pred_codes,), n_codes = stats._label_codes(gold, [pred])
    counts = stats._class_counts(gold_codes, pred_codes, groups, 15, n_codes)
    weights = rng.integers(0, 3, 15)  # how often each group is drawn
    items = np.concatenate([np.flatnonzero(groups == g).repeat(1) for g in range(15) for _ in range(weights[g])])
    expected = f1_score(gold[items], pred[items].astype(str), labels=sorted(set(gold[items])), average="macro",
                        zero_division=0)
    assert stats._macro_f1(*(weights @ c for c in counts)) == pytest.approx(expected)
    low, high = stats.macro_f1_ci(gold, pred, groups=groups)
    assert low < f1_score(gold, pred.astype(str), labels=sorted(set(gold)), average="macro") < high


def test_macro_f1_difference_and_its_paired_interval_against_scikit_learn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(6)
    gold = rng.choice(list("abcdef"), 200)
    pred_a = np.where(rng.random(200) < 0.7, gold, rng.choice(list("abcdef"), 200))
    pred_b = np.where(rng.random(200) < 0.3, pred_a, np.where(rng.random(200) < 0.8, gold, "f"))

    def f1(g, p):
        return f1_score(g, p, labels=sorted(set(g)), average="macro", zero_division=0)

    diff, low, high = stats.macro_f1_diff_ci(gold, pred_a, pred_b, n_resamples=300, seed=3)
    assert diff == pytest.approx(f1(gold, pred_b) - f1(gold, pred_a))
    # the same resamples, materialised and scored by scikit-learn
    weights = np.concatenate(list(stats._resample_counts(200, 300, 3))).astype(int)
    diffs = [f1(gold[idx], pred_b[idx]) - f1(gold[idx], pred_a[idx])
             for idx in (np.repeat(np.arange(200), w) for w in weights)]
    assert (low, high) == (pytest.approx(np.percentile(diffs, 2.5)), pytest.approx(np.percentile(diffs, 97.5)))
    assert stats.macro_f1_diff_ci(gold, pred_a, pred_a) == (0.0, 0.0, 0.0)


def test_pairwise_with_groups_widens_intervals_and_tests():
    values, groups = clustered(n_groups=40, size=10, seed=7)
    rng = np.random.default_rng(8)
    flips = rng.beta(0.5, 3, 40)[groups]  # the other strategy fails whole groups (a payer, a month) at once
    other = np.where(rng.random(400) < flips, ~values, values)
    correct = pd.DataFrame({"x": values, "y": other}, index=[f"item-{i}" for i in range(400)])
    plain = stats.pairwise(correct).iloc[0]
    grouped = stats.pairwise(correct, groups=pd.Series(groups, index=correct.index)[::-1]).iloc[0]  # aligned
    assert grouped["diff_b_minus_a"] == plain["diff_b_minus_a"]
    assert grouped["diff_ci_high"] - grouped["diff_ci_low"] > 1.2 * (plain["diff_ci_high"] - plain["diff_ci_low"])
    assert grouped["p_mcnemar"] == pytest.approx(stats.paired_pvalue(values, other, groups=groups))


def test_decision_family_ignores_how_many_other_things_the_run_measured():
    rng = np.random.default_rng(9)
    best = np.arange(600) < 480
    other = best.copy()
    other[:30], other[590:] = False, True  # 30 items only best gets right, 10 only the other: exact p 0.0022
    candidates = pd.DataFrame({"best": best, "other": other, "third": best & (rng.random(600) < 0.9)})
    sweep = {f"sweep[n={k}]": np.where(rng.random(600) < 0.3, ~best, best) for k in range(20)}
    family = stats.decision_family(candidates, "best")
    assert list(zip(family["a"], family["b"])) == [("best", "other"), ("best", "third")]
    assert list(family["p_holm"]) == pytest.approx(stats.holm(family["p_mcnemar"]))
    all_pairs = stats.pairwise(candidates.assign(**sweep), n_resamples=50)  # 253 pairs
    row = all_pairs[(all_pairs["a"] == "best") & (all_pairs["b"] == "other")].iloc[0]
    assert row["p_mcnemar"] == family.iloc[0]["p_mcnemar"] == pytest.approx(2 * binom.cdf(10, 40, 0.5))
    assert family.iloc[0]["p_holm"] < 0.05 <= row["p_holm"]  # a sweep's 250 extra pairs hide the lead
    with pytest.raises(HarnessError, match="no strategy 'rga' among the candidates; known: best, other, third"):
        stats.decision_family(candidates, "rga")
