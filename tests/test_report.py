"""The decision report: files a run produces, re-pricing from records alone, the recommendation on constructed
results, escaping and self-containment of report.html."""
from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.errors import HarnessError
from harness.cli import main
from harness.report import build
from harness.run.directory import RunDir
from tests.runs import ITEMS, PLAN, outcomes, write_run

PAYLOAD = '<script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2">'


@pytest.fixture(scope="module")
def decision_run(tmp_path_factory) -> Path:
    """A prompted strategy that is cheap to start and dear per item, against a trained one that is the reverse:
    zero_shot 90% at $2 per 1k; finetune 93% at $0.10 per 1k after a $300 fit."""
    root = tmp_path_factory.mktemp("decision")
    return write_run(root, {
        "zero_shot": {"pred": outcomes(ITEMS, 20), "family": "prompted", "cost_usd": 0.002, "latency_ms": 400},
        "finetune": {"pred": outcomes(ITEMS, 14), "family": "trained", "cost_usd": 0.0001,
                     "fit_cost_usd": 300.0, "latency_ms": 5},
    }, ITEMS)


# -------------------------------------------------------------------------------------------- a real run
@pytest.fixture(scope="module")
def classic_run(tmp_path_factory, tiny_csv) -> Path:
    from harness.config import compose
    from tests.conftest import run
    from tests.conftest import tiny_overrides

    tmp = tmp_path_factory.mktemp("classic")
    return run(compose(["experiment=classic", *tiny_overrides(tiny_csv, tmp)]))


@pytest.mark.slow  # a real run of the three classic strategies (loads the sentence encoder)
def test_a_run_writes_every_report_and_chart(classic_run):
    for name in ("report.html", "report.md", "summary.pdf", "results.csv", "total_cost.csv", "break_even.csv",
                 "significance.csv", "per_class.csv"):
        assert (classic_run / name).stat().st_size > 0, name
    results = pd.read_csv(classic_run / "results.csv")
    charts = ["accuracy_cost", "total_cost", "latency", "per_class_f1"]
    charts += ["confusions"] if results["accuracy"].max() < 1 else []  # the best strategy's mistakes
    charts += ["reliability", "coverage"]  # the trained strategies score their answers: calibration, abstention
    assert sorted(path.stem for path in (classic_run / "charts").glob("*.png")) == sorted(charts)
    for key in charts:
        assert (classic_run / "charts" / f"{key}.png").read_bytes()[:4] == b"\x89PNG"
        assert b"<svg" in (classic_run / "charts" / f"{key}.svg").read_bytes()[:2000]
    pdf = (classic_run / "summary.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type /Page\b", pdf)) == 1
    assert list(results["family"]) == ["trained"] * 3
    assert (results["macro_f1_ci_low"] <= results["macro_f1"]).all()
    assert (results["macro_f1"] <= results["macro_f1_ci_high"]).all()
    assert len(pd.read_csv(classic_run / "significance.csv")) == 3
    assert "## Recommendation" in (classic_run / "report.md").read_text()


@pytest.mark.slow  # a real run of the three classic strategies (loads the sentence encoder)
def test_report_reprices_from_records_without_loading_a_model(classic_run):
    code = ("import sys; from harness.cli import main; "
            f"rc = main(['report', {str(classic_run)!r}, 'pricing.monthly_volume=50000', "
            "'pricing.horizon_months=24']); "
            "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers', 'litellm') if m in sys.modules]; "
            "print('heavy:', heavy); sys.exit(rc or bool(heavy))")
    before = pd.read_csv(classic_run / "total_cost.csv").set_index("option")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    total = pd.read_csv(classic_run / "total_cost.csv").set_index("option")
    assert (total["monthly_volume"] == 50_000).all() and (total["horizon_months"] == 24).all()
    assert (total["upkeep_usd"] > before["upkeep_usd"]).all()  # 8 retrains over 24 months instead of 4
    assert total["serving_usd"].tolist() == pytest.approx((2 * before["serving_usd"]).tolist())  # twice as long
    assert "50,000 items a month over 24 months" in (classic_run / "report.html").read_text()
    # every assumption re-prices too, without a model: people's rate scales the build exactly
    assert main(["report", str(classic_run), "pricing.people.usd_per_hour=180"]) == 0
    doubled = pd.read_csv(classic_run / "total_cost.csv").set_index("option")
    assert doubled["build_usd"].tolist() == pytest.approx((2 * before["build_usd"]).tolist())


