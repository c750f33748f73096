"""The run directory contract, report rebuild from records, and resume after an interrupt."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from harness.run.directory import RunDir
from tests.conftest import run
from harness.strategies.classic import BatchedClassifier

PREDICTION_COLUMNS = {"strategy", "item_id", "gold", "pred", "correct", "latency_ms", "prompt_tokens",
                      "completion_tokens", "cost_usd", "cached", "error"}
RESULT_COLUMNS = {"strategy", "model", "n", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "macro_f1",
                  "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "cost_per_1k_usd", "fit_seconds",
                  "fit_cost_usd", "n_errors", "n_invalid"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_csv):
    from harness.config import compose
    from tests.conftest import tiny_overrides

    tmp = tmp_path_factory.mktemp("run")
    return run(compose(["experiment=classic", *tiny_overrides(tiny_csv, tmp)]))


def test_run_directory_contract(finished_run):
    manifest = json.loads((finished_run / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert len(manifest["dataset"]["heldout_hash"]) == 64
    assert manifest["versions"]["scikit-learn"] and "commit" in manifest["git"]
    assert manifest["price_sources"]["hardware"]["source"]
    assert manifest["config"]["strategies"].keys() == {"tfidf_logreg", "embed_logreg", "embed_knn"}
    predictions = pd.read_parquet(finished_run / "predictions.parquet")
    assert PREDICTION_COLUMNS <= set(predictions.columns)
    assert len(predictions) == 3 * 32
    assert predictions.groupby("strategy")["item_id"].apply(set).map(len).eq(32).all()
    results = pd.read_csv(finished_run / "results.csv")
    assert RESULT_COLUMNS <= set(results.columns)
    assert (results["fit_seconds"] > 0).all() and (results["fit_cost_usd"] > 0).all()
    assert (results["accuracy"] > 0.7).all()  # 8 easy BANKING77 classes; a broken pipeline is near 1/8
    assert "| tfidf_logreg" in (finished_run / "report.md").read_text()


def test_embedding_cost_is_shared_but_still_counted(finished_run):
    results = pd.read_csv(finished_run / "results.csv").set_index("strategy")
    # embed_knn reuses embed_logreg's cached embeddings, yet reports their measured cost as its own
    assert results.loc["embed_knn", "latency_p50_ms"] >= 0.5 * results.loc["embed_logreg", "latency_p50_ms"]


def test_report_rebuilds_from_records_without_loading_models(finished_run):
    before = (finished_run / "results.csv").read_text()
    (finished_run / "results.csv").unlink()
    (finished_run / "report.md").unlink()
    code = ("import sys; from harness.cli import main; rc = main(['report', sys.argv[1]]); "
            "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers', 'litellm') if m in sys.modules]; "
            "assert not heavy, heavy; sys.exit(rc)")
    subprocess.run([sys.executable, "-c", code, str(finished_run)], check=True, capture_output=True)
    assert (finished_run / "results.csv").read_text() == before
    assert (finished_run / "report.md").exists()


def test_interrupted_run_resumes_without_redoing_items(tiny_cfg, monkeypatch):
    cfg = tiny_cfg("classic")
    predicted: list[str] = []
    original = BatchedClassifier.predict

    def counting_predict(self, items):
        for prediction in original(self, items):
            predicted.append(f"{self.name}:{prediction.item_id}")
            yield prediction

    monkeypatch.setattr(BatchedClassifier, "predict", counting_predict)
    original_append = RunDir.append

    def append_then_interrupt(self, fh, record):
        original_append(self, fh, record)
        if record["strategy"] == "embed_logreg" and len(self.done_ids("embed_logreg")) == 10:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "append", append_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    run_dir = next(Path(cfg.output_dir).glob("*/*/*"))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert not (run_dir / "results.csv").exists()  # nothing that looks like a finished result
    assert len(predicted) == 32 + 10

    monkeypatch.setattr(RunDir, "append", original_append)
    predicted.clear()
    run(OmegaConf.load(run_dir / "config.yaml"), resume=run_dir)
    # tfidf_logreg was complete: not redone; embed_logreg: only its 22 unfinished items; embed_knn: all 32
    assert sum(p.startswith("tfidf_logreg") for p in predicted) == 0
    assert sum(p.startswith("embed_logreg") for p in predicted) == 22
    assert sum(p.startswith("embed_knn") for p in predicted) == 32
    frame = pd.read_parquet(run_dir / "predictions.parquet")
    assert len(frame) == 96 and not frame.duplicated(["strategy", "item_id"]).any()
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "complete"
