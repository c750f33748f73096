"""Total cost of ownership: what each option costs over the horizon at a monthly volume, component by component
(people's time, labelling, compute, serving, API calls, retirements), where two options break even, and in which
month a one-off investment pays back. Every component says how it was computed, so a reader can check it."""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import numpy as np

from harness.costs.api import Quote, Tokens, per_item_usd
from harness.costs.plan import PricingPlan, by_family
from harness.strategies.base import API, PROMPTED

MAX_VOLUME = 1e9  # items a month: beyond this no break-even is looked for


@dataclass(frozen=True)
class Option:
    """One way to deploy: a measured strategy as it ran, or a prompted strategy's prompts projected onto an API
    model (`projected`: its cost is the API model's, its accuracy the run's own model's)."""

    name: str
    strategy: str
    family: str
    billing: str  # api | self_hosted
    serving_class: str  # cpu | gpu: the instance a self-hosted option needs
    model: str
    projected: bool
    fit_usd: float  # one-off: measured compute, or a provider's training price
    refit_usd: float  # one refit's compute (a retrain, or a prompted strategy's rebuilt index)
    items_per_second: float  # measured throughput, for serving capacity
    latency_s: float  # measured median latency, for serverless billing
    measured_per_item_usd: float  # as the run measured it: used for API billing without a quote
    quote: Quote | None = None
    tokens: Tokens | None = None
    candidate: bool = True  # False: shown, never recommended (a scenario's `before`)

    def retirement(self, plan: PricingPlan) -> dt.date | None:
        if self.billing != API:
            return None  # your own copy of a model never retires
        if self.model in plan.retirements:
            return plan.retirements[self.model]
        if self.quote is not None and self.quote.retires_on:
            return dt.date.fromisoformat(self.quote.retires_on)
        return None


@dataclass(frozen=True)
class Component:
    name: str
    usd: float
    how: str  # the arithmetic, in words
    recurring: bool  # True: spread over the months (a run rate); False: paid up front


@dataclass(frozen=True)
class Bill:
    option: Option
    monthly_volume: float
    components: list[Component]
    retired: bool = False  # retired before the decision date: flagged, never recommended
    retires_on: dt.date | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def total_usd(self) -> float:
        return float(sum(c.usd for c in self.components))

    def part(self, name: str) -> float:
        return float(sum(c.usd for c in self.components if c.name == name))

    @property
    def upfront_usd(self) -> float:
        return float(sum(c.usd for c in self.components if not c.recurring))

    def monthly_run_rate_usd(self, months: float) -> float:
        return float(sum(c.usd for c in self.components if c.recurring)) / months


def bill(option: Option, plan: PricingPlan, monthly_volume: float, decision_date: dt.date) -> Bill:
    """Every cost of `option` over the plan's horizon at `monthly_volume` items a month."""
    p, months, rate = plan.people, plan.horizon_months, plan.people.usd_per_hour
    prompted = option.family == PROMPTED
    override_refit = plan.lookup("retrain_cost_usd", option.strategy, option.family)
    refit = option.refit_usd if override_refit is None else override_refit
    build_hours = by_family(p.build_hours, option.family, "pricing.people.build_hours") if p.build_hours else 0.0
    parts = [Component("build", build_hours * rate, f"{build_hours:g} h x ${rate:g}/h", False),
             Component("fit", option.fit_usd, "one fit, as measured" if not option.projected else
                       "one fit of its index and prompts, as measured", False)]
    change = (p.prompt_change_hours * rate + refit) if prompted else (p.retrain_hours * rate + refit)
    change_how = (f"{p.prompt_change_hours:g} h x ${rate:g}/h + ${refit:.4g} refit" if prompted else
                  f"{p.retrain_hours:g} h x ${rate:g}/h + ${refit:.4g} compute")
    if prompted:
        n = p.prompt_changes_per_year * plan.years
        parts.append(Component("upkeep", n * change, f"{n:g} prompt changes x ({change_how})", True))
    else:
        parts.append(Component("upkeep", plan.retrains * change, f"{plan.retrains} retrains x ({change_how})", True))
    parts.append(_new_categories(option, plan, change, change_how))
    retires_on = option.retirement(plan)
    retired = retires_on is not None and retires_on <= decision_date
    if retires_on is not None and not retired and retires_on <= _add_months(decision_date, months):
        hours = p.revalidation_hours
        cost = hours * rate + (0.0 if prompted else refit)
        parts.append(Component("retirement", cost, f"{option.model} retires {retires_on}: {hours:g} h x ${rate:g}/h"
                               + ("" if prompted else f" + ${refit:.4g} retrain") + " to move to its successor", True))
    parts += _running(option, plan, monthly_volume)
    return Bill(option, monthly_volume, parts, retired=retired, retires_on=retires_on)


def _new_categories(option: Option, plan: PricingPlan, change: float, change_how: str) -> Component:
    """Each new category: label its examples, then a prompt change (prompted) or a retrain (trained). Counted at
    the expected number within the horizon (new_categories_per_year x years)."""
    lab = plan.labelling
    n = plan.new_categories_per_year * plan.years
    items = by_family(lab.items_per_new_category, option.family, "pricing.labelling.items_per_new_category") \
        if lab.items_per_new_category else 0.0
    each = items * lab.usd_per_item + change
    return Component("new categories", n * each, f"{n:g} x ({items:g} items x ${lab.usd_per_item:g} + {change_how})",
                     True)


