"""Learning-curve sweeps: seeded per-class subsamples, the expansion into named variants, and one run whose
results table carries every point."""
from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from harness.run import plan as sweep
from harness.config import compose, instantiate
from harness.data import Example, per_class_sample
from harness.errors import HarnessError
from tests.conftest import tiny_overrides


def _examples() -> list[Example]:
    sizes = {"a": 30, "b": 12, "c": 3}
    return [Example(f"{label}{i}", f"text {label} {i}", label) for label, n in sizes.items() for i in range(n)]


def test_per_class_sample_takes_n_of_each_label_seeded_and_nested():
    examples = _examples()
    five = per_class_sample(examples, 5, seed=0)
    assert Counter(ex.label for ex in five) == {"a": 5, "b": 5, "c": 3}  # a smaller class gives all it has
    assert per_class_sample(examples, 5, seed=0) == five  # same seed, same sample
    assert per_class_sample(examples, 5, seed=1) != five
    assert set(five) <= set(per_class_sample(examples, 10, seed=0))  # one seed: smaller samples are subsets
    assert [examples.index(ex) for ex in five] == sorted(examples.index(ex) for ex in five)  # original order
    assert per_class_sample(examples, None, seed=0) == examples


@pytest.mark.parametrize("bad", [0, -3, 2.5, "5"])
def test_per_class_sample_refuses_a_bad_size(bad):
    with pytest.raises(HarnessError, match="per class"):
        per_class_sample(_examples(), bad, seed=0)


def _cfg(tiny_csv, tmp_path, *extra):
    return compose(["experiment=learning_curve", *tiny_overrides(tiny_csv, tmp_path),
                    "dataset.heldout_size=null", *extra])


def test_expands_each_swept_strategy_into_seeded_variants(tiny_csv, tmp_path):
    cfg = _cfg(tiny_csv, tmp_path, "sweep.train_per_class=[2,5,all]", "sweep.seeds=[0,1]",
               "sweep.strategies=[tfidf_logreg,finetune_encoder]")
    dataset = instantiate(cfg.dataset)
    plan = {stage.name: stage for stage in sweep.stages(cfg, dataset)}
    assert list(plan) == [
        "tfidf_logreg[n=2,seed=0]", "tfidf_logreg[n=2,seed=1]", "tfidf_logreg[n=5,seed=0]",
        "tfidf_logreg[n=5,seed=1]", "tfidf_logreg[n=all,seed=0]", "embed_logreg", "embed_knn",
        "finetune_encoder[n=2,seed=0]", "finetune_encoder[n=2,seed=1]", "finetune_encoder[n=5,seed=0]",
        "finetune_encoder[n=5,seed=1]", "finetune_encoder[n=all,seed=0]"]
    two = plan["tfidf_logreg[n=2,seed=1]"]
    assert Counter(ex.label for ex in two.train.train) == {label: 2 for label in dataset.labels}
    assert two.train.heldout == dataset.heldout  # every point is scored on the same items
    assert (two.info.kind, two.info.train_per_class, two.info.sweep_seed) == ("sweep", 2, 1)
    assert plan["tfidf_logreg[n=all,seed=0]"].train.train == dataset.train
    assert plan["tfidf_logreg[n=all,seed=0]"].info.train_per_class == 12  # mean items per label
    assert plan["embed_logreg"].info.kind == "plain" and plan["embed_logreg"].train is dataset
    assert plan["finetune_encoder[n=5,seed=1]"].strategy.settings.seed == 1  # the fine-tune's seed follows


def test_a_swept_strategy_trains_on_the_sweeps_sample_only(tiny_csv, tmp_path):
    """A fine-tune configured with its own train_per_class would cut the sweep's sample again."""
    cfg = _cfg(tiny_csv, tmp_path, "sweep.train_per_class=[5]", "sweep.seeds=[0]",
               "sweep.strategies=[finetune_encoder]", "strategies.finetune_encoder.train_per_class=2")
    plan = {stage.name: stage for stage in sweep.stages(cfg, instantiate(cfg.dataset))}
    assert plan["finetune_encoder[n=5,seed=0]"].strategy.train_per_class is None


@pytest.mark.parametrize("override, message", [
    ("sweep.strategies=[tfidf_logrgs]", "known: embed_knn, embed_logreg, finetune_encoder, tfidf_logreg"),
    ("sweep.train_per_class=[5,0]", "sweep.train_per_class"),
    ("+scenario={kind: new_category, new_categories: [x]}", "cannot be combined"),
])
def test_bad_sweep_config_is_one_clear_error(tiny_csv, tmp_path, override, message):
    cfg = _cfg(tiny_csv, tmp_path, override)
    with pytest.raises(HarnessError, match=message):
        sweep.stages(cfg, instantiate(cfg.dataset))


def test_a_swept_run_puts_every_point_in_one_results_table(tiny_csv, tmp_path):
    from tests.conftest import run

    cfg = compose(["experiment=classic", *tiny_overrides(tiny_csv, tmp_path),
                   "+sweep={strategies: [tfidf_logreg], train_per_class: [2, 6], seeds: [0, 1]}"])
    run_dir = run(cfg)
    results = pd.read_csv(run_dir / "results.csv").set_index("strategy")
    points = results.loc[[n for n in results.index if n.startswith("tfidf_logreg[")]]
    assert sorted(points.index) == ["tfidf_logreg[n=2,seed=0]", "tfidf_logreg[n=2,seed=1]",
                                    "tfidf_logreg[n=6,seed=0]", "tfidf_logreg[n=6,seed=1]"]
    assert points["train_per_class"].tolist() == [2, 2, 6, 6]
    assert points["sweep_seed"].tolist() == [0, 1, 0, 1]
    assert points["n_train"].tolist() == [16, 16, 48, 48]
    assert (points["n"] == 32).all()  # the whole held-out slice for every point
    assert pd.isna(results.loc["embed_logreg", "train_per_class"])  # not swept
    report = (run_dir / "report.md").read_text()
    assert "Learning curves" in report and "What one retrain costs" in report
    assert "| tfidf_logreg[n=6,seed=1] | 48 " in report  # its retrain row names the training items
