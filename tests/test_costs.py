"""The cost model on hand-computed values: API billing modes (batch, cached prefixes above and below the
provider's minimum, a cache-write premium), serving instances from throughput, people and labelling, retirements
inside and outside the horizon, break-even and payback, and the plan's validation."""
from __future__ import annotations

import datetime as dt
import math

import litellm
import pytest
import yaml

from harness.config import compose, conf_dir
from harness.costs.api import Quote, Tokens, per_item_usd, warm_share
from harness.costs.plan import PricingPlan
from harness.costs.tco import Option, bill, break_even, instances, payback_month
from harness.errors import HarnessError

TODAY = dt.date(2026, 12, 1)
MINI = Quote(model="gpt-4o-mini", provider="openai", input=1.5e-7, output=6e-7, batch_input=7.5e-8,
             batch_output=3e-7, cache_read=7.5e-8)
HAIKU = Quote(model="claude-haiku-4-5", provider="anthropic", input=1e-6, output=5e-6, cache_read=1e-7,
              cache_write=1.25e-6)


def plan(**changes) -> PricingPlan:
    config = {"monthly_volume": 10_000, "horizon_months": 12, "retrains_per_year": 4, "new_categories_per_year": 2,
              "people": {"usd_per_hour": 90, "build_hours": {"prompted": 24, "trained": 60}, "retrain_hours": 6,
                         "prompt_change_hours": 4, "prompt_changes_per_year": 4, "revalidation_hours": 16},
              "labelling": {"usd_per_item": 0.5, "items_per_hour": 50,
                            "items_per_new_category": {"prompted": 10, "trained": 100}},
              "serving": {"instances": {"cpu": {"usd_per_hour": 0.1}, "gpu": {"usd_per_hour": 1.0}},
                          "instance_for": {"cpu": "cpu", "gpu": "gpu"}, "target_utilisation": 0.5,
                          "hours_per_month": 730},
              **changes}
    return PricingPlan.from_config(config)


def trained(name="embed_logreg", items_per_second=2.0, refit=2.0, serving_class="cpu") -> Option:
    return Option(name=name, strategy=name, family="trained", billing="self_hosted", serving_class=serving_class,
                  model="minilm", projected=False, fit_usd=refit, refit_usd=refit, items_per_second=items_per_second,
                  latency_s=0.004, measured_per_item_usd=1e-6)


def prompted_api(quote=MINI, tokens=Tokens(prompt=450, prefix=420, completion=4)) -> Option:
    return Option(name=f"rag @ {quote.model}", strategy="rag", family="prompted", billing="api", serving_class="cpu",
                  model=quote.model, projected=True, fit_usd=0.0, refit_usd=0.0, items_per_second=math.inf,
                  latency_s=0.9, measured_per_item_usd=math.nan, quote=quote, tokens=tokens)


# ------------------------------------------------------------------------------------------------ API modes
def test_batch_on_demand_and_a_prefix_below_the_providers_minimum():
    p = plan()
    long = Tokens(prompt=1000, prefix=900, completion=10)  # 900 < OpenAI's 1,024: never cached
    assert per_item_usd(MINI, long, "batch", p.api, 10_000) == pytest.approx(1000 * 7.5e-8 + 10 * 3e-7)
    on_demand = 1000 * 1.5e-7 + 10 * 6e-7
    assert per_item_usd(MINI, long, "on_demand", p.api, 10_000) == pytest.approx(on_demand)
    assert per_item_usd(MINI, long, "cached", p.api, 10_000) == pytest.approx(on_demand)


def test_a_cached_prefix_is_read_at_the_cached_price_when_the_cache_is_warm():
    p = plan()
    tokens = Tokens(prompt=2500, prefix=2000, completion=10)
    volume = 730 * 60 / 5  # one item per cache lifetime on average: warm for 1 - 1/e of items
    assert warm_share(volume, p.api) == pytest.approx(1 - math.exp(-1))
    warm = 1 - math.exp(-1)
    expected = 2000 * (warm * 7.5e-8 + (1 - warm) * 1.5e-7) + 500 * 1.5e-7 + 10 * 6e-7
    assert per_item_usd(MINI, tokens, "cached", p.api, volume) == pytest.approx(expected)
    # a busier stream keeps the cache warm for nearly every item
    busy = per_item_usd(MINI, tokens, "cached", p.api, 1e9)
    assert busy == pytest.approx(2000 * 7.5e-8 + 500 * 1.5e-7 + 10 * 6e-7, rel=1e-6)


