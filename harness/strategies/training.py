"""The training loop the fine-tuned strategies share: transformers' `Trainer` on a step budget chosen from the data
size, early stopping on a validation split carved from the training items, class weights for imbalanced labels,
checkpoints an interrupted training resumes from, and the fingerprint under which a rerun reuses a saved model."""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from harness.files import atomic_write

CLOCK_FILE = "harness_train_seconds.json"  # in each checkpoint: training seconds up to it
FINGERPRINT_FILE = "fingerprint"  # in the checkpoints folder: whose training the checkpoints belong to
# The measured BANKING77 fine-tune (93.1%) saw 40,000 training items (4 passes over 10,003). `epochs: null` aims
# for that many, within 4 to 20 passes: a small table gets more passes (rare classes are otherwise seen a few
# dozen times), a large one no fewer than 4; early stopping ends whatever the validation split says is enough.
TARGET_TRAINING_ITEMS, MIN_AUTO_EPOCHS, MAX_AUTO_EPOCHS = 40_000, 4.0, 20.0
CLASS_WEIGHTS = ("balanced", "none")


@dataclass(frozen=True)
class TrainingSettings:
    """Everything that changes the trained weights (and so the fingerprint)."""

    epochs: float | None = None  # None: chosen from the data size (see TARGET_TRAINING_ITEMS)
    learning_rate: float = 2e-4
    train_batch_size: int = 32
    max_length: int = 64
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    min_steps: int = 0  # small training sets still get this many optimizer steps (more epochs)
    group_by_length: bool = True  # batches of similar lengths: less padding, so less compute per item
    validation_fraction: float = 0.1  # of each class, carved from the training items for early stopping
    validation_max_items: int = 500  # in all: a large table's split shrinks to this (its fraction scaled down)
    early_stopping_patience: int = 3  # evaluations without a better validation macro-F1 before stopping
    evals_per_epoch: int = 2
    class_weight: str = "balanced"  # balanced: loss weights n / (classes x n_class); none: plain cross-entropy
    seed: int = 0

    def epochs_for(self, n_items: int) -> float:
        if self.epochs is not None:
            return self.epochs
        return min(max(TARGET_TRAINING_ITEMS / max(n_items, 1), MIN_AUTO_EPOCHS), MAX_AUTO_EPOCHS)

    def steps(self, n_items: int) -> int:
        per_epoch = math.ceil(n_items / self.train_batch_size)
        return max(math.ceil(per_epoch * self.epochs_for(n_items)), self.min_steps)

    def eval_steps(self, n_items: int) -> int:
        return max(1, math.ceil(math.ceil(n_items / self.train_batch_size) / self.evals_per_epoch))

    def problems(self) -> list[tuple[str, object, str]]:
        """(key, value, rule) for every setting out of range."""
        rules = (("epochs", self.epochs, self.epochs is None or self.epochs > 0, "> 0 or null"),
                 ("learning_rate", self.learning_rate, self.learning_rate > 0, "> 0"),
                 ("train_batch_size", self.train_batch_size, self.train_batch_size >= 1, ">= 1"),
                 ("max_length", self.max_length, self.max_length >= 2, ">= 2"),
                 ("warmup_ratio", self.warmup_ratio, 0 <= self.warmup_ratio < 1, "in [0, 1)"),
                 ("min_steps", self.min_steps, self.min_steps >= 0, ">= 0"),
                 ("validation_fraction", self.validation_fraction, 0 <= self.validation_fraction < 0.5,
                  "in [0, 0.5)"),
                 ("validation_max_items", self.validation_max_items, self.validation_max_items >= 1, ">= 1"),
                 ("early_stopping_patience", self.early_stopping_patience, self.early_stopping_patience >= 0, ">= 0"),
                 ("evals_per_epoch", self.evals_per_epoch, self.evals_per_epoch >= 1, ">= 1"),
                 ("class_weight", self.class_weight, self.class_weight in CLASS_WEIGHTS,
                  f"one of {', '.join(CLASS_WEIGHTS)}"))
        return [(key, value, rule) for key, value, ok, rule in rules if not ok]