def _running(option: Option, plan: PricingPlan, volume: float) -> list[Component]:
    """Serving and inference over the horizon, plus standing fees."""
    months, items = plan.horizon_months, volume * plan.horizon_months
    fees = plan.lookup("fixed_monthly_usd", option.strategy, option.family) or 0.0
    parts = [Component("fees", fees * months, f"${fees:g} a month x {months:g}", True)] if fees else []
    per_1k = plan.lookup("cost_per_1k_usd", option.strategy, option.family)
    if per_1k is not None:
        return parts + [Component("inference", items * per_1k / 1000, f"{items:,.0f} items x ${per_1k:g}/1k "
                                  "(override)", True)]
    if option.billing == API:
        if option.quote is None:
            per_item, how = option.measured_per_item_usd, "as billed in the run"
        else:
            per_item = per_item_usd(option.quote, option.tokens, plan.api.mode, plan.api, volume)
            how = f"{plan.api.mode.replace('_', '-')} {option.quote.model}"
        return parts + [Component("inference", items * per_item, f"{items:,.0f} items x ${per_item * 1000:.4g}/1k "
                                  f"({how})", True)]
    return parts + [_serving(option, plan, volume)]


def _serving(option: Option, plan: PricingPlan, volume: float) -> Component:
    s, months = plan.serving, plan.horizon_months
    if s.mode == "serverless":
        per_item = (option.latency_s * s.serverless_memory_gb * s.serverless_usd_per_gb_second
                    + s.serverless_usd_per_1m_requests / 1e6)
        return Component("serving", volume * months * per_item,
                         f"{volume * months:,.0f} items x ({option.latency_s * 1000:.3g} ms x "
                         f"{s.serverless_memory_gb:g} GB x ${s.serverless_usd_per_gb_second:g}/GB-s + "
                         f"${s.serverless_usd_per_1m_requests:g}/1M requests)", True)
    if not s.instances:  # a plan without serving instances prices the measured compute per item, as measured
        return Component("serving", volume * months * option.measured_per_item_usd,
                         f"{volume * months:,.0f} items x ${option.measured_per_item_usd * 1000:.4g}/1k (measured "
                         "seconds on the hardware profile; no serving instances in the plan)", True)
    name, instance = s.instance(option.serving_class)
    count = instances(volume, option.items_per_second, plan)
    share = 1.0 / s.adapters_per_gpu if option.serving_class == "gpu" else 1.0
    usd = count * instance.usd_per_hour * s.hours_per_month * months * share
    shared = f" / {s.adapters_per_gpu:g} adapters sharing it" if share < 1 else ""
    return Component("serving", usd, f"{count} x {name} (${instance.usd_per_hour:g}/h) x {s.hours_per_month:g} h x "
                     f"{months:g} months{shared}", True)


def instances(monthly_volume: float, items_per_second: float, plan: PricingPlan) -> int:
    """Always-on instances for a monthly volume: its throughput at the target utilisation, at least the minimum."""
    s = plan.serving
    if not items_per_second or not math.isfinite(items_per_second):
        return int(s.min_instances)
    capacity = items_per_second * 3600.0 * s.hours_per_month * s.target_utilisation
    return int(max(s.min_instances, math.ceil(monthly_volume / capacity - 1e-9)))


# ------------------------------------------------------------------------------------------------ break-even
@dataclass(frozen=True)
class BreakEven:
    """Where two options' totals cross. kind: "crosses" (at `monthly_volume`), "never" (one is cheaper at every
    volume up to MAX_VOLUME: `cheaper_below` == `cheaper_above`), or "equal" (the same at every volume)."""

    kind: str
    monthly_volume: float | None
    cheaper_below: str | None
    cheaper_above: str | None


def break_even(a: Option, b: Option, plan: PricingPlan, decision_date: dt.date) -> BreakEven:
    """The lowest positive volume where the totals cross. Totals are piecewise smooth in volume (instances step up,
    the cache warms), so the crossing is bracketed on a log grid and refined by bisection."""
    def gap(volume: float) -> float:
        return (bill(a, plan, volume, decision_date).total_usd - bill(b, plan, volume, decision_date).total_usd)

    grid = np.concatenate([[0.0], np.geomspace(1.0, MAX_VOLUME, 361)])
    gaps = np.array([gap(v) for v in grid])
    scale = max(1.0, float(np.abs(gaps).max()))
    signs = np.sign(np.where(np.abs(gaps) < 1e-9 * scale, 0.0, gaps))
    if not signs.any():
        return BreakEven("equal", None, None, None)
    nonzero = np.flatnonzero(signs)
    first = a.name if signs[nonzero[0]] < 0 else b.name
    flips = [(j, k) for j, k in zip(nonzero, nonzero[1:]) if signs[j] != signs[k]]  # equal-cost points between
    if not flips:
        return BreakEven("never", None, first, first)
    (j, k), before = flips[0], signs[flips[0][0]]
    low, high = grid[j], grid[k]
    for _ in range(100):
        middle = (low + high) / 2
        if np.sign(gap(middle)) == before:
            low = middle
        else:
            high = middle
    other = b.name if first == a.name else a.name
    return BreakEven("crosses", (low + high) / 2, first, other)


def payback_month(invest: Bill, alternative: Bill, months: float) -> float | None:
    """The month in which `invest` (more up front, less a month) has cost no more than `alternative` in total;
    None when it never does within the horizon."""
    extra = invest.upfront_usd - alternative.upfront_usd
    saving = alternative.monthly_run_rate_usd(months) - invest.monthly_run_rate_usd(months)
    if extra <= 0:
        return 0.0
    if saving <= 0:
        return None
    month = extra / saving
    return month if month <= months else None


def _add_months(date: dt.date, months: float) -> dt.date:
    return date + dt.timedelta(days=round(months * 365.25 / 12))