def test_a_cache_write_premium_is_paid_on_cold_items():
    p = plan()
    tokens = Tokens(prompt=3000, prefix=2048, completion=5)
    volume = 730 * 60 / 5 * math.log(2)  # warm for exactly half the items
    assert warm_share(volume, p.api) == pytest.approx(0.5)
    expected = 2048 * (0.5 * 1e-7 + 0.5 * 1.25e-6) + 952 * 1e-6 + 5 * 5e-6
    assert per_item_usd(HAIKU, tokens, "cached", p.api, volume) == pytest.approx(expected)
    assert 2048 * 1.25e-6 > 2048 * 1e-6  # writing costs more than an uncached read: the premium


# ---------------------------------------------------------------------------------------------- serving
@pytest.mark.parametrize("volume, expected", [(0, 1), (10_000, 1), (2_628_000, 1), (2_628_001, 2), (5_256_001, 3)])
def test_always_on_instances_come_from_the_measured_throughput(volume, expected):
    # 2 items/s x 3,600 s x 730 h x 50% utilisation = 2,628,000 items a month per instance
    assert instances(volume, 2.0, plan()) == expected


def test_serving_cost_and_a_gpu_shared_by_adapters():
    p = plan()
    serving = bill(trained(), p, 10_000, TODAY).part("serving")
    assert serving == pytest.approx(1 * 0.1 * 730 * 12)
    shared = plan(serving={**_serving(), "adapters_per_gpu": 4})
    gpu = bill(trained(serving_class="gpu"), shared, 10_000, TODAY).part("serving")
    assert gpu == pytest.approx(1.0 * 730 * 12 / 4)
    serverless = plan(serving={**_serving(), "mode": "serverless", "serverless_usd_per_gb_second": 1.6e-5,
                               "serverless_memory_gb": 2, "serverless_usd_per_1m_requests": 0.2})
    per_item = 0.004 * 2 * 1.6e-5 + 0.2 / 1e6
    assert bill(trained(), serverless, 10_000, TODAY).part("serving") == pytest.approx(10_000 * 12 * per_item)


def _serving() -> dict:
    return {"instances": {"cpu": {"usd_per_hour": 0.1}, "gpu": {"usd_per_hour": 1.0}},
            "instance_for": {"cpu": "cpu", "gpu": "gpu"}, "target_utilisation": 0.5, "hours_per_month": 730}


# ----------------------------------------------------------------------------------------- people, labels
def test_people_and_labelling_totals():
    b = bill(trained(refit=2.0), plan(), 10_000, TODAY)
    assert b.part("build") == pytest.approx(60 * 90)
    assert b.part("upkeep") == pytest.approx(4 * (6 * 90 + 2.0))  # 4 retrains a year x 1 year
    assert b.part("new categories") == pytest.approx(2 * (100 * 0.5 + 6 * 90 + 2.0))
    p = bill(prompted_api(), plan(), 10_000, TODAY)
    assert p.part("build") == pytest.approx(24 * 90)
    assert p.part("upkeep") == pytest.approx(4 * 4 * 90)  # prompt changes
    assert p.part("new categories") == pytest.approx(2 * (10 * 0.5 + 4 * 90))
    assert p.part("inference") == pytest.approx(10_000 * 12 * (450 * 1.5e-7 + 4 * 6e-7))  # 420 < 1,024: on demand
    two_years = bill(trained(refit=2.0), plan(horizon_months=24), 10_000, TODAY)
    assert two_years.part("upkeep") == pytest.approx(8 * (6 * 90 + 2.0))


def test_a_retirement_inside_the_horizon_is_a_move_and_outside_it_nothing():
    p = plan()
    inside = bill(prompted_api(Quote(**{**MINI.__dict__, "retires_on": "2027-01-14"})), p, 10_000, TODAY)
    assert inside.part("retirement") == pytest.approx(16 * 90) and not inside.retired
    outside = bill(prompted_api(Quote(**{**MINI.__dict__, "retires_on": "2028-06-01"})), p, 10_000, TODAY)
    assert outside.part("retirement") == 0 and not outside.retired
    gone = bill(prompted_api(Quote(**{**MINI.__dict__, "retires_on": "2026-10-23"})), p, 10_000, TODAY)
    assert gone.retired and gone.part("retirement") == 0
    listed = plan(retirements={"gpt-4o-mini": "2026-12-15"})  # the config dates what the map lacks
    assert bill(prompted_api(), listed, 10_000, TODAY).part("retirement") == pytest.approx(16 * 90)