def test_report_refuses_overrides_other_than_pricing(decision_run):
    with pytest.raises(HarnessError, match="only pricing and the decision rule can change"):
        build(decision_run, ["dataset.heldout_size=5"])
    with pytest.raises(HarnessError, match="no pricing key 'pricing.volume'"):
        build(decision_run, ["pricing.volume=5"])


# ------------------------------------------------------------------------------------- the recommendation
def test_recommendation_on_a_run_with_a_known_answer(decision_run):
    build(decision_run)
    html = (decision_run / "report.html").read_text()
    # finetune: 93.0%, $300 + 4 x $300 + 120,000 x $0.0001 = $1,512; zero_shot: 90.0%, 120,000 x $0.002 = $240
    assert "the most accurate strategy is finetune (trained): 93.0% accurate" in html
    assert "$1,512 in total" in html
    # break-even: 1,500 + 12 x 0.0001 V = 12 x 0.002 V  =>  V = 1,500 / 0.0228 = 65,789
    assert "break even at 65,789 items a month: below that zero_shot costs less" in html
    evens = pd.read_csv(decision_run / "break_even.csv")
    assert evens.loc[0, "monthly_volume"] == pytest.approx(1500 / (12 * 0.0019))
    build(decision_run, ["pricing.monthly_budget_usd=50"])
    html = (decision_run / "report.html").read_text()
    assert "the most accurate strategy within the $50.00 monthly budget is zero_shot" in html
    assert "finetune scores higher (93.0% accurate) but averages $126 a month, over budget." in html


def test_retrain_and_projection_tables_are_in_both_reports(tmp_path):
    run = write_run(tmp_path, {
        "zero_shot": {"pred": outcomes(ITEMS, 20), "family": "prompted", "cost_usd": 0.002},
        "finetune": {"pred": outcomes(ITEMS, 14), "family": "trained", "fit_cost_usd": 0.25,
                     "info": {"n_train": 8000}}}, ITEMS)
    RunDir.open(run).update_manifest(projection=[projected("zero_shot", prompt=421.0, completion=4.2)])
    build(run)
    # 421 x $0.15/1M + 4.2 x $0.60/1M = $0.06567 per 1,000 on demand; 421 < 1,024 prefix tokens: no caching
    for name in ("report.md", "report.html"):
        text = (run / name).read_text()
        assert "What one retrain costs (trained strategies)" in text, name
        assert "Projected API cost (a projection, not measured)" in text, name
        assert "0.0657" in text and "421 / 400 / 4.2" in text and "8000" in text, name
        assert "below openai&#39;s minimum cacheable" in text or "below openai's minimum cacheable" in text
    total = pd.read_csv(run / "total_cost.csv").set_index("option")
    assert bool(total.loc["zero_shot @ gpt-4o-mini", "projected"])
    assert total.loc["zero_shot @ gpt-4o-mini", "inference_usd"] == pytest.approx(120_000 * 0.06567 / 1000)


def projected(strategy: str, *, model="gpt-4o-mini", prompt=450.0, prefix=400.0, completion=4.0,
              retires_on=None, own_model=False) -> dict:
    """A manifest projection row: gpt-4o-mini's published prices (litellm's offline map)."""
    return {"strategy": strategy, "n": 200, "tokenizer": "o200k_base", "measured_model": "local-model",
            "own_model": own_model, "tokens": {"prompt": prompt, "prefix": prefix, "completion": completion},
            "quote": {"model": model, "provider": "openai", "input": 1.5e-7, "output": 6e-7, "batch_input": 7.5e-8,
                      "batch_output": 3e-7, "cache_read": 7.5e-8, "cache_write": None, "retires_on": retires_on,
                      "retirement_source": "the provider's deprecations page", "source": "litellm offline price map"}}


