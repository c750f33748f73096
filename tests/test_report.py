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

from harness.costs.plan import PricingPlan
from harness.errors import HarnessError
from harness.report import build
from harness.report.recommend import recommend
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
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    results = pd.read_csv(classic_run / "results.csv").set_index("strategy")
    total = pd.read_csv(classic_run / "total_cost.csv").set_index("strategy")
    for name, row in results.iterrows():
        retrains = 8  # 4 a year over 24 months
        expected = row.fit_cost_usd * (1 + retrains) + 50_000 * 24 * row.cost_per_1k_usd / 1000
        assert total.loc[name, "total_usd"] == pytest.approx(expected)
    assert "50,000 items a month over 24 months" in (classic_run / "report.html").read_text()


def test_report_refuses_overrides_other_than_pricing(decision_run):
    with pytest.raises(HarnessError, match="only pricing can change"):
        build(decision_run, ["dataset.heldout_size=5"])
    with pytest.raises(HarnessError, match="no pricing key 'volume'"):
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
    assert "finetune is more accurate (93.0%) but averages $126 a month, over budget." in html


def test_retrain_and_projection_tables_are_in_both_reports(tmp_path):
    run = write_run(tmp_path, {
        "zero_shot": {"pred": outcomes(ITEMS, 20), "family": "prompted", "cost_usd": 0.002},
        "finetune": {"pred": outcomes(ITEMS, 14), "family": "trained", "fit_cost_usd": 0.25,
                     "info": {"n_train": 8000}}}, ITEMS)
    rundir = RunDir.open(run)
    rundir.update_manifest(projection=[{"strategy": "zero_shot", "api_model": "gpt-4o-mini", "projected_cost_per_1k_usd": 0.068,
                               "measured_model": "local-model", "measured_cost_per_1k_usd": 0.0101,
                               "prompt_tokens_mean": 421.0, "completion_tokens_mean": 4.2,
                               "tokenizer": "o200k_base", "price_source": "litellm offline price map"}])
    build(run)
    for name in ("report.md", "report.html"):
        text = (run / name).read_text()
        assert "What one retrain costs (trained strategies)" in text, name
        assert "Projected API cost (a projection, not measured)" in text, name
        assert "0.0680" in text and "421 / 4.2" in text and "8000" in text, name


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


def frame(rows: list[tuple]) -> pd.DataFrame:
    columns = ["strategy", "family", "accuracy", "total_usd", "within_budget"]
    out = pd.DataFrame(rows, columns=columns)
    return out.assign(accuracy_ci_low=out["accuracy"] - 0.02, accuracy_ci_high=out["accuracy"] + 0.02,
                      monthly_usd=out["total_usd"] / 12)


def evens(kind: str, volume: float | None, below: str | None, above: str | None) -> pd.DataFrame:
    return pd.DataFrame([{"prompted": "rag", "trained": "finetune", "kind": kind, "monthly_volume": volume,
                          "cheaper_below": below, "cheaper_above": above}])


def pairs(p_holm: float) -> pd.DataFrame:
    return pd.DataFrame([{"a": "rag", "b": "finetune", "n_items": 500, "diff_b_minus_a": 0.004,
                          "diff_ci_low": -0.01, "diff_ci_high": 0.02, "p_holm": p_holm}])


def test_cheapest_within_one_point_and_break_even_sentences():
    results = frame([("rag", "prompted", 0.916, 600.0, True), ("finetune", "trained", 0.92, 2400.0, True)])
    plan = PricingPlan.from_config(PLAN)
    best, sentences = recommend(results, evens("crosses", 12_345.4, "rag", "finetune"), pairs(0.2), plan)
    assert best == "finetune"
    assert sentences[1] == "The cheapest within one point of it is rag: 91.6% accurate, $600 in total (75% less)."
    assert sentences[2] == ("rag (prompted) and finetune (trained) break even at 12,345 items a month: below that "
                            "rag costs less over 12 months, above it finetune does (at 10,000 a month, rag).")
    assert sentences[3].startswith("Against the next most accurate, rag, finetune differs by +0.4 pts "
                                   "(95% CI -1.0 pts to +2.0 pts); the difference is not statistically significant")


def test_recommendation_when_one_point_is_not_enough_and_lines_never_cross():
    results = frame([("rag", "prompted", 0.905, 600.0, True), ("finetune", "trained", 0.92, 2400.0, True)])
    _, sentences = recommend(results, evens("never", None, "rag", "rag"), pairs(0.001),
                             PricingPlan.from_config(PLAN))
    assert sentences[1] == "No strategy within one point of finetune's accuracy costs less."
    assert sentences[2] == "rag (prompted) and finetune (trained) never break even: rag costs less at every volume."
    assert "the difference is statistically significant" in sentences[3]


def test_recommendation_when_nothing_fits_the_budget_or_a_family_is_missing():
    plan = PricingPlan.from_config({**PLAN, "monthly_budget_usd": 10})
    results = frame([("tfidf", "trained", 0.9, 600.0, False), ("finetune", "trained", 0.92, 2400.0, False)])
    best, sentences = recommend(results, evens("equal", None, None, None).iloc[:0], pairs(0.5), plan)
    assert best is None
    assert sentences == [
        "At 10,000 items a month, no strategy keeps within the monthly budget of $10.00; the cheapest, tfidf, "
        "averages $50.00 a month.",
        "The run has no prompted strategy, so there is no prompted/trained break-even volume."]


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