# ------------------------------------------------------------------------------------- break-even, payback
def test_break_even_is_the_volume_a_reader_computes_by_hand():
    p = plan()
    a, t = prompted_api(), trained(items_per_second=200.0)  # one instance serves up to 262.8M items a month
    per_item = 450 * 1.5e-7 + 4 * 6e-7
    upfront_gap = (bill(t, p, 0, TODAY).total_usd - bill(a, p, 0, TODAY).total_usd)  # trained's fixed costs, less
    expected = upfront_gap / (12 * per_item)
    even = break_even(a, t, p, TODAY)
    assert even.kind == "crosses" and even.monthly_volume == pytest.approx(expected, rel=1e-6)
    assert (even.cheaper_below, even.cheaper_above) == (a.name, t.name)
    total_a = bill(a, p, even.monthly_volume, TODAY).total_usd
    assert total_a == pytest.approx(bill(t, p, even.monthly_volume, TODAY).total_usd, rel=1e-6)
    # slower serving needs more instances as volume grows, so the lines meet later
    slow = break_even(a, trained(items_per_second=2.0), p, TODAY)
    assert slow.monthly_volume > even.monthly_volume
    assert instances(slow.monthly_volume, 2.0, p) >= 3


def test_options_that_never_cross_and_payback():
    p = plan()
    dear = prompted_api(Quote(model="big", provider="openai", input=1e-3, output=1e-3))
    never = break_even(trained(), trained("other", refit=50.0), p, TODAY)
    assert (never.kind, never.cheaper_below, never.cheaper_above) == ("never", "embed_logreg", "embed_logreg")
    t, a = bill(trained(), p, 10_000, TODAY), bill(dear, p, 10_000, TODAY)
    month = payback_month(t, a, 12)
    assert month == pytest.approx((t.upfront_usd - a.upfront_usd)
                                  / (a.monthly_run_rate_usd(12) - t.monthly_run_rate_usd(12)))
    assert 0 < month < 12
    cheap = bill(prompted_api(), p, 10_000, TODAY)
    assert payback_month(t, cheap, 12) is None  # the API calls are too cheap for the extra build to pay back


# -------------------------------------------------------------------------------------------- the plan
def test_the_default_pricing_file_is_a_valid_plan_with_every_assumption_sourced():
    from omegaconf import OmegaConf

    priced = PricingPlan.from_config(OmegaConf.to_container(compose([]).pricing))
    assert priced.monthly_volume > 0 and priced.people.usd_per_hour > 0 and priced.serving.instances
    for key in ("people.usd_per_hour", "labelling.usd_per_item", "people.build_hours", "serving.target_utilisation"):
        assert key in priced.assumptions


def test_the_shipped_projection_lists_no_retired_model():
    models = yaml.safe_load((conf_dir() / "projection" / "api_models.yaml").read_text())["models"]
    assert models
    for spec in models:
        key = litellm.get_model_info(model=spec["name"])["key"]
        retires = litellm.model_cost[key].get("deprecation_date")
        assert retires is None or dt.date.fromisoformat(retires) > dt.date.today(), spec["name"]


@pytest.mark.parametrize("changes, message", [
    ({"volume": 5}, "no pricing key 'pricing.volume'; known: monthly_volume"),
    ({"monthly_volume": None}, "pricing.monthly_volume' is required"),
    ({"horizon_months": 0}, "'pricing.horizon_months' must be > 0"),
    ({"retrains_per_year": -1}, "'pricing.retrains_per_year' must be >= 0"),
    ({"monthly_budget_usd": "lots"}, "'pricing.monthly_budget_usd' must be a number"),
    ({"fixed_monthly_usd": {"trained": -5}}, "'pricing.fixed_monthly_usd.trained' must be >= 0"),
    ({"api": {"mode": "cheap"}}, "'pricing.api.mode': no mode 'cheap'; known: on_demand, cached, batch"),
    ({"people": {"hourly": 5}}, "no pricing key 'pricing.people.hourly'; known: usd_per_hour"),
    ({"decision_date": "next week"}, "'pricing.decision_date' must be a date"),
    ({"serving": {"target_utilisation": 1.5}}, "target_utilisation' must be at most 1"),
])
def test_bad_pricing_is_refused_naming_the_key(changes, message):
    with pytest.raises(HarnessError, match=message.replace("(", r"\(")):
        plan(**changes)
