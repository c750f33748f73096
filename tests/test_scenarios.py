"""The new-category scenario: stages, the withheld dataset, errors, and an offline end-to-end run."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from omegaconf import OmegaConf

from harness.config import instantiate
from harness.errors import HarnessError
from harness.run.plan import new_categories, stages, withhold

NEW = "age_limit"  # one of the tiny fixture's 8 labels


def test_the_experiment_composes_with_prompted_and_trained_strategies(tiny_cfg):
    cfg = tiny_cfg("new_category")
    assert cfg.scenario.kind == "new_category" and len(cfg.scenario.new_categories) >= 1
    targets = {node["_target_"].rsplit(".", 1)[0] for node in cfg.strategies.values()}
    assert targets == {"harness.strategies.classic", "harness.strategies.prompted"}


def test_without_a_scenario_each_strategy_is_one_stage(tiny_cfg):
    cfg = tiny_cfg("classic")
    dataset = instantiate(cfg.dataset)
    plan = stages(cfg, dataset)
    assert [s.name for s in plan] == ["tfidf_logreg", "embed_logreg", "embed_knn"]
    assert all(s.train is dataset for s in plan)


def test_each_strategy_runs_before_then_after(tiny_cfg):
    cfg = tiny_cfg("classic", f"+scenario={{kind: new_category, new_categories: [{NEW}]}}")
    dataset = instantiate(cfg.dataset)
    plan = stages(cfg, dataset)
    assert [s.name for s in plan][:2] == ["tfidf_logreg[before]", "tfidf_logreg[after]"]
    before, after = plan[0].train, plan[1].train
    assert NEW not in before.labels and all(ex.label != NEW for ex in before.train)
    assert after is dataset and NEW in after.labels
    assert before.heldout == dataset.heldout  # both stages are scored on the same items
    assert plan[0].strategy is not plan[1].strategy


def test_withhold_drops_taxonomy_descriptions_too(tiny_cfg):
    dataset = instantiate(tiny_cfg().dataset)
    dataset.descriptions = {label: f"about {label}" for label in dataset.labels}
    without = withhold(dataset, [NEW])
    assert NEW not in without.descriptions and len(without.descriptions) == len(dataset.labels) - 1
    assert len(without.train) == len(dataset.train) - 12


@pytest.mark.parametrize("scenario, message", [
    ({"kind": "new_category", "new_categories": ["nope"]}, r"no category \(scenario.new_categories\) 'nope'; known: Refund_not_showing_up"),
    ({"kind": "new_category", "new_categories": []}, "must list at least one category"),
    ({"kind": "merge", "new_categories": [NEW]}, "no scenario.kind 'merge'; known: new_category"),
])
def test_bad_scenarios_are_refused_with_the_choices(tiny_cfg, scenario, message):
    cfg = tiny_cfg()
    OmegaConf.set_struct(cfg, False)
    cfg.scenario = scenario
    with pytest.raises(HarnessError, match=message):
        stages(cfg, instantiate(cfg.dataset))


def test_every_category_cannot_be_new(tiny_cfg):
    dataset = instantiate(tiny_cfg().dataset)
    with pytest.raises(HarnessError, match="every category"):
        new_categories({"new_categories": dataset.labels}, dataset)


def test_new_category_run_end_to_end_offline(tiny_cfg):
    from tests.conftest import run

    cfg = tiny_cfg("new_category", "~strategies.zero_shot", "~strategies.few_shot", "~strategies.rag",
                   "~strategies.embed_logreg", "~strategies.embed_knn", "dataset.heldout_size=null",
                   f"scenario.new_categories=[{NEW}]")
    path = run(cfg)
    table = pd.read_csv(path / "scenario.csv").set_index("strategy")
    row = table.loc["tfidf_logreg"]
    assert row.new_accuracy_before == 0.0  # it never saw the category
    assert row.new_accuracy_after > 0.5
    assert row.accuracy_after > row.accuracy_before
    assert row.n_new_items == 4
    info = json.loads((path / "manifest.json").read_text())["strategies"]["tfidf_logreg[after]"]
    assert row.adapt_seconds == pytest.approx(info["fit_seconds"])
    assert row.adapt_cost_usd == pytest.approx(info["fit_cost_usd"])
    html = (path / "report.html").read_text()
    assert f"New categories: {NEW}" in html
    recommendation = html.split('id="recommendation"')[1].split("</section>")[0]
    assert "tfidf_logreg[after]" in recommendation and "[before]" not in recommendation  # not an option
