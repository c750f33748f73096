"""The cost side of the decision, computed once: every option (each measured strategy as it ran, and each
prompted strategy projected onto each listed API model), its bill at the plan's volume, the break-even volumes
between prompted and trained options, and the decision's pair: the most accurate prompted strategy on the API
model a team would buy against the most accurate trained strategy, with its payback month, what a new category
costs each way, and how the answer moves when each assumption is halved or doubled."""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.costs.plan import PricingPlan, by_family
from harness.costs.projection import Projection
from harness.costs.tco import MAX_VOLUME, Bill, BreakEven, Option, bill, break_even, payback_month
from harness.report.sensitivity import tornado
from harness.run.manifest import Manifest
from harness.strategies.base import API, PROMPTED

BREAK_EVEN_COLUMNS = ["prompted", "trained", "prompted_projected", "kind", "monthly_volume", "cheaper_below",
                      "cheaper_above"]


@dataclass(frozen=True)
class NewCategory:
    usd: float
    hours: float  # elapsed working hours: labelling, people's time, the refit itself
    how: str


@dataclass
class Decision:
    prompted: Option
    trained: Option
    break_even: BreakEven
    payback_month: float | None
    cheaper: str  # the cheaper of the two at the plan's volume
    holds: tuple[float, float]  # monthly volumes over which `cheaper` stays the cheaper (MAX_VOLUME: no limit)
    new_category: dict[str, NewCategory]
    sensitivity: pd.DataFrame


@dataclass
class Costs:
    decision_date: dt.date
    options: dict[str, Option]
    bills: dict[str, Bill]  # at the plan's volume
    break_evens: pd.DataFrame
    decision: Decision | None


def decision_date(manifest: Manifest, plan: PricingPlan) -> dt.date:
    return plan.decision_date or dt.date.fromisoformat(manifest.started_at[:10])


def options(manifest: Manifest, results: pd.DataFrame) -> dict[str, Option]:
    """Measured options first (results order), then the projected ones."""
    projections = [Projection.from_dict(row) for row in manifest.projection]
    own = {p.strategy: p for p in projections if p.own_model}
    out = {}
    for row in results.itertuples():
        fit = manifest.strategies[row.strategy]
        mine = own.get(row.strategy)
        out[row.strategy] = Option(
            name=row.strategy, strategy=row.strategy, family=row.family, billing=fit.billing,
            serving_class=fit.serving, model=mine.quote.model if mine else fit.model, projected=False,
            fit_usd=_zero_if_nan(fit.fit_cost_usd), refit_usd=_zero_if_nan(fit.fit_cost_usd),
            items_per_second=float(row.throughput_items_per_s), latency_s=float(row.latency_p50_ms) / 1000.0,
            measured_per_item_usd=float(row.cost_per_1k_usd) / 1000.0, quote=mine.quote if mine else None,
            tokens=mine.tokens if mine else None, candidate=fit.stage.candidate)
    measured_on = {(_base(manifest, name), o.model) for name, o in out.items() if o.billing == API}
    for p in projections:
        if p.own_model or p.strategy not in out or (_base(manifest, p.strategy), p.quote.model) in measured_on:
            continue  # a run of that model exists (e.g. merged by `compare`): its measured accuracy replaces this
        measured = out[p.strategy]
        name = f"{p.strategy} @ {p.quote.model}"
        out[name] = Option(name=name, strategy=p.strategy, family=PROMPTED, billing=API, serving_class="cpu",
                           model=p.quote.model, projected=True, fit_usd=measured.fit_usd,
                           refit_usd=measured.refit_usd, items_per_second=math.inf, latency_s=measured.latency_s,
                           measured_per_item_usd=math.nan, quote=p.quote, tokens=p.tokens,
                           candidate=measured.candidate)
    return out


def analyse_costs(manifest: Manifest, results: pd.DataFrame, plan: PricingPlan,
                  accuracy: dict[str, float]) -> Costs:
    """`accuracy`: measured accuracy per strategy (a projected option carries its strategy's)."""
    date = decision_date(manifest, plan)
    opts = options(manifest, results)
    bills = {name: bill(option, plan, plan.monthly_volume, date) for name, option in opts.items()}
    live = {name: o for name, o in opts.items() if o.candidate and not bills[name].retired}
    evens = pd.DataFrame([_even_row(live[p], live[t], plan, date) for p in live if live[p].family == PROMPTED
                          for t in live if live[t].family != PROMPTED and not live[t].projected],
                         columns=BREAK_EVEN_COLUMNS)
    pair = decision_pair(live, accuracy, bills, plan)
    return Costs(date, opts, bills, evens, None if pair is None else decide(*pair, plan, date, manifest))


