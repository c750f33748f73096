"""Total cost of ownership and break-even algebra on constructed costs."""
from __future__ import annotations

import pytest

from harness.costs.plan import BreakEven, CostLine, PricingPlan, break_even, cost_line
from harness.errors import HarnessError


def plan(**changes) -> PricingPlan:
    config = {"monthly_volume": 10_000, "horizon_months": 12, "retrains_per_year": 4, **changes}
    return PricingPlan.from_config(config)


def line(name: str, upfront: float, per_item: float, horizon: float = 12) -> CostLine:
    return CostLine(strategy=name, family="trained", fit_usd=upfront, retrains=0, retrain_usd=0.0,
                    fixed_monthly_usd=0.0, cost_per_item_usd=per_item, horizon_months=horizon)


def test_the_default_pricing_file_is_a_valid_plan(tiny_cfg):
    from omegaconf import OmegaConf

    cfg = tiny_cfg()
    priced = PricingPlan.from_config(OmegaConf.to_container(cfg.pricing))
    assert priced.monthly_volume > 0 and priced.horizon_months > 0


def test_total_cost_is_fit_plus_retrains_plus_fees_plus_volume():
    p = plan(fixed_monthly_usd={"trained": 50.0}, retrain_cost_usd={"embed_logreg": 2.0})
    cost = cost_line("embed_logreg[n=5,seed=0]", "trained", fit_cost_usd=3.0, cost_per_1k_usd=0.4, plan=p)
    assert p.retrains == 4
    # 3 + 4 x 2 + 50 x 12 + 10,000 x 12 x 0.0004
    assert cost.total_usd(10_000) == pytest.approx(3 + 8 + 600 + 48)
    assert cost.upfront_usd == pytest.approx(611)
    assert cost.usd_per_monthly_item == pytest.approx(12 * 0.0004)


def test_overrides_prefer_the_strategy_then_its_base_name_then_its_family():
    p = plan(cost_per_1k_usd={"prompted": 1.0, "rag": 2.0, "rag[k=5]": 3.0})
    assert p.lookup("cost_per_1k_usd", "rag[k=5]", "prompted") == 3.0
    assert p.lookup("cost_per_1k_usd", "rag[k=9]", "prompted") == 2.0
    assert p.lookup("cost_per_1k_usd", "zero_shot", "prompted") == 1.0
    assert p.lookup("cost_per_1k_usd", "tfidf_logreg", "trained") is None
    measured = cost_line("tfidf_logreg", "trained", fit_cost_usd=1.0, cost_per_1k_usd=0.5, plan=p)
    assert (measured.retrain_usd, measured.cost_per_item_usd) == (1.0, 0.0005)


@pytest.mark.parametrize("horizon, per_year, retrains", [(12, 4, 4), (18, 4, 6), (6, 1, 0), (24, 12, 24)])
def test_only_whole_retrains_within_the_horizon_count(horizon, per_year, retrains):
    assert plan(horizon_months=horizon, retrains_per_year=per_year).retrains == retrains


def test_lines_that_cross_break_even_at_the_closed_form_volume():
    prompted = line("zero_shot", upfront=0.0, per_item=0.002)
    trained = line("finetune", upfront=600.0, per_item=0.0002)
    even = break_even(prompted, trained)
    # 0 + 12 * 0.002 V = 600 + 12 * 0.0002 V  =>  V = 600 / (12 * 0.0018)
    assert even.kind == "crosses"
    assert even.monthly_volume == pytest.approx(600 / (12 * 0.0018))
    assert (even.cheaper_below, even.cheaper_above) == ("zero_shot", "finetune")
    assert prompted.total_usd(even.monthly_volume) == pytest.approx(trained.total_usd(even.monthly_volume))
    assert break_even(trained, prompted).monthly_volume == pytest.approx(even.monthly_volume)


def test_lines_that_never_cross():
    cheap = line("cheap", upfront=10.0, per_item=0.001)
    dear = line("dear", upfront=20.0, per_item=0.002)
    assert break_even(cheap, dear) == BreakEven("never", None, "cheap", "cheap")
    assert break_even(dear, cheap) == BreakEven("never", None, "cheap", "cheap")
    parallel = break_even(line("a", 5.0, 0.001), line("b", 7.0, 0.001))
    assert (parallel.kind, parallel.cheaper_below, parallel.monthly_volume) == ("never", "a", None)
    at_zero = break_even(line("flat", 5.0, 0.001), line("steep", 5.0, 0.003))
    assert (at_zero.kind, at_zero.cheaper_above) == ("never", "flat")


def test_equal_lines_cost_the_same_everywhere():
    even = break_even(line("a", 5.0, 0.001), line("b", 5.0, 0.001))
    assert (even.kind, even.monthly_volume, even.cheaper_below) == ("equal", None, None)


@pytest.mark.parametrize("changes, message", [
    ({"volume": 5}, "no pricing key 'volume'; known: cost_per_1k_usd"),
    ({"monthly_volume": None}, "pricing.monthly_volume' is required"),
    ({"horizon_months": 0}, "horizon_months must be > 0"),
    ({"retrains_per_year": -1}, "'pricing.retrains_per_year' must be >= 0"),
    ({"monthly_budget_usd": "lots"}, "'pricing.monthly_budget_usd' must be a number"),
    ({"fixed_monthly_usd": {"trained": -5}}, "'pricing.fixed_monthly_usd.trained' must be >= 0"),
])
def test_bad_pricing_is_refused_naming_the_key(changes, message):
    with pytest.raises(HarnessError, match=message.replace("(", r"\(")):
        plan(**changes)