def test_projected_api_lines_reach_the_summary_break_even_and_chart(tmp_path):
    from harness.config import compose
    from omegaconf import OmegaConf

    items = ITEMS
    plan = OmegaConf.to_container(compose([]).pricing)
    run = write_run(tmp_path, {
        "rag": {"pred": outcomes(items, 40), "family": "prompted", "cost_usd": 2e-5},
        "embed_logreg": {"pred": outcomes(items, 14), "family": "trained", "fit_cost_usd": 0.05,
                         "cost_usd": 1e-6}}, items, pricing={**plan, "decision_date": "2026-12-01"})
    RunDir.open(run).update_manifest(projection=[projected("rag", retires_on="2027-01-14")])
    build(run)
    md = (run / "report.md").read_text()
    summary = md.split("## Summary")[1].split("## Recommendation")[0]
    assert "embed_logreg $" in summary and "rag on gpt-4o-mini (cost projected" in summary
    assert "serving or API calls" in summary and "people's time" in summary
    assert "One more category costs about" in summary
    assert "gpt-4o-mini retires on 2027-01-14" in md and "## Assumptions behind the costs" in md
    assert "people.usd_per_hour" in md
    evens = pd.read_csv(run / "break_even.csv")
    row = evens[(evens["prompted"] == "rag @ gpt-4o-mini") & (evens["trained"] == "embed_logreg")].iloc[0]
    assert row["kind"] == "crosses" and row["prompted_projected"]
    from harness.report import analysis, charts, pricing

    rundir = RunDir.open(run)
    manifest = rundir.read_manifest()
    a = analysis.analyse(manifest, rundir.load_records(), pricing.resolve(manifest))
    assert "rag @ gpt-4o-mini" in charts.cost_lines(a)
    assert a.costs.decision.prompted.name == "rag @ gpt-4o-mini"
    assert "rag @ gpt-4o-mini" not in set(a.results["strategy"])  # never a measured (most accurate) row


def test_a_retired_model_is_never_recommended(tmp_path):
    """The most accurate strategy ran on an API model whose retirement date has passed: shown, not recommended."""
    run = write_run(tmp_path, {
        "zero_shot": {"pred": outcomes(ITEMS, 2), "family": "prompted", "cost_usd": 1e-4,
                      "info": {"billing": "api", "details": {"model_info": {"litellm_model": "gpt-4.1-nano"}}}},
        "tfidf": {"pred": outcomes(ITEMS, 30), "family": "trained", "cost_usd": 1e-6}}, ITEMS,
        pricing={**PLAN, "decision_date": "2026-12-01"})
    RunDir.open(run).update_manifest(projection=[projected("zero_shot", model="gpt-4.1-nano", own_model=True,
                                                           retires_on="2026-10-23")])
    build(run)
    md = (run / "report.md").read_text()
    recommendation = md.split("## Recommendation")[1].split("| strategy")[0]
    assert "The run has one option to adopt, tfidf" in recommendation
    assert "gpt-4.1-nano retired on 2026-10-23" in recommendation and "never recommended" in recommendation
    assert bool(pd.read_csv(run / "results.csv").set_index("strategy").get("retired", pd.Series(
        {"zero_shot": True})).get("zero_shot", True))


def test_a_sweep_with_many_points_still_lays_out_its_charts(tmp_path):
    """A learning-curve run has dozens of strategies: their legends get columns, and the page does not collapse."""
    import warnings

    items = ITEMS[:60]
    many = {f"learner[n={i},seed=0]": {"pred": outcomes(items, i), "family": "trained" if i % 2 else "prompted",
                                       "cost_usd": 0.0001 * (i + 1), "fit_cost_usd": 0.01 * i} for i in range(37)}
    run = write_run(tmp_path, many, items)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="constrained_layout not applied")
        build(run)
    assert (run / "summary.pdf").stat().st_size > 0


def test_dollar_amounts_read_for_people():
    from harness.report.fmt import usd

    assert [usd(x) for x in (0.0, 2.7e-6, 0.0018, 0.5, 12.345, 1512.4)] == [
        "$0.00", "< $0.0001", "$0.0018", "$0.5", "$12.35", "$1,512"]


def _recommendation(tmp_path, strategies, items, **plan) -> list[str]:
    from harness.report import analysis, pricing

    rundir = RunDir.open(write_run(tmp_path, strategies, items, pricing={**PLAN, **plan}))
    manifest = rundir.read_manifest()
    return analysis.analyse(manifest, rundir.load_records(), pricing.resolve(manifest)).recommendation


ITEMS_500 = [(f"i{i:03d}", f"label_{i % 4}") for i in range(500)]
ITEMS_2000 = [(f"i{i:04d}", f"label_{i % 4}") for i in range(2000)]