def set_threads(num_threads: int | None) -> int:
    """Sets torch's intra-op threads: `num_threads`, or (None) every core this process may use. On an idle 2-core
    machine two threads trained MiniLM at 61.7 items/s against 42.4 with one; while other jobs held the cores,
    two ran several times slower than one (each parallel section waits for the slower thread), hence the option."""
    import torch

    threads = num_threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    return threads


def split_validation(examples: Sequence, fraction: float, seed: int,
                     max_items: int | None = None) -> tuple[list, list]:
    """(train, validation): `fraction` of every class (rounded, so a class of 5 or more gives at least one item
    at 0.1: rare classes count in the validation macro-F1), seeded, each in its original order. With `max_items`,
    a large table's fraction is scaled down to about that many items in all: a validation macro-F1 needs a few
    items a class, and every item more it holds back is one fewer to learn from (BANKING77: 10% of each label
    held back cost 0.7 points of test accuracy against training on all 10,003)."""
    from harness.data import label_positions

    if max_items is not None and len(examples):
        fraction = min(fraction, max_items / len(examples))
    rng, held = np.random.default_rng(seed), set()
    for positions in label_positions(examples).values():
        n_val = min(int(fraction * len(positions) + 0.5), len(positions) - 1)
        held.update(rng.permutation(positions)[:n_val].tolist())
    return ([ex for i, ex in enumerate(examples) if i not in held], [ex for i, ex in enumerate(examples) if i in held])


