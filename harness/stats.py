"""Uncertainty: bootstrap intervals (scipy), paired tests between strategies (statsmodels' exact McNemar) and the
tables of pairs the report and the gate read. What a comparison can claim beyond "different" (its power, the
items a held-out set needs, non-inferiority) is in harness.power.

Groups. Items that share a source (a payer, a month, a conversation) are not independent, and intervals that
treat them as independent are too narrow (Miller 2024, "Adding Error Bars to Evals"). Every function that takes
`groups` (one label per item) then resamples whole groups, the cluster bootstrap (Davison & Hinkley 1997,
sec. 3.8), and divides the paired tests' counts by the design effect of the paired difference (Rao & Scott 1992;
for McNemar's test, Eliasziw & Donner 1991), referring them to Student's t with groups - 1 degrees of freedom.
Without groups every result is what it was before groups existed. bench/stats_power.py measures both.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from harness.errors import HarnessError

if TYPE_CHECKING:
    import pandas as pd

_BATCH = 250  # resamples drawn at once: bounds the (batch x units) count matrix
# and resampled items held at once: 8 MB of float64, so a statistic's temporaries over 100,000 items (a
# resampled macro-F1 makes about six arrays of this size) stay well under the records' own size
_CELLS = 1_000_000


def batch_rows(n_items: int) -> int:
    """Resamples to draw at once over `n_items`: 250 of 300 items, 10 of 100,000 (scipy's bootstrap would
    otherwise hold every resample at once: 1.6 GB at 100,000 items)."""
    return max(1, min(_BATCH, _CELLS // max(n_items, 1)))


def bootstrap_ci(values, statistic=np.mean, *, groups=None, confidence: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over per-item `values` (scipy.stats.bootstrap); with `groups`,
    of their mean over resampled groups (the only statistic a cluster bootstrap here needs).

    Percentile rather than BCa: BCa is undefined when every item agrees (accuracy 0 or 1), which small
    held-out slices hit.
    """
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    if groups is not None:
        if statistic is not np.mean:
            raise ValueError("bootstrap_ci: with groups the statistic is the mean")
        codes, n_groups = _group_codes(groups, len(values))
        sums = np.bincount(codes, weights=values, minlength=n_groups)
        sizes = np.bincount(codes, minlength=n_groups).astype(float)
        means = [(w @ sums) / (w @ sizes) for w in _resample_counts(n_groups, n_resamples, seed)]
        return _percentile(np.concatenate(means), confidence)
    result = bootstrap((values,), statistic, confidence_level=confidence, n_resamples=n_resamples,
                       method="percentile", vectorized=True, rng=np.random.default_rng(seed),
                       batch=batch_rows(len(values)))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def mcnemar_exact(a_correct, b_correct) -> float:
    """Two-sided exact McNemar p-value for paired outcomes on the same items (statsmodels)."""
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    table = [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
    if table[0][1] + table[1][0] == 0:
        return 1.0
    return float(mcnemar(table, exact=True).pvalue)


def paired_pvalue(a_correct, b_correct, *, groups=None) -> float:
    """Two-sided p-value of "a and b are equally accurate" on the same items: McNemar's exact test, or with
    `groups` McNemar's statistic over the design effect, (only b - only a) / sqrt((only a + only b) x design
    effect), referred to Student's t with groups - 1 degrees of freedom, as cluster-robust tests with few
    groups should be (Cameron & Miller 2015; measured by bench/stats_power.py)."""
    from scipy.stats import t

    if groups is None:
        return mcnemar_exact(a_correct, b_correct)
    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    if only_a + only_b == 0:
        return 1.0
    z = (only_b - only_a) / math.sqrt((only_a + only_b) * design_effect(b.astype(float) - a, groups))
    return float(2 * t.sf(abs(z), group_count(groups) - 1))


def paired_diff_ci(a_correct, b_correct, *, groups=None, confidence: float = 0.95, n_resamples: int = 2000,
                   seed: int = 0) -> tuple[float, float, float]:
    """Accuracy difference b - a on the same items, with a paired percentile-bootstrap interval:
    (difference, low, high). Items (or groups) are resampled together, so the interval reflects the pairing."""
    a, b = np.asarray(a_correct, float), np.asarray(b_correct, float)
    diff = b - a
    low, high = bootstrap_ci(diff, groups=groups, confidence=confidence, n_resamples=n_resamples, seed=seed)
    return float(diff.mean()) if len(diff) else float("nan"), low, high


def design_effect(values, groups) -> float:
    """How many times the variance of the mean of per-item `values` (correctness, or b - a for a pair) grows
    when items of a group are correlated: the cluster-robust variance (with its G/(G-1) correction) over the
    items-independent one (with n/(n-1)), at least 1. 1 when every group holds one item; n / design effect is
    the effective number of independent items. The floor keeps a clustered test never bolder than the plain
    one: a design effect below 1 (negative correlation within groups) is mostly noise in the estimate."""
    values = np.asarray(values, dtype=float)
    codes, n_groups = _group_codes(groups, len(values))
    centred = values - values.mean()
    item_ss = float(np.sum(centred**2))
    if item_ss == 0:
        return 1.0
    group_ss = float(np.sum(np.bincount(codes, weights=centred, minlength=n_groups) ** 2))
    n = len(values)
    return max(1.0, (group_ss * n_groups / (n_groups - 1)) / (item_ss * n / (n - 1)))


def group_count(groups) -> int:
    """The number of distinct groups."""
    return len(np.unique(np.asarray(groups, dtype=object).astype(str)))


def holm(pvalues) -> list[float]:
    """Holm-adjusted p-values, for many comparisons at once: the i-th smallest times (m - i + 1), made
    monotone, at most 1. Written out (statsmodels' multipletests gives the same numbers) because statsmodels
    runs a full garbage collection in every Holm call, 35 ms, which simulations calling it per draw cannot pay."""
    pvalues = np.asarray(list(pvalues), dtype=float)
    order = np.argsort(pvalues, kind="stable")
    adjusted = np.empty_like(pvalues)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(pvalues[order] * np.arange(len(pvalues), 0, -1)))
    return [float(p) for p in adjusted]