def test_cheaper_and_no_worse_is_a_test_and_break_even_sentences(tmp_path):
    # rag 91.6% at $0.0004 an item; finetune 92.0% at $0.00001 an item after a $50 fit (4 retrains of $50)
    sentences = _recommendation(tmp_path, {
        "rag": {"pred": outcomes(ITEMS_2000, 168), "family": "prompted", "cost_usd": 4e-4},
        "finetune": {"pred": outcomes(ITEMS_2000, 160), "family": "trained", "cost_usd": 1e-5,
                     "fit_cost_usd": 50.0}}, ITEMS_2000)
    assert sentences[0].startswith("At 10,000 items a month over 12 months, the most accurate strategy is finetune")
    # rag: 120,000 x 0.0004 = $48; finetune: 50 + 4 x 50 + 120,000 x 0.00001 = $251.20. Of 2,000 items 8 are right
    # for finetune only: -0.4 points, and Tango's one-sided 95% bound stays above the 1-point margin.
    assert sentences[1].startswith("rag costs 81% less ($48.00 in total) and is no worse than finetune by more than "
                                   "1 point: accuracy -0.4 pts against finetune, at worst -0.")
    assert "Tango's score test of non-inferiority, margin 1 point" in sentences[1]
    # 250 + 12 x 0.00001 V = 12 x 0.0004 V  =>  V = 250 / 0.00468 = 53,419
    assert sentences[2] == ("rag (prompted) and finetune (trained) break even at 53,419 items a month: below that "
                            "rag costs less over 12 months, above it finetune does (at 10,000 a month, rag).")
    assert sentences[3] == "rag stays the cheaper of the two at any monthly volume below 53,419."
    assert any(s.startswith("Against the runner-up, rag, finetune differs by +0.4 pts in accuracy") for s in sentences)
    power = next(s for s in sentences if "the smallest difference this set detects" in s)
    assert "0.4% of them answered right by exactly one of finetune and rag" in power  # 8 of 2,000


def test_the_report_says_when_the_heldout_set_is_too_small_to_separate_the_top_two(tmp_path):
    from harness.power import detectable_difference, items_needed

    items = ITEMS[:300] if len(ITEMS) >= 300 else [(f"i{i:03d}", f"label_{i % 4}") for i in range(300)]
    a = [("other" if i < 60 else gold) for i, (_, gold) in enumerate(items)]  # 80%
    b = [("other" if 50 <= i < 119 else gold) for i, (_, gold) in enumerate(items)]  # 77%: 109 items differ
    sentences = _recommendation(tmp_path, {"a": {"pred": a, "family": "trained", "cost_usd": 1e-5},
                                           "b": {"pred": b, "family": "trained", "cost_usd": 2e-5}}, items)
    power = next(s for s in sentences if "the smallest difference this set detects" in s)
    mde = detectable_difference(300, 109 / 300)
    needed = items_needed(9 / 300, 109 / 300)
    assert f"the smallest difference this set detects at 80% power is +{100 * mde:.1f} pts" in power
    assert f"the observed +3.0 pts is smaller, so the held-out set is too small to separate them (about {needed:,}" \
        in power
    assert 2_000 < needed < 6_000 and 0.08 < mde < 0.12  # hand check: (1.96 + 0.84) sqrt(0.363 / 300) ~ 0.097


def test_recommendation_when_one_point_is_not_enough_and_lines_never_cross(tmp_path):
    sentences = _recommendation(tmp_path, {
        "rag": {"pred": outcomes(ITEMS_500, 48), "family": "prompted", "cost_usd": 1e-6},
        "finetune": {"pred": outcomes(ITEMS_500, 40), "family": "trained", "cost_usd": 1e-5, "fit_cost_usd": 50.0}},
        ITEMS_500)
    assert sentences[1].startswith("No cheaper option is shown to be within 1 point of finetune: the only one, rag "
                                   "(100% less), has accuracy -1.6 pts against finetune, at worst -")
    assert sentences[2] == ("rag (prompted) and finetune (trained) never break even: rag costs less at every volume "
                            "up to 1,000,000,000 items a month.")


def test_when_no_cheaper_option_passes_the_closest_one_is_shown_not_the_cheapest(tmp_path):
    sentences = _recommendation(tmp_path, {
        "zero_shot": {"pred": outcomes(ITEMS_500, 300), "family": "prompted", "cost_usd": 1e-7},
        "rag": {"pred": outcomes(ITEMS_500, 48), "family": "prompted", "cost_usd": 1e-6},
        "finetune": {"pred": outcomes(ITEMS_500, 40), "family": "trained", "cost_usd": 1e-5, "fit_cost_usd": 50.0}},
        ITEMS_500)
    assert sentences[1].startswith("No cheaper option is shown to be within 1 point of finetune: the closest, rag "
                                   "(100% less), has accuracy -1.6 pts against finetune")


