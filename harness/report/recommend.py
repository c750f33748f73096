"""The recommendation at the configured volume, in plain words generated from the numbers: the most accurate
strategy within budget, the cheapest within one point of it, the prompted/trained break-even, and whether the
lead over the runner-up is more than noise."""
from __future__ import annotations

import pandas as pd

from harness.costs.plan import PricingPlan
from harness.strategies.base import PROMPTED
from harness.report.fmt import pct, points, pvalue, usd, volume

ONE_POINT = 0.01  # "within one point" of the best: one percentage point of accuracy
ALPHA = 0.05  # significance level for the Holm-adjusted McNemar test


def recommend(results: pd.DataFrame, break_evens: pd.DataFrame, pairwise: pd.DataFrame,
              plan: PricingPlan) -> tuple[str | None, list[str]]:
    """(the recommended strategy or None, sentences). `results` needs strategy, family, accuracy,
    accuracy_ci_low/high, total_usd, monthly_usd, within_budget."""
    if results.empty:
        return None, ["The run has no results to recommend from."]
    ranked = results.sort_values(["accuracy", "total_usd"], ascending=[False, True], kind="stable")
    affordable = ranked[ranked["within_budget"].astype(bool)]
    if affordable.empty:
        cheapest = ranked.sort_values("monthly_usd", kind="stable").iloc[0]
        return None, [f"At {volume(plan.monthly_volume)} items a month, no strategy keeps within the monthly budget "
                      f"of {usd(plan.monthly_budget_usd)}; the cheapest, {cheapest.strategy}, averages "
                      f"{usd(cheapest.monthly_usd)} a month.", _break_even(ranked, break_evens, plan)]
    best = affordable.iloc[0]
    sentences = [_most_accurate(best, ranked, plan), _cheapest_near(best, affordable),
                 _break_even(ranked, break_evens, plan)]
    runner_up = ranked[ranked["strategy"] != best.strategy]
    if not runner_up.empty:
        sentences.append(_significance(best.strategy, runner_up.iloc[0], pairwise))
    return best.strategy, sentences


def _most_accurate(best, ranked: pd.DataFrame, plan: PricingPlan) -> str:
    budget = "" if plan.monthly_budget_usd is None else f" within the {usd(plan.monthly_budget_usd)} monthly budget"
    text = (f"At {volume(plan.monthly_volume)} items a month over {plan.horizon_months:g} months, the most accurate "
            f"strategy{budget} is {best.strategy} ({best.family}): {pct(best.accuracy)} accurate (95% CI "
            f"{pct(best.accuracy_ci_low)} to {pct(best.accuracy_ci_high)}), {usd(best.total_usd)} in total, "
            f"{usd(best.monthly_usd)} a month.")
    better = ranked[(ranked["accuracy"] > best.accuracy) & ~ranked["within_budget"].astype(bool)]
    if not better.empty:
        top = better.iloc[0]
        text += (f" {top.strategy} is more accurate ({pct(top.accuracy)}) but averages {usd(top.monthly_usd)} a "
                 "month, over budget.")
    return text


def _cheapest_near(best, affordable: pd.DataFrame) -> str:
    near = affordable[affordable["accuracy"] >= best.accuracy - ONE_POINT - 1e-12]
    cheapest = near.sort_values(["total_usd", "accuracy"], ascending=[True, False], kind="stable").iloc[0]
    if cheapest.strategy == best.strategy:
        return f"No strategy within one point of {best.strategy}'s accuracy costs less."
    saving = 1 - cheapest.total_usd / best.total_usd if best.total_usd else 0.0
    return (f"The cheapest within one point of it is {cheapest.strategy}: {pct(cheapest.accuracy)} accurate, "
            f"{usd(cheapest.total_usd)} in total ({pct(saving, 0)} less).")


def _break_even(ranked: pd.DataFrame, break_evens: pd.DataFrame, plan: PricingPlan) -> str:
    """Between the most accurate prompted strategy and the most accurate of the others (trained, or a family of
    its own)."""
    prompted_side = ranked.loc[ranked["family"] == PROMPTED]
    other_side = ranked.loc[ranked["family"] != PROMPTED]
    if prompted_side.empty or other_side.empty:
        missing = "prompted" if prompted_side.empty else "trained"
        return f"The run has no {missing} strategy, so there is no prompted/trained break-even volume."
    prompted, trained = prompted_side["strategy"].iloc[0], other_side["strategy"].iloc[0]
    row = break_evens[(break_evens["prompted"] == prompted) & (break_evens["trained"] == trained)].iloc[0]
    pair = f"{prompted} (prompted) and {trained} ({other_side['family'].iloc[0]})"
    if row.kind == "equal":
        return f"{pair} cost the same at every volume."
    if row.kind == "never":
        return f"{pair} never break even: {row.cheaper_below} costs less at every volume."
    now = row.cheaper_below if plan.monthly_volume < row.monthly_volume else row.cheaper_above
    return (f"{pair} break even at {volume(row.monthly_volume)} items a month: below that {row.cheaper_below} costs "
            f"less over {plan.horizon_months:g} months, above it {row.cheaper_above} does "
            f"(at {volume(plan.monthly_volume)} a month, {now}).")


def _significance(best: str, other, pairwise: pd.DataFrame) -> str:
    row = pairwise[((pairwise["a"] == best) & (pairwise["b"] == other.strategy))
                   | ((pairwise["a"] == other.strategy) & (pairwise["b"] == best))].iloc[0]
    sign = 1 if row.b == best else -1  # the table holds b - a; speak of best - other
    low, high = sorted((sign * row.diff_ci_low, sign * row.diff_ci_high))
    verdict = "is statistically significant" if row.p_holm < ALPHA else "is not statistically significant"
    return (f"Against the next most accurate, {other.strategy}, {best} differs by {points(sign * row.diff_b_minus_a)} "
            f"(95% CI {points(low)} to {points(high)}); the difference {verdict} (McNemar exact test, "
            f"Holm-adjusted p = {pvalue(row.p_holm)}, {row.n_items} paired items).")
