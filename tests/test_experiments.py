"""Every experiment file runs end to end on a tiny slice: real models (SmolLM2 for the prompted strategies),
real data, every stage from fit to report."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from omegaconf import open_dict

from harness.config import compose, known
from tests.conftest import run
from tests.conftest import tiny_overrides

NEW_CATEGORY = "age_limit"  # one of the tiny fixture's labels


def shrink(cfg) -> None:
    """Keep each experiment's shape but make its training and sweeps tiny."""
    with open_dict(cfg):
        for node in cfg.strategies.values():
            if node["_target_"].endswith(("FineTunedEncoder", "FineTunedLLM")):
                node.update(epochs=1, min_steps=0, single_item_sample=4, checkpoint_steps=0)
            if node["_target_"].endswith("FineTunedLLM"):  # the GPU variant too, on this slice, on any machine
                node.update(device="auto", train_per_class=4, max_length=32)
            if node["_target_"].endswith("Distill"):  # SmolLM2 may give every drawn text one label: the student
                node.update(share=0.25, keep_human=True)  # also learns the other items' human labels
        if cfg.get("sweep"):
            cfg.sweep.train_per_class = [5, "all"]
            cfg.sweep.seeds = [0]
        if cfg.get("scenario"):
            cfg.scenario.new_categories = [NEW_CATEGORY]


@pytest.mark.slow
@pytest.mark.parametrize("experiment", known("experiment"))
def test_experiment_runs_on_a_tiny_slice(experiment, tiny_csv, tmp_path):
    cfg = compose([f"experiment={experiment}", *tiny_overrides(tiny_csv, tmp_path), "dataset.heldout_size=8",
                   "model=smollm2-135m", f"llm.cache_dir={tmp_path / 'llm-cache'}"])
    shrink(cfg)
    run_dir = run(cfg)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    results = pd.read_csv(run_dir / "results.csv")
    assert len(results) >= len(cfg.strategies)
    assert (results["n"] == 8).all()
    assert results["accuracy"].notna().all()
    records = pd.read_parquet(run_dir / "predictions.parquet")
    assert len(records) == 8 * len(results)
    for name in ("report.md", "report.html", "summary.pdf"):
        assert (run_dir / name).stat().st_size > 0
