"""How the decision's answer moves with each uncertain input: the break-even volume and the cheaper option at the
plan's volume with one input halved and then doubled, every other input as planned (a tornado)."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pandas as pd

from harness.costs.plan import PricingPlan
from harness.costs.tco import Option, bill, break_even

FACTORS = (0.5, 2.0)
COLUMNS = ["input", "planned", "low", "high", "break_even_low", "break_even_high", "cheaper_low", "cheaper_high"]


def inputs(prompted: Option, trained: Option, plan: PricingPlan) -> list[str]:
    """The uncertain inputs that can move the answer for this pair (dotted plan keys, or `api prices`)."""
    keys = ["people.usd_per_hour", f"people.build_hours.{_key(plan.people.build_hours, prompted.family)}",
            f"people.build_hours.{_key(plan.people.build_hours, trained.family)}", "people.retrain_hours",
            "people.prompt_change_hours", "people.prompt_changes_per_year", "retrains_per_year",
            "new_categories_per_year", "labelling.usd_per_item",
            f"labelling.items_per_new_category.{_key(plan.labelling.items_per_new_category, trained.family)}",
            "horizon_months"]
    if trained.billing != "api" and plan.serving.mode == "always_on" and plan.serving.instances:
        name, _ = plan.serving.instance(trained.serving_class)
        keys += [f"serving.instances.{name}.usd_per_hour", "serving.target_utilisation"]
    if prompted.quote is not None:
        keys.append("api prices")
    return [key for key in dict.fromkeys(keys) if key.split(".")[-1] != "None"]


def tornado(prompted: Option, trained: Option, plan: PricingPlan, date: dt.date) -> pd.DataFrame:
    rows = []
    for key in inputs(prompted, trained, plan):
        row = {"input": key, "planned": _value(plan, prompted, key)}
        for label, factor in zip(("low", "high"), FACTORS):
            moved_plan, moved_prompted = _scaled(plan, prompted, key, factor)
            even = break_even(moved_prompted, trained, moved_plan, date)
            totals = {o.name: bill(o, moved_plan, moved_plan.monthly_volume, date).total_usd
                      for o in (moved_prompted, trained)}
            row.update({label: _value(moved_plan, moved_prompted, key),
                        f"break_even_{label}": even.monthly_volume if even.kind == "crosses" else None,
                        f"cheaper_{label}": min(totals, key=totals.get)})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    width = (frame["break_even_high"].fillna(0) - frame["break_even_low"].fillna(0)).abs()
    return frame.assign(_width=width).sort_values("_width", ascending=False, kind="stable").drop(columns="_width") \
        .reset_index(drop=True)


def _key(table: dict, family: str) -> str | None:
    return family if family in table else "default" if "default" in table else None


def _value(plan: PricingPlan, prompted: Option, key: str):
    if key == "api prices":
        return prompted.quote.input * 1e6  # USD per million input tokens, as a reader knows the price
    return plan_value(plan, key)


def plan_value(plan: PricingPlan, key: str):
    """The plan's value at a dotted key (`people.usd_per_hour`, `serving.instances.cpu_small.usd_per_hour`)."""
    node = plan
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def _scaled(plan: PricingPlan, prompted: Option, key: str, factor: float) -> tuple[PricingPlan, Option]:
    if key == "api prices":
        quote = prompted.quote
        scaled = {f.name: getattr(quote, f.name) * factor for f in dataclasses.fields(quote)
                  if isinstance(getattr(quote, f.name), float)}
        return plan, dataclasses.replace(prompted, quote=dataclasses.replace(quote, **scaled))
    value = _value(plan, prompted, key) * factor
    if key == "serving.target_utilisation":
        value = min(value, 1.0)
    return _replace(plan, key.split("."), value), prompted


def _replace(node, path: list[str], value):
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        return {**node, head: value if not rest else _replace(node[head], rest, value)}
    return dataclasses.replace(node, **{head: value if not rest else _replace(getattr(node, head), rest, value)})
