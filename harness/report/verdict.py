"""The statistics behind the recommendation, computed once: the candidates ranked by the decision's metric, the
decision's comparison family (the recommended strategy against each other candidate, Holm over those only, with
the macro-F1 difference beside the accuracy one), the cheapest candidate that is no worse than the best by more
than the margin (a one-sided non-inferiority test), the smallest difference the held-out set can detect for
the top pair, and the facts a reader must know (clustered items, accuracy and macro-F1 disagreeing)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness import metrics, stats
from harness.power import NonInferiority, detectable_difference, items_needed, noninferiority
from harness.report.pricing import DecisionRule


@dataclass(frozen=True)
class Detectable:
    """For the top pair: the smallest accuracy difference the held-out set detects at the rule's power."""

    best: str
    other: str
    n_items: float  # effective items (n / design effect with groups)
    discordance: float  # share of items exactly one of them got right
    difference: float  # the smallest detectable difference, a fraction (inf: none)
    observed: float  # best - other, observed
    needed: int | None  # items needed to detect the observed difference (None: no difference to detect)


@dataclass
class Verdict:
    rule: DecisionRule
    ranked: pd.DataFrame  # the candidates, best first by the rule's metric (ties: the cheaper)
    best: str | None
    family: pd.DataFrame  # stats.decision_family + macro_f1 difference with its interval
    cheaper: tuple[str, NonInferiority] | None  # the cheapest candidate shown no worse than the best
    cheaper_tested: list[tuple[str, NonInferiority]]  # every cheaper candidate, tested
    detectable: Detectable | None
    groups: tuple[str, int, float] | None  # (column, groups, design effect of the top pair) when clustered
    metric_disagreement: str | None  # the other metric's best, when it differs


def verdict(results: pd.DataFrame, candidates: pd.DataFrame, records: pd.DataFrame, rule: DecisionRule,
            groups: pd.Series | None, group_column: str | None, seed: int) -> Verdict:
    """`candidates`: the rows of `results` that may be recommended (within budget or not: the caller says)."""
    metric = rule.metric
    ranked = candidates.sort_values([metric, "total_usd"], ascending=[False, True], kind="stable")
    if ranked.empty:
        return Verdict(rule, ranked, None, pd.DataFrame(), None, [], None, None, None)
    best = ranked["strategy"].iloc[0]
    names = list(ranked["strategy"])
    correct = records.pivot(index="item_id", columns="strategy", values="correct")[names].astype(float)
    item_groups = None if groups is None else groups.reindex(correct.index)
    family = stats.decision_family(correct, best, groups=item_groups, seed=seed) if len(names) > 1 else pd.DataFrame()
    if not family.empty:
        family = family.join(_f1_differences(records, best, family["b"], item_groups, seed))
    tested = _cheaper_no_worse(ranked, correct, best, rule, item_groups)
    cheaper = next(((name, ni) for name, ni in tested if ni.non_inferior), None)
    other = {"accuracy": "macro_f1", "macro_f1": "accuracy"}[metric]
    top_other = candidates.sort_values([other, "total_usd"], ascending=[False, True], kind="stable")["strategy"]
    return Verdict(rule, ranked, best, family, cheaper, tested,
                   _detectable(correct, names, rule, item_groups),
                   _clustered(correct, names, group_column, item_groups),
                   top_other.iloc[0] if top_other.iloc[0] != best else None)


def _f1_differences(records: pd.DataFrame, best: str, others: pd.Series, groups, seed: int) -> pd.DataFrame:
    """Paired bootstrap intervals of macro-F1(other) - macro-F1(best), on the items both answered."""
    predicted = records.assign(pred=metrics.predictions(records)).pivot(index="item_id", columns="strategy",
                                                                        values=["gold", "pred"])
    rows = []
    for other in others:
        both = predicted[[("gold", best), ("pred", best), ("pred", other)]].dropna()
        g = None if groups is None else groups.reindex(both.index)
        diff, low, high = stats.macro_f1_diff_ci(both[("gold", best)], both[("pred", best)], both[("pred", other)],
                                                 groups=g, seed=seed)
        rows.append({"macro_f1_diff_b_minus_a": diff, "macro_f1_diff_ci_low": low, "macro_f1_diff_ci_high": high})
    return pd.DataFrame(rows, index=others.index)


def _cheaper_no_worse(ranked: pd.DataFrame, correct: pd.DataFrame, best: str, rule: DecisionRule,
                      groups) -> list[tuple[str, NonInferiority]]:
    """Every candidate cheaper than the best, cheapest first, tested: is it worse by less than the margin?"""
    top = ranked.iloc[0]
    cheaper = ranked[ranked["total_usd"] < top.total_usd].sort_values("total_usd", kind="stable")
    out = []
    for name in cheaper["strategy"]:
        both = correct[[best, name]].dropna()
        g = None if groups is None else groups.reindex(both.index)
        out.append((name, noninferiority(both[best].astype(bool), both[name].astype(bool),
                                         margin=rule.margin_points / 100, alpha=rule.alpha, groups=g)))
    return out


def _detectable(correct: pd.DataFrame, names: list[str], rule: DecisionRule, groups) -> Detectable | None:
    if len(names) < 2:
        return None
    best, other = names[0], names[1]
    both = correct[[best, other]].dropna().astype(bool)
    a, b = both[best].to_numpy(), both[other].to_numpy()
    n = float(len(both))
    if groups is not None:
        n /= stats.design_effect(b.astype(float) - a, groups.reindex(both.index))
    discordance = float(np.mean(a != b)) if len(both) else 0.0
    observed = float(np.mean(a) - np.mean(b)) if len(both) else 0.0
    difference = detectable_difference(max(int(n), 1), discordance, alpha=rule.alpha, power=rule.power)
    needed = (items_needed(abs(observed), discordance, alpha=rule.alpha, power=rule.power)
              if 0 < abs(observed) < discordance else None)
    return Detectable(best, other, n, discordance, difference, observed, needed)


def _clustered(correct: pd.DataFrame, names: list[str], column: str | None, groups) -> tuple[str, int, float] | None:
    if groups is None or column is None:
        return None
    deff = 1.0
    if len(names) > 1:
        both = correct[names[:2]].dropna()
        deff = stats.design_effect(both[names[1]] - both[names[0]], groups.reindex(both.index))
    return column, stats.group_count(groups.dropna()), deff
