"""Cascades and distillation: the threshold choice on constructed validation curves, and runs end to end on the
tiny table against the fake OpenAI server (its "LLM" copies the label of the most similar retrieved example), with
token log-probabilities for the prompted strategy's confidence."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from harness.config import compose
from harness.errors import HarnessError
from harness.strategies.cascade import choose, curve
from tests.conftest import run, tiny_overrides
from tests.fake_openai import fake_openai  # noqa: F401  (the fixture)

ORACLE = "{_target_: tests.cascade_parts.KnowsWhenWrong}"
FAKE = ["model=openai_compatible", "model.name=fake", "model.litellm_model=openai/fake", "llm.cache_dir=null"]


def nearest_label(messages) -> str:
    """What a decent model would answer from RAG's prompt: the label of the closest example (shown last)."""
    return re.findall(r"Category: (\S+)", messages[-1]["content"])[-1]


def constructed_curve() -> pd.DataFrame:
    # five validation items: the first stage is right on its three most confident, the second stage on all but one
    confidence = np.array([0.95, 0.9, 0.8, 0.6, 0.4])
    first = np.array([1, 1, 1, 0, 0], dtype=float)
    second = np.array([1, 0, 1, 1, 1], dtype=float)
    return curve(confidence, first, second, np.full(5, 0.001), np.full(5, 0.01))


def test_the_curve_measures_coverage_accuracy_and_cost_at_every_threshold():
    c = constructed_curve()
    assert c["threshold"].tolist() == [0.4, 0.6, 0.8, 0.9, 0.95, math.inf]
    assert c["coverage"].tolist() == [1.0, 0.8, 0.6, 0.4, 0.2, 0.0]
    assert c["accuracy"].tolist() == [0.6, 0.8, 1.0, 1.0, 0.8, 0.8]
    assert c["first_accuracy"].tolist()[:5] == [0.6, 0.75, 1.0, 1.0, 1.0] and math.isnan(c["first_accuracy"].iloc[-1])
    assert c["cost_per_1k_usd"].tolist() == pytest.approx([1.0, 3.0, 5.0, 7.0, 9.0, 11.0])


def test_target_takes_the_lowest_threshold_whose_first_stage_answers_are_that_good():
    chosen, met = choose(constructed_curve(), "target", 0.95)
    assert (chosen["threshold"], chosen["coverage"], met) == (0.8, 0.6, True)
    chosen, met = choose(constructed_curve(), "target", 0.7)
    assert (chosen["threshold"], met) == (0.6, True)


def test_floor_takes_the_cheapest_threshold_whose_cascade_accuracy_holds():
    chosen, met = choose(constructed_curve(), "floor", 0.8)
    assert (chosen["threshold"], chosen["cost_per_1k_usd"], met) == (0.6, pytest.approx(3.0), True)
    chosen, met = choose(constructed_curve(), "floor", 0.99)  # 0.8 and 0.9 reach 100%: 0.8 defers less
    assert (chosen["threshold"], met) == (0.8, True)


def test_an_unreachable_accuracy_defers_everything_or_takes_the_most_accurate_point_and_says_so():
    points = curve(np.array([0.9, 0.7]), np.zeros(2), np.array([1.0, 0.0]), np.zeros(2), np.ones(2))
    chosen, met = choose(points, "target", 0.9)
    assert (chosen["threshold"], met) == (math.inf, False)
    chosen, met = choose(points, "floor", 0.9)
    assert (chosen["threshold"], chosen["accuracy"], met) == (math.inf, 0.5, False)


def _cascade_run(fake, tiny_csv, tmp_path, *extra):
    fake.configure(answer=nearest_label)
    cfg = compose(["experiment=cascade", *tiny_overrides(tiny_csv, tmp_path), *FAKE, f"model.api_base={fake.url}",
                   "audit=null", "~strategies.tfidf_logreg", "~strategies.embed_knn", *extra])
    return run(cfg)


