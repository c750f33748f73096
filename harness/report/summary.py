"""The summary a leadership team can sign: the money that matters at their volume, in a few sentences generated
from the decision's pair (what each option costs a month, when the training pays back, what one more category
costs each way), with the accuracy measured here."""
from __future__ import annotations

import pandas as pd

from harness.costs.plan import PricingPlan
from harness.report.costing import Costs
from harness.report.fmt import pct, usd, volume
from harness.report.recommend import label

RUNNING = ("serving", "inference", "fees")


def summary(costs: Costs, results: pd.DataFrame, plan: PricingPlan) -> list[str]:
    d = costs.decision
    if d is None:
        return []
    accuracy = dict(zip(results["strategy"], results["accuracy"]))
    models = dict(zip(results["strategy"], results["model"]))
    months = plan.horizon_months
    lines = []
    parts = []
    for option in (d.trained, d.prompted):
        b = costs.bills[option.name]
        running = sum(b.part(name) for name in RUNNING)
        parts.append(f"{label(option) if option.projected else option.name} {usd(b.total_usd / months)} a month "
                     f"({usd(running / months)} serving or API calls, {usd((b.total_usd - running) / months)} "
                     f"people's time, labelling and refits)")
    lines.append(f"At {volume(plan.monthly_volume)} items a month, averaged over {months:g} months: "
                 + "; ".join(parts) + ".")
    lines.append(_payback(costs, plan))
    new = d.new_category
    t, p = new[d.trained.name], new[d.prompted.name]
    lines.append(f"One more category costs about {usd(t.usd)} and {t.hours:.0f} working hours with {d.trained.name} "
                 f"({t.how}), against {usd(p.usd)} and {p.hours:.0f} hours with {d.prompted.strategy} ({p.how}).")
    measured_on = models.get(d.prompted.strategy, "")
    lines.append(f"Accuracy measured on the same held-out items: {d.trained.name} {pct(accuracy[d.trained.strategy])}, "
                 f"{d.prompted.strategy} {pct(accuracy[d.prompted.strategy])}"
                 + (f" on {measured_on} (not on {d.prompted.model}, which was not called)" if d.prompted.projected
                    else "") + ".")
    return lines


def _payback(costs: Costs, plan: PricingPlan) -> str:
    d = costs.decision
    trained, prompted = costs.bills[d.trained.name], costs.bills[d.prompted.name]
    extra = trained.upfront_usd - prompted.upfront_usd
    if d.payback_month == 0.0:
        return f"{d.trained.name} needs no more up front than {d.prompted.strategy}; {d.cheaper} is cheaper overall."
    if d.payback_month is None:
        return (f"{d.trained.name} costs {usd(extra)} more up front and does not pay it back within "
                f"{plan.horizon_months:g} months at this volume; {d.cheaper} is cheaper overall.")
    return f"{d.trained.name} costs {usd(extra)} more up front and pays it back in month {d.payback_month:.1f}."
