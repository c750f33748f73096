"""finetune_encoder: fine-tune a transformer sequence classifier on the training split with transformers'
`Trainer` (CPU), save it in the run directory, and score the held-out set in batches.

A rerun or `harness resume` of the same run finds the saved model and reuses it when its fingerprint (training
settings, base weights, training items, labels) matches; the recorded training time then still counts as the
strategy's fit time, because it is what one retrain costs."""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from harness import modelfiles
from harness.data import content_hash, per_class_sample
from harness.errors import HarnessError
from harness.files import atomic_write
from harness.strategies.base import Prediction
from harness.strategies.classic import BatchedClassifier

META_FILE = "meta.json"  # written last: a model folder without it (an interrupted save) is never reused
CLOCK_FILE = "harness_train_seconds.json"  # in each checkpoint: training seconds up to it
FINGERPRINT_FILE = "fingerprint"  # in the checkpoints folder: whose training the checkpoints belong to


@dataclass(frozen=True)
class TrainingSettings:
    """Everything that changes the trained weights (and so the fingerprint)."""

    epochs: float = 4.0
    learning_rate: float = 2e-4
    batch_size: int = 32
    max_length: int = 64
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    min_steps: int = 0  # small training sets still get this many optimizer steps (more epochs)
    group_by_length: bool = True  # batches of similar lengths: less padding, so less compute per item
    seed: int = 0

    def steps(self, n_items: int) -> int:
        per_epoch = math.ceil(n_items / self.batch_size)
        return max(math.ceil(per_epoch * self.epochs), self.min_steps)


def set_threads(num_threads: int | None) -> int:
    """Sets torch's intra-op threads: `num_threads`, or (None) every core this process may use. Measured on a
    shared 2-vCPU machine, two threads trained about 7x slower than one while other jobs ran: each parallel
    section waits for the slower thread, so oversubscription hurts more than one core helps."""
    import torch

    threads = num_threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    return threads


def load_base(base: str, weights_file: str, sha256: str | None, labels: Sequence[str]):
    """A fresh sequence classifier on a local checkpoint (weights checked first) and its tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    root = modelfiles.resolve(base)
    modelfiles.verify(root / weights_file, sha256)
    # transformers reports the new classification head as MISSING weights, a warning table on every fit; a fresh
    # head is the point of fine-tuning, so the report is silenced here (real loading errors still raise).
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(root), num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)}, local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, AutoTokenizer.from_pretrained(str(root), local_files_only=True)


def encode(tokenizer, texts: Sequence[str], label_ids: Sequence[int], max_length: int) -> list[dict]:
    """Tokenised training items, unpadded: the collator pads each batch to its own longest item."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    return [{**{key: values[i] for key, values in encoded.items()}, "labels": int(label_ids[i])}
            for i in range(len(texts))]


def train(model, tokenizer, features: list[dict], settings: TrainingSettings, work_dir: Path, *,
          checkpoint_steps: int = 0) -> dict:
    """Trains `model` in place with transformers' Trainer; returns measured statistics.

    With `checkpoint_steps`, a checkpoint (weights, optimizer, schedule, sampler state) is kept in `work_dir`
    every that many steps, and training continues from the last one found there: a long CPU training that is
    interrupted loses at most `checkpoint_steps` steps. Measured seconds add up across the pieces."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    steps = settings.steps(len(features))
    args = TrainingArguments(
        output_dir=str(work_dir), max_steps=steps,
        per_device_train_batch_size=settings.batch_size, learning_rate=settings.learning_rate,
        lr_scheduler_type="linear", warmup_steps=settings.warmup_ratio, weight_decay=settings.weight_decay,
        optim="adamw_torch", seed=settings.seed, data_seed=settings.seed, use_cpu=True,
        dataloader_pin_memory=False, logging_steps=max(1, steps // 20),
        # save_steps must be positive even when nothing is saved
        save_strategy="steps" if checkpoint_steps else "no", save_steps=checkpoint_steps or 500,
        save_total_limit=1, train_sampling_strategy="group_by_length" if settings.group_by_length else "random",
        report_to="none", disable_tqdm=False)
    resume = get_last_checkpoint(str(work_dir)) if checkpoint_steps and work_dir.is_dir() else None
    clock = _clock(_recorded_seconds(resume))
    trainer = Trainer(model=model, args=args, train_dataset=features, callbacks=[clock],
                      data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)
    trainer.train(resume_from_checkpoint=resume)
    seconds = clock.seconds()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    full_epochs, extra_steps = divmod(trainer.state.global_step, math.ceil(len(features) / settings.batch_size))
    items = full_epochs * len(features) + min(extra_steps * settings.batch_size, len(features))
    return {"steps": trainer.state.global_step, "train_seconds": seconds, "train_items": items,
            "train_items_per_s": items / seconds, "losses": losses, "resumed_at_seconds": clock.before,
            "resumed_from": Path(resume).name if resume else None}


def _recorded_seconds(checkpoint: str | None) -> float:
    path = Path(checkpoint or "") / CLOCK_FILE
    return float(json.loads(path.read_text())["train_seconds"]) if checkpoint and path.is_file() else 0.0


def _clock(before: float):
    """A Trainer callback measuring training seconds (`before` from earlier pieces included) and writing the
    running total into each checkpoint it saves. Built here so transformers is imported only when training."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.before, self.t0 = before, time.perf_counter()

        def seconds(self) -> float:
            return self.before + time.perf_counter() - self.t0

        def on_save(self, args, state, control, **kwargs):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                atomic_write(folder / CLOCK_FILE, json.dumps({"train_seconds": self.seconds()}))

    return Clock()