def encode(tokenizer, texts: Sequence[str], label_ids: Sequence[int], max_length: int) -> list[dict]:
    """Tokenised training items, unpadded: the collator pads each batch to its own longest item."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    return [{**{key: values[i] for key, values in encoded.items()}, "labels": int(label_ids[i])}
            for i in range(len(texts))]


def class_weights(label_ids: Sequence[int], n_labels: int) -> np.ndarray:
    """scikit-learn's 'balanced' weights, n / (classes x n_class); a label without items gets 0."""
    counts = np.bincount(np.asarray(label_ids), minlength=n_labels).astype(float)
    present = counts > 0
    weights = np.zeros(n_labels)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def train(model, tokenizer, features: list[dict], validation: list[dict], settings: TrainingSettings,
          work_dir: Path, *, checkpoint_steps: int = 0, device: str = "cpu", precision: str = "fp32",
          eval_batch_size: int = 128) -> dict:
    """Trains `model` in place with transformers' Trainer; returns measured statistics and the validation curve.

    With `validation` items, macro-F1 on them is measured `evals_per_epoch` times an epoch, training stops after
    `early_stopping_patience` evaluations without improvement, and the best evaluation's weights are what the
    model ends with. With `checkpoint_steps`, a checkpoint (weights, optimizer, schedule, sampler state) is kept in
    `work_dir` that often, and training continues from the last one found there: an interrupted training loses
    at most that many steps. Measured seconds add up across the pieces."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    steps = settings.steps(len(features))
    args = TrainingArguments(
        output_dir=str(work_dir), max_steps=steps, per_device_train_batch_size=settings.train_batch_size,
        per_device_eval_batch_size=eval_batch_size, learning_rate=settings.learning_rate,
        lr_scheduler_type="linear", warmup_steps=settings.warmup_ratio, weight_decay=settings.weight_decay,
        optim="adamw_torch", seed=settings.seed, data_seed=settings.seed, use_cpu=device == "cpu",
        bf16=precision == "bf16", fp16=precision == "fp16", dataloader_pin_memory=False,
        logging_steps=max(1, steps // 20), eval_strategy="steps" if validation else "no",
        eval_steps=settings.eval_steps(len(features)),
        # save_steps must be positive even when nothing is saved
        save_strategy="steps" if checkpoint_steps else "no", save_steps=checkpoint_steps or 500, save_total_limit=1,
        train_sampling_strategy="group_by_length" if settings.group_by_length else "random",
        report_to="none", disable_tqdm=False)
    resume = get_last_checkpoint(str(work_dir)) if checkpoint_steps and work_dir.is_dir() else None
    clock, best = _clock(_recorded_seconds(resume)), _keep_best(settings.early_stopping_patience)
    weights = (class_weights([f["labels"] for f in features], model.config.num_labels)
               if settings.class_weight == "balanced" else None)
    trainer = Trainer(model=model, args=args, train_dataset=features, eval_dataset=validation or None,
                      callbacks=[clock, best], data_collator=DataCollatorWithPadding(tokenizer),
                      processing_class=tokenizer, compute_metrics=_metrics,
                      compute_loss_func=None if weights is None else _weighted_loss(weights))
    trainer.train(resume_from_checkpoint=resume)
    return {**_statistics(trainer, clock, features, settings, steps, resume, weights), "best_step": best.step}


def _statistics(trainer, clock, features, settings, planned_steps, resume, weights) -> dict:
    seconds = clock.seconds()
    state = trainer.state
    losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
    curve = [{"step": e["step"], "epoch": round(e["epoch"], 3), "macro_f1": e["eval_macro_f1"],
              "accuracy": e["eval_accuracy"], "loss": e["eval_loss"]} for e in state.log_history if "eval_macro_f1" in e]
    full_epochs, extra_steps = divmod(state.global_step, math.ceil(len(features) / settings.train_batch_size))
    items = full_epochs * len(features) + min(extra_steps * settings.train_batch_size, len(features))
    return {"steps": state.global_step, "planned_steps": planned_steps, "epochs": settings.epochs_for(len(features)),
            "train_seconds": seconds, "train_items": items, "train_items_per_s": items / seconds, "losses": losses,
            "validation_curve": curve,
            "stopped_early": state.global_step < planned_steps,
            "class_weight_range": [float(weights[weights > 0].min()), float(weights.max())] if weights is not None
            else None, "resumed_at_seconds": clock.before, "resumed_from": Path(resume).name if resume else None}


def _metrics(prediction) -> dict:
    from sklearn.metrics import f1_score

    predicted = np.argmax(prediction.predictions, axis=1)
    gold = prediction.label_ids
    return {"macro_f1": float(f1_score(gold, predicted, average="macro", labels=np.unique(gold))),
            "accuracy": float(np.mean(predicted == gold))}


def _weighted_loss(weights: np.ndarray):
    import torch

    tensor = torch.tensor(weights, dtype=torch.float32)

    def loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"]
        # float32 whatever the training precision: the weighted mean over a batch is where bf16 rounding bites
        return torch.nn.functional.cross_entropy(logits.float(), labels, weight=tensor.to(logits.device))

    return loss


def _keep_best(patience: int):
    """A Trainer callback that keeps (in memory) the trainable weights of the best evaluation so far (validation
    macro-F1; a tie is no improvement), puts them back when training ends, and stops training after `patience`
    evaluations without a better one (0: never). Trainer's own load_best_model_at_end would save a
    full checkpoint at every evaluation: on a small table that is several seconds per few-second step."""
    from transformers import TrainerCallback

    class KeepBest(TrainerCallback):
        def __init__(self) -> None:
            self.score, self.step, self.weights, self.misses = None, None, None, 0

        def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
            score = metrics["eval_macro_f1"]
            if self.score is None or score > self.score:
                self.score, self.step, self.misses = score, state.global_step, 0
                self.weights = {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters()
                                if p.requires_grad}
            else:
                self.misses += 1
                if patience and self.misses >= patience:  # never unset: the last step's own stop comes first
                    control.should_training_stop = True

        def on_train_end(self, args, state, control, model=None, **kwargs):
            if self.weights is not None:
                import torch

                with torch.no_grad():
                    for name, p in model.named_parameters():
                        if name in self.weights:
                            p.copy_(self.weights[name])

    return KeepBest()


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


def fingerprint(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def claim(checkpoints: Path, fingerprint: str) -> Path:
    """The checkpoints folder for this fingerprint: checkpoints of another training (other settings or data)
    are removed rather than resumed."""
    marker = checkpoints / FINGERPRINT_FILE
    if checkpoints.exists() and not (marker.is_file() and marker.read_text() == fingerprint):
        shutil.rmtree(checkpoints)
    checkpoints.mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint)
    return checkpoints