# ------------------------------------------------------------------------------------------------- macro-F1


def macro_f1_ci(gold, pred, *, groups=None, confidence: float = 0.95, n_resamples: int = 2000,
                seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of macro-F1, resampling (gold, pred) pairs together (scipy.stats.bootstrap),
    or with `groups` whole groups.

    Macro over the gold classes present in each resample, as `metrics.score` averages over the gold classes of
    the whole set; a `pred` that is no class (None, "<invalid>") counts as wrong. The statistic is vectorised by
    hand because scikit-learn's f1_score, called once per resample, takes seconds per strategy."""
    from scipy.stats import bootstrap

    gold_codes, (pred_codes,), n_codes = _label_codes(gold, [pred])
    if len(gold_codes) == 0:
        return float("nan"), float("nan")
    if np.array_equal(gold_codes, pred_codes):
        return 1.0, 1.0
    if groups is not None:
        codes, n_groups = _group_codes(groups, len(gold_codes))
        counts = _class_counts(gold_codes, pred_codes, codes, n_groups, n_codes)
        scores = [_macro_f1(*_resampled(w, counts)) for w in _resample_counts(n_groups, n_resamples, seed)]
        return _percentile(np.concatenate(scores), confidence)

    def statistic(g, p, axis=-1):
        return _macro_f1_rows(g.reshape(-1, g.shape[-1]), p.reshape(-1, p.shape[-1]), n_codes).reshape(g.shape[:-1])

    result = bootstrap((gold_codes, pred_codes), statistic, paired=True, vectorized=True,
                       confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                       rng=np.random.default_rng(seed), batch=batch_rows(len(gold_codes)))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def macro_f1_diff_ci(gold, pred_a, pred_b, *, groups=None, confidence: float = 0.95, n_resamples: int = 2000,
                     seed: int = 0) -> tuple[float, float, float]:
    """Macro-F1 of b minus macro-F1 of a on the same items, with a paired percentile-bootstrap interval:
    (difference, low, high). Each resample draws items (or groups) once for both strategies."""
    gold_codes, (a_codes, b_codes), n_codes = _label_codes(gold, [pred_a, pred_b])
    if len(gold_codes) == 0:
        return float("nan"), float("nan"), float("nan")
    codes, n_units = (_group_codes(groups, len(gold_codes)) if groups is not None
                      else (np.arange(len(gold_codes)), len(gold_codes)))
    a_counts = _class_counts(gold_codes, a_codes, codes, n_units, n_codes)
    b_counts = _class_counts(gold_codes, b_codes, codes, n_units, n_codes)
    diff = float(_macro_f1(*_totals(b_counts)) - _macro_f1(*_totals(a_counts)))
    if np.array_equal(a_codes, b_codes):
        return diff, diff, diff
    diffs = [_macro_f1(*_resampled(w, b_counts)) - _macro_f1(*_resampled(w, a_counts))
             for w in _resample_counts(n_units, n_resamples, seed)]
    return (diff, *_percentile(np.concatenate(diffs), confidence))


def _label_codes(gold, preds) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Gold classes as integer codes, each prediction as the same codes with one more, "no class" (None, or a
    label that is no gold class), and the number of codes."""
    gold = np.asarray(gold, dtype=object)
    classes = {label: code for code, label in enumerate(sorted(set(map(str, gold))))}
    no_class = len(classes)
    gold_codes = np.array([classes[str(g)] for g in gold], dtype=int)
    pred_codes = [np.array([classes.get(str(p), no_class) if p is not None else no_class
                            for p in np.asarray(pred, dtype=object)], dtype=int) for pred in preds]
    return gold_codes, pred_codes, no_class + 1


def _class_counts(gold, pred, units, n_units: int, n_codes: int, *, dense: bool = False) -> tuple:
    """Per unit (an item, a group, or a resample) and class: gold count, predicted count, hits; (n_units, classes)
    each, the "no class" code dropped. Sparse matrices unless `dense`: a unit is usually one item of one class,
    and dense, the six matrices of a paired macro-F1 over 100,000 items and 77 classes would hold 370 MB of
    zeros, which each resample batch's product would copy again."""
    from scipy.sparse import csr_matrix

    def counts(codes):
        if dense:
            return np.bincount(units * n_codes + codes, minlength=n_units * n_codes).reshape(n_units, n_codes)[:, :-1]
        return csr_matrix((np.ones(len(codes)), (units, codes)), shape=(n_units, n_codes))[:, :-1]

    return counts(gold), counts(pred), counts(np.where(gold == pred, gold, n_codes - 1))


def _totals(counts) -> tuple[np.ndarray, ...]:
    """Whole-set class counts from `_class_counts`' per-unit matrices."""
    return tuple(np.asarray(c.sum(axis=0)).ravel() for c in counts)


def _resampled(weights: np.ndarray, counts) -> tuple[np.ndarray, ...]:
    """Class counts of each resample (a row of `weights`: how often each unit is drawn)."""
    return tuple(np.asarray(c.T @ weights.T).T for c in counts)


def _macro_f1(gold_counts: np.ndarray, pred_counts: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """Macro-F1 over the classes present in gold, for each row of class counts (or one row)."""
    present = gold_counts > 0
    # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (gold count + predicted count)
    f1 = np.divide(2.0 * hits, gold_counts + pred_counts, out=np.zeros(np.shape(hits)), where=present)
    return f1.sum(axis=-1) / present.sum(axis=-1)


def _macro_f1_rows(gold: np.ndarray, pred: np.ndarray, n_codes: int) -> np.ndarray:
    """Macro-F1 of each row of integer-coded (gold, pred); the last code is "no class" and is never averaged."""
    rows = np.repeat(np.arange(gold.shape[0]), gold.shape[1])
    return _macro_f1(*_class_counts(gold.ravel(), pred.ravel(), rows, gold.shape[0], n_codes, dense=True))


# ------------------------------------------------------------------------------------------- pairs of strategies


def pairwise(correct: pd.DataFrame, *, groups=None, confidence: float = 0.95, n_resamples: int = 2000,
             seed: int = 0) -> pd.DataFrame:
    """Every pair of strategies compared on the items both answered: the reference table of a run.

    `correct`: one row per item, one boolean column per strategy (NaN where a strategy has no record);
    `groups`: one label per row (a Series is aligned on `correct`'s index). One row per pair (a, b), in column
    order: n_items, accuracy_a, accuracy_b, diff_b_minus_a with its paired bootstrap interval, the items only a
    and only b got right, the two-sided p-value (`paired_pvalue`) and the Holm-adjusted one across all pairs."""
    names = list(correct.columns)
    return _pairs(correct, [(a, b) for i, a in enumerate(names) for b in names[i + 1:]], groups,
                  confidence, n_resamples, seed)


def decision_family(correct: pd.DataFrame, best: str, *, groups=None, confidence: float = 0.95,
                    n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """The decision's comparisons: `best` (the recommended strategy) against every other column of `correct`,
    with Holm's correction over these comparisons only. The caller passes only the options one could adopt
    (no learning-curve points, no scenario stages), so whether the lead is significant does not depend on how
    many other things the run measured. Columns as in `pairwise`, with a = best and b = the other."""
    if best not in correct.columns:
        raise HarnessError(f"no strategy '{best}' among the candidates; known: {', '.join(map(str, correct.columns))}")
    return _pairs(correct, [(best, other) for other in correct.columns if other != best], groups,
                  confidence, n_resamples, seed)


def _pairs(correct, pairs, groups, confidence, n_resamples, seed) -> pd.DataFrame:
    import pandas as pd

    if groups is not None:
        groups = groups.reindex(correct.index) if isinstance(groups, pd.Series) else \
            pd.Series(np.asarray(groups, dtype=object), index=correct.index)
    rows = []
    for a, b in pairs:
        both = correct[[a, b]].dropna()
        a_correct, b_correct = both[a].astype(bool).to_numpy(), both[b].astype(bool).to_numpy()
        pair_groups = None if groups is None else groups.loc[both.index].to_numpy()
        diff, low, high = paired_diff_ci(a_correct, b_correct, groups=pair_groups, confidence=confidence,
                                         n_resamples=n_resamples, seed=seed)
        rows.append({"a": a, "b": b, "n_items": len(both),
                     "accuracy_a": float(a_correct.mean()) if len(both) else float("nan"),
                     "accuracy_b": float(b_correct.mean()) if len(both) else float("nan"),
                     "diff_b_minus_a": diff, "diff_ci_low": low, "diff_ci_high": high,
                     "only_a_correct": int(np.sum(a_correct & ~b_correct)),
                     "only_b_correct": int(np.sum(~a_correct & b_correct)),
                     "p_mcnemar": paired_pvalue(a_correct, b_correct, groups=pair_groups)})
    frame = pd.DataFrame(rows, columns=["a", "b", "n_items", "accuracy_a", "accuracy_b", "diff_b_minus_a",
                                        "diff_ci_low", "diff_ci_high", "only_a_correct", "only_b_correct",
                                        "p_mcnemar"])
    frame["p_holm"] = holm(frame["p_mcnemar"])
    return frame


# ------------------------------------------------------------------------------------------------ resampling


def _group_codes(groups, n_items: int) -> tuple[np.ndarray, int]:
    groups = np.asarray(groups, dtype=object)
    if len(groups) != n_items:
        raise ValueError(f"groups: {len(groups)} labels for {n_items} items")
    names, codes = np.unique(groups.astype(str), return_inverse=True)
    if len(names) < 2:
        raise HarnessError(f"groups: the {n_items} items all belong to group '{names[0]}'; clustered intervals "
                           "need at least 2 groups")
    return codes, len(names)


def resample_indices(n_units: int, n_resamples: int, seed: int):
    """The units (items, or groups) each bootstrap resample draws, with replacement: (batch, n_units) arrays of
    positions, `batch_rows(n_units)` resamples at a time, `n_resamples` in all, from one seeded stream."""
    rng = np.random.default_rng(seed)
    rows = batch_rows(n_units)
    for start in range(0, n_resamples, rows):
        yield rng.integers(0, n_units, size=(min(rows, n_resamples - start), n_units))


def _resample_counts(n_units: int, n_resamples: int, seed: int):
    """How often each unit is drawn into each bootstrap resample (`resample_indices`), in batches of rows."""
    for draws in resample_indices(n_units, n_resamples, seed):
        size = len(draws)
        flat = (draws + (np.arange(size) * n_units)[:, None]).ravel()
        yield np.bincount(flat, minlength=size * n_units).reshape(size, n_units).astype(float)


def _percentile(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 50.0 * (1 - confidence)
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)