def test_two_strategies_that_almost_never_disagree_are_not_said_to_answer_alike(tmp_path):
    sentences = _recommendation(tmp_path, {
        "finetune": {"pred": outcomes(ITEMS_500, 40), "family": "trained", "cost_usd": 1e-5},
        "tfidf": {"pred": outcomes(ITEMS_500, 41), "family": "trained", "cost_usd": 1e-5}}, ITEMS_500)
    assert ("finetune and tfidf disagree on only 0.2% of the held-out items: too few for this set to detect any "
            "difference between them at 80% power.") in sentences
    assert not any("answer alike" in s for s in sentences)


def test_recommendation_when_nothing_fits_the_budget_or_a_family_is_missing(tmp_path):
    sentences = _recommendation(tmp_path, {
        "tfidf": {"pred": outcomes(ITEMS, 20), "family": "trained", "cost_usd": 5e-3},
        "finetune": {"pred": outcomes(ITEMS, 16), "family": "trained", "cost_usd": 2e-2}}, ITEMS,
        monthly_budget_usd=10)
    assert sentences == [
        "At 10,000 items a month, no strategy keeps within the monthly budget of $10.00; the cheapest, tfidf, "
        "averages $50.00 a month.",
        "The run does not have both a prompted and a trained strategy, so there is no prompted/trained break-even "
        "volume."]


# ------------------------------------------------------------------------------ escaping, self-containment
class _Resources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [value or "" for key, value in attrs if key in ("src", "href", "srcset", "poster", "data")]


@pytest.fixture(scope="module")
def payload_run(tmp_path_factory) -> Path:
    """Held-out items whose labels and texts carry an HTML payload, and records on them."""
    root = tmp_path_factory.mktemp("payload")
    labels = ["card_lost", PAYLOAD, "refund"]
    items = [(f"r{i}", labels[i % 3]) for i in range(30)]
    texts = {item: f"{PAYLOAD} message {i}" for i, (item, _) in enumerate(items)}
    return write_run(root, {
        "few_shot": {"pred": outcomes(items, 8, wrong=PAYLOAD), "family": "prompted", "cost_usd": 0.001},
        "tfidf": {"pred": outcomes(items, 4, wrong="refund"), "family": "trained", "cost_usd": 1e-6,
                  "fit_cost_usd": 0.5},
    }, items, texts=texts)


@pytest.fixture(scope="module")
def payload_html(payload_run) -> str:
    build(payload_run)
    return (payload_run / "report.html").read_text()


def test_dataset_text_is_escaped_and_the_page_has_no_script(payload_html):
    html = payload_html
    parser = _Resources()
    parser.feed(html)
    assert "script" not in parser.tags
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    # item texts (confusion examples, flips) are shown, as text
    assert re.search(r"&lt;script&gt;window.__pwned = 1&lt;/script&gt;&lt;img src=&#34;x&#34; "
                     r"onerror=&#34;window.__pwned = 2&#34;&gt; message \d+", html)
    assert 'onerror="window' not in html


def test_dataset_text_in_report_md_is_inert(payload_html, payload_run):
    """report.md goes into pull requests and wikis, which render raw HTML: labels there are escaped too."""
    markdown = (payload_run / "report.md").read_text()
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in markdown
    assert "<script" not in markdown and "<img" not in markdown


def test_report_html_loads_nothing_from_the_network(payload_html):
    html = payload_html
    parser = _Resources()
    parser.feed(html)
    assert parser.urls and all(url.startswith("data:image/png;base64,") for url in parser.urls)
    assert not re.search(r"url\(\s*['\"]?(?!data:)", html)
    assert not re.search(r"@import|<link\b|<iframe\b|<object\b|<embed\b", html, re.IGNORECASE)
    assert "default-src 'none'" in html


def test_learning_curves_appear_when_the_run_has_them(tmp_path):
    strategies = {}
    for n, wrong in ((5, 60), (10, 40), (20, 20)):
        for seed in (0, 1):
            strategies[f"embed_logreg[n={n},seed={seed}]"] = {
                "pred": outcomes(ITEMS, wrong + seed), "family": "trained",
                "info": {"train_per_class": n, "sweep_seed": seed}}
    run = write_run(tmp_path, strategies, ITEMS)
    build(run)
    assert (run / "charts" / "learning_curve.png").exists()
    assert "Learning curves" in (run / "report.html").read_text()
    results = pd.read_csv(run / "results.csv")
    assert set(results["train_per_class"]) == {5, 10, 20}
    table = re.sub(r" +", " ", (run / "report.md").read_text())
    assert "| embed_logreg | 5 | 69.8% (69.5% to 70.0%) | 2 |" in table


