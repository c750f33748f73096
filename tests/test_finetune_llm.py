"""finetune_llm: the settings it refuses (no model loaded), and (slow) a LoRA adapter on the real SmolLM2-135M
GGUF, dequantised through transformers' GGUF loader, trained a few steps on the tiny BANKING77 slice."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config import compose, instantiate
from harness.errors import HarnessError
from harness.run.services import Services
from harness.strategies.base import StageInfo
from harness.strategies.finetune_llm import SOURCE_FILE
from tests.conftest import tiny_overrides

ADD = "+strategy@strategies.finetune_llm=finetune_llm"
# One pass over 4 items per label (2 steps of 16) at a high rate, no validation split: the fewest steps that
# still exercise training end to end.
QUICK = ["model=smollm2-135m", "strategies.finetune_llm.epochs=1", "strategies.finetune_llm.train_per_class=4", "strategies.finetune_llm.learning_rate=2e-3",
         "strategies.finetune_llm.validation_fraction=0", "strategies.finetune_llm.max_length=32",
         "strategies.finetune_llm.single_item_sample=2"]


def _setup(tiny_csv, tmp_path, *extra):
    cfg = compose(["experiment=classic", *tiny_overrides(tiny_csv, tmp_path), ADD, *QUICK, *extra])
    strategy = instantiate(cfg.strategies.finetune_llm, name="finetune_llm")
    return cfg, strategy, instantiate(cfg.dataset), Services(hardware=instantiate(cfg.hardware),
                                                             run_dir=tmp_path / "run", seed=0)


@pytest.mark.parametrize("extra, message", [
    (["strategies.finetune_llm.hf_dir=/models/x"], "give config key 'gguf' .* or 'hf_dir' .*, not both or neither"),
    (["strategies.finetune_llm.device=tpu"], "config key 'device' is 'tpu'; known: auto, cpu, cuda"),
    (["strategies.finetune_llm.dtype=int8"], "config key 'dtype' is 'int8'; known: auto, float32, bfloat16, float16"),
    (["strategies.finetune_llm.qlora=true", "strategies.finetune_llm.device=cpu"], "'qlora' needs a GPU"),
    (["strategies.finetune_llm.class_weight=inverse"], "'class_weight' must be one of balanced, none"),
])
def test_refuses_bad_settings_naming_the_key(extra, message, tiny_csv, tmp_path):
    _, strategy, dataset, services = _setup(tiny_csv, tmp_path, *extra)
    with pytest.raises(HarnessError, match=message):
        strategy.fit(dataset, services)


def test_the_default_base_is_the_runs_own_model(tiny_csv, tmp_path):
    cfg, strategy, _, _ = _setup(tiny_csv, tmp_path)
    assert strategy.gguf == cfg.model.gguf and strategy.model_name == f"{cfg.model.name} + LoRA"
    assert strategy.serving == "gpu" and strategy.family == "trained"


@pytest.mark.slow
def test_lora_on_the_real_gguf_predicts_every_heldout_item_and_is_reused(tiny_csv, tmp_path):
    _, strategy, dataset, services = _setup(tiny_csv, tmp_path)
    strategy.fit(dataset, services)
    try:
        predictions = list(strategy.predict(dataset.heldout))
        record = strategy.fit_record(wall_seconds=1.0, hardware=services.hardware, n_train=len(dataset.train),
                                     stage=StageInfo(base="finetune_llm"))
    finally:
        strategy.close()
    assert [p.item_id for p in predictions] == [ex.id for ex in dataset.heldout]
    assert all(p.pred in dataset.labels and p.error is None and p.latency_ms > 0 for p in predictions)
    assert sum("single_item_latency_ms" in p.extra for p in predictions) == 2
    # a LoRA adapter, not a copy of the model: r=8 on q_proj/v_proj plus the new head is under 2 MB of 540 MB
    [(adapter, digest)] = record.artefacts.items()
    assert adapter.endswith("adapter_model.safetensors") and len(digest) == 64
    assert 0 < record.details["artefact_bytes"] < 2_000_000 and record.details["lora"]["r"] == 8
    assert record.serving == "gpu" and record.fit_seconds > 0 and record.fit_cost_usd > 0
    assert record.n_train == 4 * len(dataset.labels) and record.details["train_steps"] == 2  # one pass of 16-item batches
    # the dequantised checkpoint sits beside the GGUF, recording which file it came from
    gguf = strategy.gguf
    folder = Path(gguf["cache_dir"]) / f"{Path(gguf['path']).stem}.{gguf['sha256'][:12]}.hf"
    source = json.loads((folder / SOURCE_FILE).read_text())
    assert source["gguf_sha256"] == gguf["sha256"] and "model.safetensors" in source["files"]
    again = _setup(tiny_csv, tmp_path)[1].fit(dataset, services)
    try:
        assert again.reused_model_ and again.fit_seconds_ == strategy.fit_seconds_
        assert [p.pred for p in again.predict(dataset.heldout)] == [p.pred for p in predictions]
    finally:
        again.close()
