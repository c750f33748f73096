"""The pricing plan (conf/pricing/): what a decision is priced at. Volume and horizon; how API calls are billed
(on demand, with prompt caching, or through a batch API); how a self-hosted model is served (always-on
instances or serverless); people's time and labelling; retirements; and standing fees or overrides. Every
uncertain default is an assumption with a source, listed in `assumptions` and shown in the report.

Tables keyed by family (`build_hours`, `items_per_new_category`, ...) take a strategy's family, else `default`.
The override tables (`fixed_monthly_usd`, `retrain_cost_usd`, `cost_per_1k_usd`) map a strategy name, its base
name (before '[', e.g. `embed_logreg` for `embed_logreg[n=5,seed=0]`) or a family to USD; the most specific
key wins."""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from harness.errors import HarnessError

API_MODES = ("on_demand", "cached", "batch")
SERVING_MODES = ("always_on", "serverless")
DEFAULT = "default"


def _number(key: str, value, *, positive: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise HarnessError(f"config key '{key}' must be a number, got {value!r}") from None
    if not number >= 0 or (positive and number == 0):  # `not >=` also refuses NaN
        raise HarnessError(f"config key '{key}' must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return number


def _mapping(key: str, node, known: tuple[str, ...]) -> dict:
    node = dict(node or {})
    unknown = sorted(set(node) - set(known))
    if unknown:
        raise HarnessError(f"no pricing key '{key}.{unknown[0]}'; known: {', '.join(known)}")
    return node


def _table(key: str, node) -> dict[str, float]:
    return {str(k): _number(f"{key}.{k}", v) for k, v in dict(node or {}).items()}


def by_family(table: Mapping[str, float], family: str, key: str) -> float:
    """A family's entry of a family-keyed table, else its `default`."""
    if family in table:
        return table[family]
    if DEFAULT in table:
        return table[DEFAULT]
    raise HarnessError(f"config key '{key}' has no entry for family '{family}' and no '{DEFAULT}'; "
                       f"known: {', '.join(table)}")


@dataclass(frozen=True)
class ApiBilling:
    """How API calls are billed. `cached`: on-demand calls whose shared prefix (the system prompt) is read from
    the provider's prompt cache when it is at least the provider's minimum cacheable length; the share of items
    that find the cache warm comes from the volume (items arriving at random over `active_hours_per_month`, a
    cached prefix living `cache_ttl_minutes`)."""

    mode: str = "cached"
    cache_ttl_minutes: float = 5.0
    active_hours_per_month: float = 730.0
    min_cached_prefix_tokens: dict[str, float] = field(default_factory=lambda: {DEFAULT: 1024.0})
    reference_model: str | None = None  # the API model a team would buy: the decision's prompted line

    def min_prefix(self, provider: str) -> float:
        table = self.min_cached_prefix_tokens
        return table.get(provider, table.get(DEFAULT, math.inf))


@dataclass(frozen=True)
class Instance:
    usd_per_hour: float
    source: str = ""


@dataclass(frozen=True)
class Serving:
    """How a self-hosted model is served. `always_on`: instances up whether or not items arrive, as many as the
    measured throughput needs at `target_utilisation` (at least `min_instances`); a GPU instance serving LLM
    adapters is shared by `adapters_per_gpu` of them. `serverless`: billed per GB-second of measured latency and
    per request."""

    mode: str = "always_on"
    instances: dict[str, Instance] = field(default_factory=dict)
    instance_for: dict[str, str] = field(default_factory=dict)  # serving class (cpu, gpu) -> instance name
    min_instances: float = 1.0
    target_utilisation: float = 0.5
    hours_per_month: float = 730.0
    adapters_per_gpu: float = 1.0
    serverless_usd_per_gb_second: float = 0.0
    serverless_memory_gb: float = 2.0
    serverless_usd_per_1m_requests: float = 0.0

    def instance(self, serving_class: str) -> tuple[str, Instance]:
        name = self.instance_for.get(serving_class) or self.instance_for.get(DEFAULT)
        if name not in self.instances:
            raise HarnessError(f"config key 'pricing.serving.instance_for.{serving_class}' names instance "
                               f"'{name}'; known: {', '.join(self.instances) or '(none)'}")
        return name, self.instances[name]


@dataclass(frozen=True)
class People:
    usd_per_hour: float = 0.0
    build_hours: dict[str, float] = field(default_factory=dict)  # by family: the initial build
    retrain_hours: float = 0.0  # one retrain: refresh data, train, validate, deploy
    prompt_change_hours: float = 0.0  # one prompt change: edit, re-run the gate
    prompt_changes_per_year: float = 0.0
    revalidation_hours: float = 0.0  # a retired model's successor: re-run the evaluation, adjust, deploy


@dataclass(frozen=True)
class Labelling:
    usd_per_item: float = 0.0
    items_per_hour: float = 60.0
    items_per_new_category: dict[str, float] = field(default_factory=dict)  # by family


_TOP = ("monthly_volume", "horizon_months", "retrains_per_year", "new_categories_per_year", "monthly_budget_usd",
        "decision_date", "api", "serving", "people", "labelling", "retirements", "fixed_monthly_usd",
        "retrain_cost_usd", "cost_per_1k_usd", "assumptions")
_OVERRIDES = ("fixed_monthly_usd", "retrain_cost_usd", "cost_per_1k_usd")


@dataclass(frozen=True)
class PricingPlan:
    monthly_volume: float
    horizon_months: float
    retrains_per_year: float = 0.0
    new_categories_per_year: float = 0.0
    monthly_budget_usd: float | None = None
    decision_date: dt.date | None = None  # retirements are counted from here; None: the run's start date
    api: ApiBilling = field(default_factory=ApiBilling)
    serving: Serving = field(default_factory=Serving)
    people: People = field(default_factory=People)
    labelling: Labelling = field(default_factory=Labelling)
    retirements: dict[str, dt.date] = field(default_factory=dict)  # model -> date, for models litellm lacks
    fixed_monthly_usd: dict[str, float] = field(default_factory=dict)
    retrain_cost_usd: dict[str, float] = field(default_factory=dict)
    cost_per_1k_usd: dict[str, float] = field(default_factory=dict)
    assumptions: dict[str, str] = field(default_factory=dict)  # dotted key -> its source

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "PricingPlan":
        c = _mapping("pricing", config, _TOP)
        for key in ("monthly_volume", "horizon_months"):
            if c.get(key) is None:
                raise HarnessError(f"config key 'pricing.{key}' is required")
        budget = c.get("monthly_budget_usd")
        return cls(
            monthly_volume=_number("pricing.monthly_volume", c["monthly_volume"]),
            horizon_months=_number("pricing.horizon_months", c["horizon_months"], positive=True),
            retrains_per_year=_number("pricing.retrains_per_year", c.get("retrains_per_year", 0)),
            new_categories_per_year=_number("pricing.new_categories_per_year", c.get("new_categories_per_year", 0)),
            monthly_budget_usd=None if budget is None else _number("pricing.monthly_budget_usd", budget),
            decision_date=_date("pricing.decision_date", c.get("decision_date")),
            api=_api(c.get("api")), serving=_serving(c.get("serving")), people=_people(c.get("people")),
            labelling=_labelling(c.get("labelling")),
            retirements={str(k): _date(f"pricing.retirements.{k}", v) for k, v in (c.get("retirements") or {}).items()},
            **{key: _table(f"pricing.{key}", c.get(key)) for key in _OVERRIDES},
            assumptions={str(k): str(v) for k, v in (c.get("assumptions") or {}).items()})

    @property
    def years(self) -> float:
        return self.horizon_months / 12.0

    @property
    def retrains(self) -> int:
        """Scheduled retrains completed within the horizon (the first fit is counted apart, as the one-off fit)."""
        return int(math.floor(self.retrains_per_year * self.years + 1e-9))

    def lookup(self, table: str, strategy: str, family: str) -> float | None:
        entries = getattr(self, table)
        for key in (strategy, strategy.split("[")[0], family):
            if key in entries:
                return entries[key]
        return None


def _date(key: str, value) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise HarnessError(f"config key '{key}' must be a date (YYYY-MM-DD), got {value!r}") from None


def _choice(key: str, value, known: tuple[str, ...]) -> str:
    if value not in known:
        raise HarnessError(f"config key '{key}': no mode '{value}'; known: {', '.join(known)}")
    return value


def _api(node) -> ApiBilling:
    known = tuple(f.name for f in fields(ApiBilling))
    n = _mapping("pricing.api", node, known)
    base = ApiBilling()
    return ApiBilling(
        mode=_choice("pricing.api.mode", n.get("mode", base.mode), API_MODES),
        cache_ttl_minutes=_number("pricing.api.cache_ttl_minutes", n.get("cache_ttl_minutes", base.cache_ttl_minutes),
                                  positive=True),
        active_hours_per_month=_number("pricing.api.active_hours_per_month",
                                       n.get("active_hours_per_month", base.active_hours_per_month), positive=True),
        min_cached_prefix_tokens=_table("pricing.api.min_cached_prefix_tokens",
                                        n.get("min_cached_prefix_tokens") or base.min_cached_prefix_tokens),
        reference_model=n.get("reference_model"))


def _serving(node) -> Serving:
    known = tuple(f.name for f in fields(Serving))
    n = _mapping("pricing.serving", node, known)
    instances = {}
    for name, spec in (n.get("instances") or {}).items():
        spec = _mapping(f"pricing.serving.instances.{name}", spec, ("usd_per_hour", "source"))
        instances[str(name)] = Instance(_number(f"pricing.serving.instances.{name}.usd_per_hour",
                                                spec.get("usd_per_hour")), str(spec.get("source") or ""))
    numbers = {f.name: _number(f"pricing.serving.{f.name}", n[f.name], positive=f.name in (
                   "target_utilisation", "hours_per_month", "adapters_per_gpu"))
               for f in fields(Serving) if f.name in n and f.type in ("float",)}
    if numbers.get("target_utilisation", 0.5) > 1:
        raise HarnessError("config key 'pricing.serving.target_utilisation' must be at most 1, "
                           f"got {numbers['target_utilisation']}")
    return Serving(mode=_choice("pricing.serving.mode", n.get("mode", "always_on"), SERVING_MODES),
                   instances=instances, instance_for={str(k): str(v) for k, v in (n.get("instance_for") or {}).items()},
                   **numbers)


def _people(node) -> People:
    n = _mapping("pricing.people", node, tuple(f.name for f in fields(People)))
    return People(**{key: _table(f"pricing.people.{key}", value) if key == "build_hours"
                     else _number(f"pricing.people.{key}", value) for key, value in n.items()})


def _labelling(node) -> Labelling:
    n = _mapping("pricing.labelling", node, tuple(f.name for f in fields(Labelling)))
    return Labelling(**{key: _table(f"pricing.labelling.{key}", value) if key == "items_per_new_category"
                        else _number(f"pricing.labelling.{key}", value, positive=key == "items_per_hour")
                        for key, value in n.items()})