def test_a_cascade_defers_its_unsure_items_and_records_which_stage_answered(fake_openai, tiny_csv,  # noqa: F811
                                                                             tmp_path):
    path = _cascade_run(fake_openai, tiny_csv, tmp_path, "strategies.rag.logprobs=3",
                        "strategies.cascade.second.logprobs=3", "strategies.embed_logreg=" + ORACLE,
                        "strategies.cascade.first=" + ORACLE)
    manifest = json.loads((path / "manifest.json").read_text())
    fit = manifest["strategies"]["cascade"]
    details = fit["details"]
    assert fit["family"] == "cascade" and details["validation_items"] == 10  # a tenth of 96 training items
    assert details["chosen"]["threshold"] == details["threshold"] and details["curve"][-1]["coverage"] == 0.0
    records = pd.read_parquet(path / "predictions.parquet")
    cascade = records[records["strategy"] == "cascade"].set_index("item_id")
    first = records[records["strategy"] == "embed_logreg"].set_index("item_id")
    rag = records[records["strategy"] == "rag"].set_index("item_id")
    extras = cascade["extra"].map(json.loads)
    stages = extras.map(lambda e: e["stage"])
    first_conf = extras.map(lambda e: e.get("first_confidence", e.get("confidence")))
    assert set(stages) == {"first", "second"}
    assert details["threshold"] == 0.9 and details["met"]  # its confident answers are right, the others wrong
    # the nearest-label "LLM" answers tiny's items rightly
    assert (cascade["correct"] >= first.loc[cascade.index, "correct"]).all()
    assert ((stages == "first") == (first_conf >= details["threshold"])).all()
    deferred = cascade[stages == "second"].index
    # a deferred item answers as the second stage alone does and pays for both stages (the oracle first stage
    # costs 1e-6 and 1 ms an item); an item kept by the first stage makes no call
    kept = cascade[stages == "first"]
    assert (cascade.loc[deferred, "pred"] == rag.loc[deferred, "pred"]).all()
    assert (cascade.loc[deferred, "prompt_tokens"] == rag.loc[deferred, "prompt_tokens"]).all()
    assert (cascade.loc[deferred, "cost_usd"] > 1e-6).all() and (cascade.loc[deferred, "latency_ms"] > 1.0).all()
    assert np.allclose(kept["cost_usd"], 1e-6) and (kept["prompt_tokens"] == 0).all()
    report = (path / "report.md").read_text()
    assert "Cascades against their stages alone" in report and "second stage alone" in report
    # the prompted strategy's confidence came from the fake server's log-probabilities (1.0: one certain token)
    assert rag["extra"].map(lambda e: json.loads(e)["confidence"]).eq(1.0).all()
    calibration = report.split("Calibration and abstention")[1].split("##")[0]
    assert "| rag " in calibration and "label probability (token log-probabilities)" in calibration


def test_a_cascade_without_first_stage_confidence_is_refused(fake_openai, tiny_csv, tmp_path):  # noqa: F811
    with pytest.raises(HarnessError, match="first stage .* gives no confidence"):
        _cascade_run(fake_openai, tiny_csv, tmp_path, "+strategies.cascade.first.head.probability=false",
                     "strategies.cascade.first.head._target_=sklearn.svm.SVC", "~strategies.cascade.first.head.C",
                     "~strategies.cascade.first.head.max_iter")


def test_distillation_trains_the_student_on_llm_labels_it_never_saw_the_answers_to(fake_openai, tiny_csv,  # noqa
                                                                                   tmp_path):
    fake_openai.configure(answer=nearest_label)
    cfg = compose(["experiment=distill", *tiny_overrides(tiny_csv, tmp_path), *FAKE,
                   f"model.api_base={fake_openai.url}", "strategies.distill.share=0.25",
                   "strategies.distill_human.share=0.25"])
    path = run(cfg)
    manifest = json.loads((path / "manifest.json").read_text())
    llm, human = (manifest["strategies"][n] for n in ("distill", "distill_human"))
    assert llm["details"]["drawn"] == human["details"]["drawn"] == 24
    assert human["details"]["agreement_with_human"] == 1.0 and human["fit_cost_usd"] < llm["fit_cost_usd"]
    assert 0 < llm["details"]["agreement_with_human"] <= 1 and llm["details"]["labelling"]["seconds"] > 0
    drawn = [p for p in fake_openai.prompts()]
    assert len(drawn) == 24  # one call per drawn text, and the rest's labels are what it retrieves from
    texts = pd.read_csv(tiny_csv).set_index("text")["label"]
    for prompt in drawn:
        item = prompt.rsplit("Text: ", 1)[1].split("\n")[0]
        assert f"Text: {item}\nCategory: " not in prompt  # the drawn item's own label is never shown
        assert item in texts.index
    assert "Distillation: a student trained on LLM labels" in (path / "report.md").read_text()
