"""finetune_encoder: the shared training loop's rules (step budget, validation split, class weights, early
stopping), real MiniLM weights trained a few steps on the tiny BANKING77 slice, and (slow) its defaults on a small
imbalanced table against TF-IDF + logistic regression."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness.config import compose, instantiate
from harness.errors import HarnessError
from harness.run.services import Services
from harness.strategies.finetune import META_FILE, FineTunedEncoder
from harness.strategies.training import TrainingSettings, class_weights, split_validation
from tests.conftest import tiny_overrides

# Few, short steps at a high learning rate: enough for the new classifier layer to move on 8 labels. No validation
# split (the steps are then exactly 2 passes) and one thread (the thread test below restores it).
QUICK = ["strategies.finetune_encoder.epochs=2", "strategies.finetune_encoder.learning_rate=1e-3",
         "strategies.finetune_encoder.train_batch_size=16", "strategies.finetune_encoder.max_length=24",
         "strategies.finetune_encoder.warmup_ratio=0", "strategies.finetune_encoder.single_item_sample=5",
         "strategies.finetune_encoder.validation_fraction=0", "strategies.finetune_encoder.num_threads=1"]


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


def test_refuses_a_base_whose_pinned_hash_differs(tiny_csv, tmp_path):
    cfg = _compose(tiny_csv, tmp_path)
    strategy = _strategy(cfg)
    strategy.files = {**strategy.files, "model.safetensors": "0" * 64}
    with pytest.raises(HarnessError, match=r"model.safetensors has sha256 \w+, expected 0{64} "
                                           r"\(strategies.finetune_encoder.files\); refusing"):
        strategy.fit(instantiate(cfg.dataset), _services(cfg, tmp_path / "run"))


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


def test_the_step_budget_follows_the_data_size():
    settings = TrainingSettings()  # epochs: null, batch 32
    # BANKING77 (9,003 after the validation split) gets its measured ~40,000 items: 4.4 passes
    assert settings.epochs_for(9003) == pytest.approx(40_000 / 9003)
    assert settings.steps(9003) == int(np.ceil(np.ceil(9003 / 32) * 40_000 / 9003))
    assert settings.epochs_for(1200) == 20 and settings.epochs_for(30) == 20  # small tables: more passes, capped
    assert settings.epochs_for(100_000) == 4  # a large table: never fewer than 4
    assert TrainingSettings(epochs=2).steps(320) == 20 and TrainingSettings(epochs=2, min_steps=50).steps(320) == 50
    assert settings.eval_steps(320) == 5  # two evaluations a pass of 10 steps


def test_the_validation_split_takes_a_share_of_every_class_and_is_seeded():
    from harness.data import Example

    sizes = {"a": 3, "b": 5, "c": 20, "d": 100}
    examples = [Example(id=f"{label}{i}", text=f"{label} {i}", label=label)
                for label, n in sizes.items() for i in range(n)]
    train, held = split_validation(examples, 0.1, seed=0)
    held_per_label = {label: sum(ex.label == label for ex in held) for label in sizes}
    assert held_per_label == {"a": 0, "b": 1, "c": 2, "d": 10}  # a rare class of 5 still counts in the macro-F1
    assert sorted(ex.id for ex in train + held) == sorted(ex.id for ex in examples)
    assert not {ex.id for ex in train} & {ex.id for ex in held}
    assert split_validation(examples, 0.1, seed=0)[1] == held
    assert split_validation(examples, 0.1, seed=1)[1] != held
    assert split_validation(examples, 0.0, seed=0) == (examples, [])
    # a cap scales every class's share down alike: 8 of 128 items is 6.25% of each
    capped = split_validation(examples, 0.1, seed=0, max_items=8)[1]
    assert {label: sum(ex.label == label for ex in capped) for label in sizes} == {"a": 0, "b": 0, "c": 1, "d": 6}
    assert split_validation(examples, 0.1, seed=0, max_items=1000)[1] == held  # a cap above the share changes nothing


def test_balanced_class_weights_make_every_class_count_alike():
    weights = class_weights([0] * 10 + [1] * 30 + [3] * 60, n_labels=4)
    assert weights == pytest.approx([100 / 30, 100 / 90, 0.0, 100 / 180])
    # each present class carries the same total weight: n / classes
    assert weights[0] * 10 == pytest.approx(weights[1] * 30) == pytest.approx(weights[3] * 60)


def test_early_stopping_keeps_the_best_evaluations_weights():
    import torch
    from transformers import TrainerControl, TrainerState

    from harness.strategies.training import _keep_best

    model = torch.nn.Linear(2, 2)
    callback, state, control = _keep_best(patience=2), TrainerState(), TrainerControl()
    for step, f1 in enumerate([0.5, 0.7, 0.7, 0.6], start=1):
        state.global_step = step
        with torch.no_grad():
            model.weight.fill_(step)
        callback.on_evaluate(None, state, control, metrics={"eval_macro_f1": f1, "eval_loss": 1.0}, model=model)
        assert control.should_training_stop is (step == 4)  # two evaluations without a better macro-F1
    callback.on_train_end(None, state, control, model=model)
    assert callback.step == 2 and torch.all(model.weight == 2)  # the first 0.7: a tie is no improvement


def test_an_evaluation_without_improvement_never_undoes_the_last_step_s_stop():
    import torch
    from transformers import TrainerControl, TrainerState

    from harness.strategies.training import _keep_best

    model = torch.nn.Linear(2, 2)
    callback, state, control = _keep_best(patience=3), TrainerState(), TrainerControl()
    callback.on_evaluate(None, state, control, metrics={"eval_macro_f1": 0.7, "eval_loss": 1.0}, model=model)
    control.should_training_stop = True  # what Trainer's flow callback sets at max_steps, before that evaluation
    callback.on_evaluate(None, state, control, metrics={"eval_macro_f1": 0.6, "eval_loss": 1.0}, model=model)
    assert control.should_training_stop  # it once read False here, and training ran on past its budget


@pytest.mark.slow
def test_the_defaults_learn_rare_classes_at_least_as_well_as_tfidf(imbalanced_csv, tmp_path):
    """The shipped settings (step budget from the data size, early stopping on a carved validation split, balanced
    class weights) on 30 labels of 50 down to 5 training items: macro-F1 weighs the rare labels like the rest."""
    from sklearn.metrics import f1_score

    cfg = compose(["experiment=finetune", "dataset=table", f"dataset.path={imbalanced_csv}",
                   "dataset.split_column=split", "dataset.id_column=id", f"output_dir={tmp_path}",
                   "strategies.finetune_encoder.single_item_sample=0"])
    dataset, services = instantiate(cfg.dataset), _services(cfg, tmp_path / "run")
    scores = {}
    for name in ("tfidf_logreg", "finetune_encoder"):
        strategy = instantiate(cfg.strategies[name], name=name).fit(dataset, services)
        predictions = list(strategy.predict(dataset.heldout))
        strategy.close()
        scores[name] = f1_score([p.gold for p in predictions], [p.pred for p in predictions], average="macro")
    assert scores["finetune_encoder"] >= scores["tfidf_logreg"], scores
    details = strategy.describe()
    assert details["stopped_early"] or details["train_steps"] == details["planned_steps"]
    assert details["validation_curve"] and details["n_validation"] >= 30  # every label has a validation item
    low, high = details["class_weight_range"]
    assert high / low == pytest.approx(10, rel=0.15)  # the 10x imbalance, undone in the loss
