"""The recommendation at the configured volume, in plain words generated from the numbers: the best candidate by
the decision's metric within budget, the cheapest candidate shown to be no worse than it (non-inferiority),
where prompting and training break even (on the API model a team would buy) and when the training pays back, the
models that retire within the horizon, whether the lead over the runner-up is more than noise (within the
decision's own comparisons), and whether the held-out set is big enough to tell."""
from __future__ import annotations

import math

import pandas as pd

from harness.costs.plan import PricingPlan
from harness.costs.tco import MAX_VOLUME, Option
from harness.report.costing import Costs
from harness.report.fmt import pct, points, pvalue, usd, volume
from harness.report.verdict import Verdict


def p_is(p: float) -> str:
    text = pvalue(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def recommend(v: Verdict, over_budget: pd.DataFrame, costs: Costs, plan: PricingPlan) -> tuple[str | None, list[str]]:
    """(the recommended strategy or None, sentences). `v` was computed on the candidates within budget (all of
    them when none is); `over_budget`: the candidates that are not."""
    if v.ranked.empty:
        return None, ["The run has no results to recommend from.", *retirements(costs, plan)]
    if plan.monthly_budget_usd is not None and not v.ranked["within_budget"].astype(bool).any():
        cheapest = v.ranked.sort_values("monthly_usd", kind="stable").iloc[0]
        return None, [f"At {volume(plan.monthly_volume)} items a month, no strategy keeps within the monthly budget "
                      f"of {usd(plan.monthly_budget_usd)}; the cheapest, {cheapest.strategy}, averages "
                      f"{usd(cheapest.monthly_usd)} a month.", *decision_sentences(costs, plan),
                      *retirements(costs, plan)]
    best = v.ranked.iloc[0]
    sentences = [_headline(best, v, over_budget, plan), _cheaper(best, v), *decision_sentences(costs, plan),
                 *retirements(costs, plan), *_lead(best, v)]
    return best.strategy, [s for s in sentences if s]


def _headline(best, v: Verdict, over_budget: pd.DataFrame, plan: PricingPlan) -> str:
    budget = "" if plan.monthly_budget_usd is None else f" within the {usd(plan.monthly_budget_usd)} monthly budget"
    scores = (f"{pct(best.accuracy)} accurate (95% CI {pct(best.accuracy_ci_low)} to {pct(best.accuracy_ci_high)})"
              if v.rule.metric == "accuracy" else
              f"macro-F1 {best.macro_f1:.3f} (95% CI {best.macro_f1_ci_low:.3f} to {best.macro_f1_ci_high:.3f}), "
              f"{pct(best.accuracy)} accurate")
    money = f"{usd(best.total_usd)} in total, {usd(best.monthly_usd)} a month"
    if len(v.ranked) == 1 and over_budget.empty:
        return (f"The run has one option to adopt, {best.strategy} ({best.family}): {scores}, {money} at "
                f"{volume(plan.monthly_volume)} items a month over {plan.horizon_months:g} months.")
    which = "the most accurate strategy" if v.rule.metric == "accuracy" else "the strategy with the best macro-F1"
    text = (f"At {volume(plan.monthly_volume)} items a month over {plan.horizon_months:g} months, {which}{budget} is "
            f"{best.strategy} ({best.family}): {scores}, {money}.")
    better = over_budget[over_budget[v.rule.metric] > best[v.rule.metric]]
    if not better.empty:
        top = better.sort_values(v.rule.metric, ascending=False, kind="stable").iloc[0]
        text += (f" {top.strategy} scores higher ({pct(top.accuracy)} accurate) but averages {usd(top.monthly_usd)} "
                 "a month, over budget.")
    return text


def _cheaper(best, v: Verdict) -> str:
    """The cheaper and no worse: a one-sided non-inferiority test of accuracy, not a point-estimate rule."""
    margin = f"{v.rule.margin_points:g} point{'s' if v.rule.margin_points != 1 else ''}"
    test = f"Tango's score test of non-inferiority, margin {margin}, one-sided alpha {v.rule.alpha:g}"
    if not v.cheaper_tested:
        return f"No option to adopt costs less than {best.strategy}." if len(v.ranked) > 1 else ""
    totals = dict(zip(v.ranked["strategy"], v.ranked["total_usd"]))
    # none passed: the one that came closest says more than the cheapest (often a far worse zero-shot)
    name, ni = v.cheaper or max(v.cheaper_tested, key=lambda tested: tested[1].lower)
    saving = 1 - totals[name] / best.total_usd if best.total_usd else 0.0
    saving_text = "under 1%" if 0 < saving < 0.005 else pct(saving, 0)  # not "0% less" for a few dollars
    shown = (f"accuracy {points(ni.estimate)} against {best.strategy}, at worst {points(ni.lower)} "
             f"({1 - v.rule.alpha:.0%} one-sided bound; {test}, {p_is(ni.p_value)})")
    if v.cheaper:
        return (f"{name} costs {saving_text} less ({usd(totals[name])} in total) and is no worse than "
                f"{best.strategy} by more than {margin}: {shown}.")
    closest = "the only one" if len(v.cheaper_tested) == 1 else "the closest"
    return (f"No cheaper option is shown to be within {margin} of {best.strategy}: {closest}, {name} "
            f"({saving_text} less), has {shown}.")


def _lead(best, v: Verdict) -> list[str]:
    """The lead over the runner-up within the decision's family, and whether the held-out set can see it."""
    out = []
    if not v.family.empty:
        row = v.family[v.family["b"] == v.ranked["strategy"].iloc[1]].iloc[0]
        verdict = "is statistically significant" if row.p_holm < v.rule.alpha else "is not statistically significant"
        comparisons = len(v.family)
        family = ("" if comparisons == 1 else
                  f", Holm-adjusted over the decision's {comparisons} comparisons")
        f1 = (f"; macro-F1 {-row.macro_f1_diff_b_minus_a:+.3f} (95% CI {-row.macro_f1_diff_ci_high:+.3f} to "
              f"{-row.macro_f1_diff_ci_low:+.3f})" if "macro_f1_diff_b_minus_a" in row else "")
        out.append(f"Against the runner-up, {row.b}, {best.strategy} differs by {points(-row.diff_b_minus_a)} in "
                   f"accuracy (95% CI {points(-row.diff_ci_high)} to {points(-row.diff_ci_low)}){f1}; the difference "
                   f"{verdict} (McNemar exact test{family}, {p_is(row.p_holm)}, {row.n_items} paired items).")
    d = v.detectable
    if d is not None:
        power = f"{v.rule.power:.0%} power"
        if math.isinf(d.difference) and d.discordance == 0:
            out.append(f"{d.best} and {d.other} answer alike on every item: no held-out set of this size can tell "
                       "them apart.")
        elif math.isinf(d.difference):
            out.append(f"{d.best} and {d.other} disagree on only {pct(d.discordance)} of the held-out items: too "
                       f"few for this set to detect any difference between them at {power}.")
        else:
            text = (f"With {d.n_items:,.0f} {'effective ' if v.groups else ''}held-out items, {pct(d.discordance)} "
                    f"of them answered right by exactly one of {d.best} and {d.other}, the smallest difference this "
                    f"set detects at {power} is {points(d.difference)}")
            if abs(d.observed) < d.difference:
                need = f" (about {d.needed:,} would be needed)" if d.needed else ""
                text += (f"; the observed {points(d.observed)} is smaller, so the held-out set is too small to "
                         f"separate them{need}.")
            else:
                text += f"; the observed {points(d.observed)} is larger."
            out.append(text)
    if v.groups is not None:
        column, n_groups, deff = v.groups
        out.append(f"Items are not independent: every interval and test resamples the {n_groups:,} groups of column "
                   f"'{column}' (design effect {deff:.2f} for the top pair).")
    if v.metric_disagreement:
        other = "macro-F1" if v.rule.metric == "accuracy" else "accuracy"
        out.append(f"By {other} the best is {v.metric_disagreement}, not {best.strategy}: the metrics disagree, which "
                   "usually means the rare classes fare differently; rank by the other with "
                   f"decision.metric={'macro_f1' if other == 'macro-F1' else 'accuracy'}.")
    return out


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
