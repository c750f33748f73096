"""finetune_encoder: real MiniLM weights, a few training steps on the tiny BANKING77 slice."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness.config import compose, instantiate
from harness.errors import HarnessError
from harness.run.services import Services
from harness.strategies.finetune import META_FILE, FineTunedEncoder
from tests.conftest import tiny_overrides

# Few, short steps at a high learning rate: enough for the new classifier layer to move on 8 labels.
QUICK = ["strategies.finetune_encoder.epochs=2", "strategies.finetune_encoder.learning_rate=1e-3",
         "strategies.finetune_encoder.train_batch_size=16", "strategies.finetune_encoder.max_length=24",
         "strategies.finetune_encoder.warmup_ratio=0", "strategies.finetune_encoder.single_item_sample=5"]


def _compose(tiny_csv, tmp_path, *extra):
    return compose(["experiment=finetune", *tiny_overrides(tiny_csv, tmp_path), *QUICK, *extra])


def _strategy(cfg) -> FineTunedEncoder:
    return instantiate(cfg.strategies.finetune_encoder, name="finetune_encoder")


def _services(cfg, run_dir) -> Services:
    return Services(hardware=instantiate(cfg.hardware), run_dir=run_dir, seed=int(cfg.seed))


@pytest.fixture(scope="module")
def trained(tiny_csv, tmp_path_factory):
    """One fine-tune shared by the tests below: (config, dataset, services, fitted strategy, meta file mtime)."""
    tmp = tmp_path_factory.mktemp("finetune")
    cfg = _compose(tiny_csv, tmp)
    dataset = instantiate(cfg.dataset)
    services = _services(cfg, tmp / "run")
    strategy = _strategy(cfg).fit(dataset, services)
    weights = services.artifacts("finetune_encoder") / "model" / "model.safetensors"
    return cfg, dataset, services, strategy, weights.stat().st_mtime_ns


def test_training_lowers_the_loss(trained):
    _, dataset, _, strategy, _ = trained
    losses = strategy.training_["losses"]
    assert strategy.reused_model_ is False
    assert strategy.training_["steps"] == 2 * int(np.ceil(len(dataset.train) / 16))
    assert len(losses) >= 4
    assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.1, losses
    assert strategy.fit_seconds_ > 0 and strategy.training_["train_items_per_s"] > 0


def test_predicts_a_valid_label_for_every_item_with_both_latencies(trained):
    _, dataset, _, strategy, _ = trained
    predictions = list(strategy.predict(dataset.heldout))
    assert [p.item_id for p in predictions] == [ex.id for ex in dataset.heldout]
    assert all(p.pred in dataset.labels and p.error is None for p in predictions)
    # better than chance (1/8) after a few steps: the model learned something from the training items
    assert np.mean([p.correct for p in predictions]) > 0.3
    assert strategy.latency_basis == "batch-amortised"
    single = [p.extra["single_item_latency_ms"] for p in predictions if "single_item_latency_ms" in p.extra]
    assert len(single) == 5 and all(ms > 0 for ms in single)
    assert all(p.cost_usd > 0 and p.latency_ms > 0 for p in predictions)


def test_a_rerun_reuses_the_saved_model(trained):
    cfg, dataset, services, first, mtime = trained
    again = _strategy(cfg).fit(dataset, services)
    weights = services.artifacts("finetune_encoder") / "model" / "model.safetensors"
    assert again.reused_model_ is True and again.describe()["reused_model"] is True
    assert weights.stat().st_mtime_ns == mtime  # nothing was written: no training happened
    assert again.fit_seconds_ == first.fit_seconds_  # a retrain still costs what the training took
    item = dataset.heldout[:3]
    assert [p.pred for p in again.predict(item)] == [p.pred for p in first.predict(item)]


def test_changed_settings_or_data_are_not_reused(trained, tiny_csv, tmp_path):
    cfg, dataset, services, first, _ = trained
    folder = services.artifacts("finetune_encoder")
    saved = json.loads((folder / META_FILE).read_text())["fingerprint"]
    other = _strategy(_compose(tiny_csv, tmp_path, "strategies.finetune_encoder.learning_rate=2e-3"))
    assert other._fingerprint(dataset.train, dataset.labels) != saved
    assert first._fingerprint(dataset.train[1:], dataset.labels) != saved


def test_refuses_base_weights_with_the_wrong_hash(tiny_csv, tmp_path):
    cfg = _compose(tiny_csv, tmp_path, "strategies.finetune_encoder.sha256=" + "0" * 64)
    with pytest.raises(HarnessError, match="sha256"):
        _strategy(cfg).fit(instantiate(cfg.dataset), _services(cfg, tmp_path / "run"))


def test_invalid_setting_names_the_key(tiny_csv, tmp_path):
    cfg = _compose(tiny_csv, tmp_path, "strategies.finetune_encoder.warmup_ratio=1.5")
    with pytest.raises(HarnessError, match="'warmup_ratio' must be in"):
        _strategy(cfg).fit(instantiate(cfg.dataset), _services(cfg, tmp_path / "run"))


@pytest.mark.slow
def test_run_and_resume_end_to_end(tiny_csv, tmp_path):
    """The real runner: results carry the fine-tune's fit time and cost and its single-item latency; a resume of
    an interrupted run reuses the saved model."""
    import pandas as pd

    from harness.run.directory import RunDir
    from tests.conftest import run

    cfg = _compose(tiny_csv, tmp_path)
    run_dir = run(cfg)
    results = pd.read_csv(run_dir / "results.csv").set_index("strategy")
    row = results.loc["finetune_encoder"]
    assert row["fit_seconds"] > 0 and row["fit_cost_usd"] > 0
    assert row["single_item_latency_p50_ms"] > 0
    assert "Single-item latency" in (run_dir / "report.md").read_text()
    # interrupt: drop the fine-tune's records, then resume
    (run_dir / "records" / "finetune_encoder.jsonl").unlink()
    (run_dir / "predictions.parquet").unlink()
    run(cfg, resume=run_dir)
    fit = RunDir.open(run_dir).read_manifest().fit("finetune_encoder")
    assert fit.details["reused_model"] is True
    assert fit.fit_seconds == pytest.approx(row["fit_seconds"])
    [(weights, digest)] = fit.artefacts.items()
    assert weights.endswith("model.safetensors") and len(digest) == 64


def test_close_gives_the_process_its_torch_threads_back(trained):
    """Training pins torch to `num_threads` (1); strategies timed after it must not inherit that."""
    import torch

    _, _, _, strategy, _ = trained
    assert torch.get_num_threads() == strategy.threads_ == 1
    strategy.close()
    assert torch.get_num_threads() == strategy.previous_threads_
