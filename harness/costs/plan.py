"""The pricing plan (volume, horizon, retraining, fees), each strategy's total cost of ownership as a line in
monthly volume, and the break-even volume between two strategies."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.errors import HarnessError

_PLAN_NUMBERS = ("monthly_volume", "horizon_months", "retrains_per_year")
_PLAN_TABLES = ("fixed_monthly_usd", "retrain_cost_usd", "cost_per_1k_usd")


@dataclass(frozen=True)
class PricingPlan:
    """What a decision is priced at (conf/pricing/): volume, horizon, retraining, standing fees, overrides.

    The three tables map a strategy name, a strategy's base name (before '[', e.g. `embed_logreg` for
    `embed_logreg[n=5,seed=0]`) or a family (prompted, trained) to USD; the most specific key wins."""

    monthly_volume: float
    horizon_months: float
    retrains_per_year: float = 0.0
    monthly_budget_usd: float | None = None
    fixed_monthly_usd: dict = field(default_factory=dict)
    retrain_cost_usd: dict = field(default_factory=dict)
    cost_per_1k_usd: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: dict) -> "PricingPlan":
        config = dict(config or {})
        known = (*_PLAN_NUMBERS, "monthly_budget_usd", *_PLAN_TABLES)
        for key in config:
            if key not in known:
                raise HarnessError(f"no pricing key '{key}'; known: {', '.join(sorted(known))}")
        for key in _PLAN_NUMBERS:
            if key not in config or config[key] is None:
                raise HarnessError(f"config key 'pricing.{key}' is required")
        values = {key: _non_negative(f"pricing.{key}", config[key]) for key in _PLAN_NUMBERS}
        if values["horizon_months"] == 0:
            raise HarnessError("pricing.horizon_months must be > 0")
        budget = config.get("monthly_budget_usd")
        tables = {key: {str(k): _non_negative(f"pricing.{key}.{k}", v) for k, v in (config.get(key) or {}).items()}
                  for key in _PLAN_TABLES}
        return cls(**values, monthly_budget_usd=None if budget is None else
                   _non_negative("pricing.monthly_budget_usd", budget), **tables)

    @property
    def retrains(self) -> int:
        """Retrains completed within the horizon (the first fit is counted apart, as the one-off fit)."""
        return int(math.floor(self.retrains_per_year * self.horizon_months / 12.0 + 1e-9))

    def lookup(self, table: str, strategy: str, family: str) -> float | None:
        entries = getattr(self, table)
        for key in (strategy, strategy.split("[")[0], family):
            if key in entries:
                return entries[key]
        return None


@dataclass(frozen=True)
class CostLine:
    """A strategy's total cost over the horizon as a straight line in monthly volume V:
    total_usd(V) = upfront_usd + usd_per_monthly_item * V."""

    strategy: str
    family: str
    fit_usd: float
    retrains: int
    retrain_usd: float
    fixed_monthly_usd: float
    cost_per_item_usd: float
    horizon_months: float

    @property
    def upfront_usd(self) -> float:
        """Everything that does not grow with volume: one-off fit, retrains, standing fees."""
        return self.fit_usd + self.retrains * self.retrain_usd + self.fixed_monthly_usd * self.horizon_months

    @property
    def usd_per_monthly_item(self) -> float:
        """What one more item a month adds over the horizon."""
        return self.cost_per_item_usd * self.horizon_months

    def total_usd(self, monthly_volume: float) -> float:
        return self.upfront_usd + self.usd_per_monthly_item * monthly_volume


def cost_line(strategy: str, family: str, *, fit_cost_usd: float, cost_per_1k_usd: float,
              plan: PricingPlan) -> CostLine:
    """The strategy's measured fit and inference costs, with the plan's overrides and fees applied."""
    retrain = plan.lookup("retrain_cost_usd", strategy, family)
    per_1k = plan.lookup("cost_per_1k_usd", strategy, family)
    return CostLine(strategy=strategy, family=family, fit_usd=fit_cost_usd, retrains=plan.retrains,
                    retrain_usd=fit_cost_usd if retrain is None else retrain,
                    fixed_monthly_usd=plan.lookup("fixed_monthly_usd", strategy, family) or 0.0,
                    cost_per_item_usd=(cost_per_1k_usd if per_1k is None else per_1k) / 1000.0,
                    horizon_months=plan.horizon_months)


@dataclass(frozen=True)
class BreakEven:
    """Where two cost lines cross. kind: "crosses" (at `monthly_volume`), "never" (one is cheaper at every
    positive volume: `cheaper_below` == `cheaper_above`), or "equal" (the same cost at every volume)."""

    kind: str
    monthly_volume: float | None
    cheaper_below: str | None
    cheaper_above: str | None


def break_even(a: CostLine, b: CostLine) -> BreakEven:
    """Closed form: a.upfront + a.slope * V = b.upfront + b.slope * V
    =>  V = (b.upfront - a.upfront) / (a.slope - b.slope), where slope = usd_per_monthly_item."""
    d_slope = a.usd_per_monthly_item - b.usd_per_monthly_item
    d_upfront = b.upfront_usd - a.upfront_usd
    if math.isclose(a.usd_per_monthly_item, b.usd_per_monthly_item, rel_tol=1e-9, abs_tol=0.0):
        if math.isclose(a.upfront_usd, b.upfront_usd, rel_tol=1e-9, abs_tol=0.0):
            return BreakEven("equal", None, None, None)
        cheaper = a.strategy if a.upfront_usd < b.upfront_usd else b.strategy
        return BreakEven("never", None, cheaper, cheaper)
    volume = d_upfront / d_slope
    lower_slope = a.strategy if d_slope < 0 else b.strategy
    if volume <= 0:  # they cross at zero or negative volume: the flatter line is cheaper at every real volume
        return BreakEven("never", None, lower_slope, lower_slope)
    lower_upfront = b.strategy if lower_slope == a.strategy else a.strategy
    return BreakEven("crosses", volume, lower_upfront, lower_slope)


def _non_negative(key: str, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise HarnessError(f"config key '{key}' must be a number, got {value!r}") from None
    if not number >= 0:  # also refuses NaN
        raise HarnessError(f"config key '{key}' must be >= 0, got {value!r}")
    return number
