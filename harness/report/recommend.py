"""The recommendation at the configured volume, in plain words generated from the numbers: the most accurate
strategy within budget, the cheapest within one point of it, where prompting and training break even (on the API
model a team would buy) and when the training pays back, the models that retire within the horizon, and whether
the lead over the runner-up is more than noise."""
from __future__ import annotations

import pandas as pd

from harness.costs.plan import PricingPlan
from harness.costs.tco import MAX_VOLUME, Option
from harness.report.costing import Costs
from harness.report.fmt import pct, points, pvalue, usd, volume

ONE_POINT = 0.01  # "within one point" of the best: one percentage point of accuracy
ALPHA = 0.05  # significance level for the Holm-adjusted McNemar test


def recommend(results: pd.DataFrame, costs: Costs, pairwise: pd.DataFrame,
              plan: PricingPlan) -> tuple[str | None, list[str]]:
    """(the recommended strategy or None, sentences). `results`: the candidates (never a retired model or a
    scenario's `before` stage), with strategy, family, accuracy, accuracy_ci_low/high, total_usd, monthly_usd,
    within_budget."""
    if results.empty:
        return None, ["The run has no results to recommend from.", *retirements(costs, plan)]
    ranked = results.sort_values(["accuracy", "total_usd"], ascending=[False, True], kind="stable")
    affordable = ranked[ranked["within_budget"].astype(bool)]
    if affordable.empty:
        cheapest = ranked.sort_values("monthly_usd", kind="stable").iloc[0]
        return None, [f"At {volume(plan.monthly_volume)} items a month, no strategy keeps within the monthly budget "
                      f"of {usd(plan.monthly_budget_usd)}; the cheapest, {cheapest.strategy}, averages "
                      f"{usd(cheapest.monthly_usd)} a month.", *decision_sentences(costs, plan),
                      *retirements(costs, plan)]
    best = affordable.iloc[0]
    sentences = [_most_accurate(best, ranked, plan), _cheapest_near(best, affordable),
                 *decision_sentences(costs, plan), *retirements(costs, plan)]
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


def label(option: Option) -> str:
    """An option as a reader should read it: a projected one says whose accuracy it carries."""
    if option.projected:
        return f"{option.strategy} on {option.model} (cost projected; accuracy measured on the run's own model)"
    return f"{option.name} ({option.family})"


def decision_sentences(costs: Costs, plan: PricingPlan) -> list[str]:
    """Where the decision's pair break even, the volumes over which the cheaper stays cheaper, and when the
    trained option's extra up-front cost pays back."""
    d = costs.decision
    if d is None:
        return ["The run does not have both a prompted and a trained strategy, so there is no prompted/trained "
                "break-even volume."]
    pair, even = f"{label(d.prompted)} and {d.trained.name} ({d.trained.family})", d.break_even
    if even.kind == "equal":
        sentences = [f"{pair} cost the same at every volume."]
    elif even.kind == "never":
        sentences = [f"{pair} never break even: {even.cheaper_below} costs less at every volume up to "
                     f"{volume(MAX_VOLUME)} items a month."]
    else:
        sentences = [f"{pair} break even at {volume(even.monthly_volume)} items a month: below that "
                     f"{even.cheaper_below} costs less over {plan.horizon_months:g} months, above it "
                     f"{even.cheaper_above} does (at {volume(plan.monthly_volume)} a month, {d.cheaper})."]
    low, high = d.holds
    if even.kind == "crosses":
        span = f"below {volume(high)}" if low == 0 else f"above {volume(low)}"
        sentences.append(f"{d.cheaper} stays the cheaper of the two at any monthly volume {span}.")
    month = d.payback_month
    trained, prompted = costs.bills[d.trained.name], costs.bills[d.prompted.name]
    extra = trained.upfront_usd - prompted.upfront_usd
    if month == 0.0:
        sentences.append(f"{d.trained.name} costs no more up front than {d.prompted.name}.")
    elif month is None:
        sentences.append(f"{d.trained.name}'s extra {usd(extra)} up front does not pay back within "
                         f"{plan.horizon_months:g} months at {volume(plan.monthly_volume)} items a month.")
    else:
        sentences.append(f"{d.trained.name}'s extra {usd(extra)} up front pays back in month {month:.1f}.")
    return sentences


def retirements(costs: Costs, plan: PricingPlan) -> list[str]:
    """Every API model that has retired (never recommended) or retires within the horizon (its move counted)."""
    out, seen = [], set()
    for name, b in costs.bills.items():
        model = b.option.model
        if b.retires_on is None or model in seen:
            continue
        seen.add(model)
        source = b.option.quote.retirement_source if b.option.quote else "pricing.retirements"
        if b.retired:
            out.append(f"{model} retired on {b.retires_on} ({source}): options on it are shown but never "
                       "recommended.")
        elif b.part("retirement"):
            out.append(f"{model} retires on {b.retires_on} ({source}), inside the {plan.horizon_months:g}-month "
                       f"horizon: each option on it is charged one move to its successor ({usd(b.part('retirement'))}).")
    return out


def _significance(best: str, other, pairwise: pd.DataFrame) -> str:
    row = pairwise[((pairwise["a"] == best) & (pairwise["b"] == other.strategy))
                   | ((pairwise["a"] == other.strategy) & (pairwise["b"] == best))].iloc[0]
    sign = 1 if row.b == best else -1  # the table holds b - a; speak of best - other
    low, high = sorted((sign * row.diff_ci_low, sign * row.diff_ci_high))
    verdict = "is statistically significant" if row.p_holm < ALPHA else "is not statistically significant"
    return (f"Against the next most accurate, {other.strategy}, {best} differs by {points(sign * row.diff_b_minus_a)} "
            f"(95% CI {points(low)} to {points(high)}); the difference {verdict} (McNemar exact test, "
            f"Holm-adjusted p = {pvalue(row.p_holm)}, {row.n_items} paired items).")