def _even_row(prompted: Option, trained: Option, plan: PricingPlan, date: dt.date) -> dict:
    even = break_even(prompted, trained, plan, date)
    return {"prompted": prompted.name, "trained": trained.name, "prompted_projected": prompted.projected,
            "kind": even.kind, "monthly_volume": even.monthly_volume, "cheaper_below": even.cheaper_below,
            "cheaper_above": even.cheaper_above}


def decision_pair(live: dict[str, Option], accuracy: dict[str, float], bills: dict[str, Bill],
                  plan: PricingPlan) -> tuple[Option, Option] | None:
    """The most accurate prompted strategy, on the reference API model when it was projected there (else on the
    cheapest listed API model, else as it ran), against the most accurate measured strategy of another family."""
    def ranked(family_test):
        names = [n for n, o in live.items() if family_test(o) and not o.projected]
        return sorted(names, key=lambda n: (-accuracy[live[n].strategy], bills[n].total_usd))

    prompted, trained = ranked(lambda o: o.family == PROMPTED), ranked(lambda o: o.family != PROMPTED)
    if not prompted or not trained:
        return None
    best = live[prompted[0]]
    on_api = [o for o in live.values() if o.strategy == best.strategy and o.projected]
    reference = [o for o in on_api if o.model == plan.api.reference_model]
    if best.billing != API and (reference or on_api):
        best = reference[0] if reference else min(on_api, key=lambda o: bills[o.name].total_usd)
    return best, live[trained[0]]


def decide(prompted: Option, trained: Option, plan: PricingPlan, date: dt.date, manifest: Manifest) -> Decision:
    at_plan = {o.name: bill(o, plan, plan.monthly_volume, date) for o in (prompted, trained)}
    cheaper = min(at_plan, key=lambda n: at_plan[n].total_usd)
    even = break_even(prompted, trained, plan, date)
    holds = ((0.0, MAX_VOLUME) if even.kind != "crosses" else
             (0.0, even.monthly_volume) if plan.monthly_volume < even.monthly_volume else
             (even.monthly_volume, MAX_VOLUME))
    return Decision(prompted=prompted, trained=trained, break_even=even,
                    payback_month=payback_month(at_plan[trained.name], at_plan[prompted.name], plan.horizon_months),
                    cheaper=cheaper, holds=holds,
                    new_category={o.name: new_category(o, plan, manifest) for o in (prompted, trained)},
                    sensitivity=tornado(prompted, trained, plan, date))


def new_category(option: Option, plan: PricingPlan, manifest: Manifest) -> NewCategory:
    """What one more category costs and how long it takes: label its examples, then a prompt change (prompted)
    or a retrain (trained). The refit is the new-category scenario's measured `[after]` fit when the run has
    one, else the strategy's own measured fit."""
    p, lab = plan.people, plan.labelling
    refit_usd, refit_s = option.refit_usd, _fit_seconds(manifest, option.strategy)
    adapted = manifest.strategies.get(f"{option.strategy.split('[')[0]}[after]")
    if adapted is not None:
        refit_usd, refit_s = _zero_if_nan(adapted.fit_cost_usd), _zero_if_nan(adapted.fit_seconds)
    items = by_family(lab.items_per_new_category, option.family, "pricing.labelling.items_per_new_category") \
        if lab.items_per_new_category else 0.0
    hours = p.prompt_change_hours if option.family == PROMPTED else p.retrain_hours
    work = "a prompt change" if option.family == PROMPTED else "a retrain"
    usd = items * lab.usd_per_item + hours * p.usd_per_hour + refit_usd
    elapsed = items / lab.items_per_hour + hours + refit_s / 3600.0
    return NewCategory(usd, elapsed, f"label {items:g} items, then {work} ({hours:g} h) and its refit "
                                     f"({refit_s / 60:.1f} min)")


def _base(manifest: Manifest, name: str) -> str:
    """A strategy's name in the run it came from (`compare` renames clashing ones `zero_shot@RUN`)."""
    return manifest.strategies[name].details.get("strategy_in_run", name)


def _fit_seconds(manifest: Manifest, strategy: str) -> float:
    fit = manifest.strategies.get(strategy)
    return _zero_if_nan(fit.fit_seconds) if fit else 0.0


def _zero_if_nan(value: float) -> float:
    return 0.0 if value is None or not np.isfinite(value) else float(value)