def test_pareto_frontier_keeps_what_nothing_beats_on_both_cost_and_accuracy():
    from harness.report.charts import pareto

    costs = np.array([1.0, 2.0, 3.0, 0.5, 2.0])
    accuracy = np.array([0.8, 0.9, 0.85, 0.7, 0.88])
    assert pareto(costs, accuracy) == [3, 0, 1]


def _lead(sentences: list[str]) -> str:
    return next(s for s in sentences if s.startswith("Against the runner-up"))


def test_a_sweep_never_changes_the_decisions_significance_verdict(tmp_path):
    """Holm spans the decision's own comparisons: 37 learning-curve points on part of the data are shown, never
    counted against the recommended strategy's lead."""
    base = {"finetune": {"pred": outcomes(ITEMS, 10), "family": "trained", "cost_usd": 1e-5},
            "tfidf": {"pred": outcomes(ITEMS, 22), "family": "trained", "cost_usd": 1e-6}}
    points = {f"knn[n={i},seed=0]": {"pred": outcomes(ITEMS, 30 + i), "family": "trained",
                                     "info": {"train_per_class": i, "sweep_seed": 0, "n_train": 2 * i}}
              for i in range(1, 38)}
    alone = _lead(_recommendation(tmp_path / "alone", base, ITEMS))
    swept = _lead(_recommendation(tmp_path / "swept", {**base, **points}, ITEMS))
    assert alone == swept and "is statistically significant" in alone
    # over every pair, Holm would have counted 39 x 38 / 2 = 741 comparisons
    assert "Holm" not in alone  # one comparison in the decision's family: nothing to adjust


def test_groups_metric_choice_and_disagreement(tmp_path):
    from harness.report import analysis, pricing

    items = [(f"i{i:03d}", "rare" if i % 20 == 0 else "common") for i in range(200)]
    # "often" is right on every common item and never on a rare one; "balanced" misses a few of each
    often = ["common" for _ in items]
    balanced = [gold if i % 9 else ("rare" if gold == "common" else "common") for i, (_, gold) in enumerate(items)]
    groups = {item: f"payer{i // 10}" for i, (item, _) in enumerate(items)}
    run = write_run(tmp_path, {"often": {"pred": often, "family": "trained", "cost_usd": 1e-5},
                               "balanced": {"pred": balanced, "family": "trained", "cost_usd": 1e-5}}, items,
                    groups=groups)
    rundir = RunDir.open(run)
    manifest = rundir.read_manifest()
    by_accuracy = analysis.analyse(manifest, rundir.load_records(), pricing.resolve(manifest),
                                   items=rundir.heldout())
    assert by_accuracy.best == "often"
    assert any("By macro-F1 the best is balanced, not often" in s for s in by_accuracy.recommendation)
    assert any("resamples the 20 groups of column 'source'" in s for s in by_accuracy.recommendation)
    rule = pricing.rule(manifest, ["decision.metric=macro_f1"])
    by_f1 = analysis.analyse(manifest, rundir.load_records(), pricing.resolve(manifest), rule=rule,
                             items=rundir.heldout())
    assert by_f1.best == "balanced" and "the strategy with the best macro-F1 is balanced" in by_f1.recommendation[0]
    with pytest.raises(HarnessError, match="no decision.metric 'f1'; known: accuracy, macro_f1"):
        pricing.rule(manifest, ["decision.metric=f1"])


def test_an_option_a_few_dollars_cheaper_is_not_said_to_cost_0_percent_less(tmp_path):
    sentences = _recommendation(tmp_path, {
        "rag": {"pred": outcomes(ITEMS_500, 48), "family": "prompted", "cost_usd": 1.0e-6},
        "zero_shot": {"pred": outcomes(ITEMS_500, 300), "family": "prompted", "cost_usd": 0.999e-6}}, ITEMS_500)
    assert sentences[1].startswith("No cheaper option is shown to be within 1 point of rag: the only one, zero_shot "
                                   "(under 1% less), has accuracy")