class LogitsHead:
    """The shared batched predict loop's 'head': the fine-tuned model already scores every label."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = np.asarray(labels, dtype=object)

    def predict(self, logits: np.ndarray) -> np.ndarray:
        return self.labels[np.argmax(logits, axis=1)]


class FineTunedEncoder(BatchedClassifier):
    """A transformer fine-tuned end to end as a classifier (default base: all-MiniLM-L6-v2).

    Latency per item is batch-amortised (`batch_size` items per forward pass); each record of a seeded sample of
    `single_item_sample` items also carries `single_item_latency_ms`, that item scored alone."""

    def __init__(self, *, name: str, base: str, base_name: str = "", weights_file: str = "model.safetensors",
                 sha256: str | None = None, epochs: float = 4.0, learning_rate: float = 2e-4,
                 train_batch_size: int = 32, max_length: int = 64, warmup_ratio: float = 0.1,
                 weight_decay: float = 0.01, min_steps: int = 0, group_by_length: bool = True,
                 train_per_class: int | None = None, seed: int = 0,
                 checkpoint_steps: int = 200, num_threads: int | None = 1, batch_size: int = 128,
                 single_item_sample: int = 50) -> None:
        super().__init__(name=name, head=None, batch_size=batch_size)
        self.base, self.base_name, self.weights_file, self.sha256 = base, base_name, weights_file, sha256
        self.settings = TrainingSettings(epochs=epochs, learning_rate=learning_rate, batch_size=train_batch_size,
                                         max_length=max_length, warmup_ratio=warmup_ratio,
                                         weight_decay=weight_decay, min_steps=min_steps,
                                         group_by_length=group_by_length, seed=seed)
        self.train_per_class = train_per_class
        self.checkpoint_steps = checkpoint_steps
        self.num_threads = num_threads
        self.single_item_sample = single_item_sample
        self.model_name = f"{base_name or Path(base).name} fine-tuned"

    # ------------------------------------------------------------------------------------------------ fit
    def fit(self, train, services):
        self._check()
        self.hardware_ = services.hardware
        import torch

        self.previous_threads_ = torch.get_num_threads()  # restored by close(): later strategies keep theirs
        self.threads_ = set_threads(self.num_threads)
        examples = per_class_sample(train.train, self.train_per_class, self.settings.seed)
        folder = services.artifacts(self.name)
        fingerprint = self._fingerprint(examples, train.labels)
        meta = _saved_meta(folder, fingerprint)
        self.reused_model_ = meta is not None
        if meta is None:
            meta = self._train(examples, train.labels, folder, fingerprint)
        self.training_ = meta
        self.fit_seconds_ = float(meta["fit_seconds"])
        self.n_train_ = int(meta["n_train"])
        self.weights_ = (folder / "model" / "model.safetensors").relative_to(services.run_dir)
        self._load(folder, meta)
        return self

    def _check(self) -> None:
        s = self.settings
        rules = (("epochs", s.epochs, s.epochs > 0, "> 0"),
                 ("learning_rate", s.learning_rate, s.learning_rate > 0, "> 0"),
                 ("train_batch_size", s.batch_size, s.batch_size >= 1, ">= 1"),
                 ("max_length", s.max_length, s.max_length >= 2, ">= 2"),
                 ("warmup_ratio", s.warmup_ratio, 0 <= s.warmup_ratio < 1, "in [0, 1)"),
                 ("min_steps", s.min_steps, s.min_steps >= 0, ">= 0"))
        for key, value, ok, rule in rules:
            if not ok:
                raise HarnessError(f"strategy {self.name}: config key '{key}' must be {rule}, got {value!r}")

    def _fingerprint(self, examples, labels) -> str:
        # Without a pinned hash, the base's actual weights identify it (a replaced checkpoint is not reused).
        weights = self.sha256 or modelfiles.sha256_of(modelfiles.resolve(self.base) / self.weights_file)
        identity = {"settings": asdict(self.settings), "base": self.base, "weights_sha256": weights,
                    "train": content_hash(examples), "labels": list(labels)}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def _train(self, examples, labels, folder: Path, fingerprint: str) -> dict:
        from transformers import set_seed

        t0 = time.perf_counter()
        set_seed(self.settings.seed)  # before the model exists: the new classifier layer's init is seeded too
        model, tokenizer = load_base(self.base, self.weights_file, self.sha256, labels)
        label_id = model.config.label2id
        features = encode(tokenizer, [ex.text for ex in examples], [label_id[ex.label] for ex in examples],
                          self.settings.max_length)
        checkpoints = _claim(folder / "checkpoints", fingerprint)
        stats = train(model, tokenizer, features, self.settings, checkpoints, checkpoint_steps=self.checkpoint_steps)
        model.save_pretrained(folder / "model")
        tokenizer.save_pretrained(folder / "model")
        shutil.rmtree(checkpoints)  # the optimizer state is three times the model's size; the model is saved
        # Seconds spent before an interruption count too: the fit costs what all of its training took.
        fit_seconds = time.perf_counter() - t0 + stats["resumed_at_seconds"]
        meta = {"fingerprint": fingerprint, "fit_seconds": fit_seconds, "n_train": len(examples),
                "threads": self.threads_, "weights_sha256": modelfiles.sha256_of(folder / "model" / "model.safetensors"),
                **stats}
        atomic_write(folder / META_FILE, json.dumps(meta, indent=2))
        return meta

    def _load(self, folder: Path, meta: dict) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        modelfiles.verify(folder / "model" / "model.safetensors", meta["weights_sha256"])
        self.model_ = AutoModelForSequenceClassification.from_pretrained(str(folder / "model"),
                                                                         local_files_only=True).eval()
        self.tokenizer_ = AutoTokenizer.from_pretrained(str(folder / "model"), local_files_only=True)
        id2label = self.model_.config.id2label
        self.head_ = LogitsHead([id2label[i] for i in range(len(id2label))])

    def artefacts(self) -> dict[str, str]:
        return {str(self.weights_): self.training_["weights_sha256"]}

    def describe(self) -> dict:
        losses = self.training_.get("losses") or [float("nan")]
        return {"reused_model": self.reused_model_,
                "train_seconds": self.training_["train_seconds"], "train_items_per_s": self.training_["train_items_per_s"],
                "train_steps": self.training_["steps"],
                "train_loss_first": losses[0], "train_loss_last": losses[-1], "torch_threads": self.threads_,
                "settings": asdict(self.settings)}

    # -------------------------------------------------------------------------------------------- predict
    def _features(self, texts, desc=None):
        import torch

        t0 = time.perf_counter()
        batch = self.tokenizer_(list(texts), padding=True, truncation=True, max_length=self.settings.max_length,
                                return_tensors="pt")
        with torch.inference_mode():
            logits = self.model_(**batch).logits.float().numpy()
        return logits, np.full(len(texts), (time.perf_counter() - t0) / max(len(texts), 1))

    def close(self) -> None:
        if getattr(self, "previous_threads_", None):
            import torch

            torch.set_num_threads(self.previous_threads_)
        super().close()

    def predict(self, items: Sequence) -> Iterator[Prediction]:
        single_ms = self._single_item_latencies(items)
        for prediction in super().predict(items):
            if prediction.item_id in single_ms:
                prediction.extra["single_item_latency_ms"] = single_ms[prediction.item_id]
            yield prediction

    def _single_item_latencies(self, items: Sequence) -> dict[str, float]:
        """Honest one-at-a-time latency (tokenise, forward, argmax) on a seeded sample of the items."""
        rng = np.random.default_rng(self.settings.seed)
        sample = rng.permutation(len(items))[:self.single_item_sample]
        latencies = {}
        for index in sample:
            t0 = time.perf_counter()
            self.head_.predict(self._features([items[index].text])[0])
            latencies[items[index].id] = 1000.0 * (time.perf_counter() - t0)
        return latencies


def _claim(checkpoints: Path, fingerprint: str) -> Path:
    """The checkpoints folder for this fingerprint: checkpoints of another training (other settings or data)
    are removed rather than resumed."""
    marker = checkpoints / FINGERPRINT_FILE
    if checkpoints.exists() and not (marker.is_file() and marker.read_text() == fingerprint):
        shutil.rmtree(checkpoints)
    checkpoints.mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint)
    return checkpoints


def _saved_meta(folder: Path, fingerprint: str) -> dict | None:
    """The saved model's metadata if it was trained with exactly this fingerprint."""
    path = folder / META_FILE
    if not path.is_file():
        return None
    meta = json.loads(path.read_text())
    return meta if meta.get("fingerprint") == fingerprint else None
