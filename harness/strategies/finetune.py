"""finetune_encoder: fine-tune a transformer sequence classifier on the training split with transformers'
`Trainer`, save it in the run directory, and score the held-out set in batches. `FineTunedClassifier` is the fit
and predict skeleton it shares with finetune_llm (harness/strategies/finetune_llm.py).

A rerun or `harness resume` of the same run finds the saved model and reuses it when its fingerprint (training
settings, base weights, training items, labels) matches; the recorded training time then still counts as the
strategy's fit time, because it is what one retrain costs."""
from __future__ import annotations

import json
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from harness import modelfiles
from harness.data import content_hash, per_class_sample
from harness.errors import HarnessError
from harness.files import atomic_write
from harness.strategies import training
from harness.strategies.base import Prediction
from harness.strategies.classic import BatchedClassifier
from harness.strategies.training import TrainingSettings

META_FILE = "meta.json"  # written last: a model folder without it (an interrupted save) is never reused


def load_base(root: Path, labels: Sequence[str], **options):
    """A fresh sequence classifier on a local checkpoint directory (checked by the caller) and its tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with quiet_loading():
        model = AutoModelForSequenceClassification.from_pretrained(
            str(root), num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)}, local_files_only=True, **options)
    return model, AutoTokenizer.from_pretrained(str(root), local_files_only=True)


@contextmanager
def quiet_loading():
    """transformers reports a new classification head as MISSING weights (and a dropped LM head as UNEXPECTED), a
    warning table on every fit; a fresh head is the point of fine-tuning, so the report is silenced while loading
    (real loading errors still raise)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


class LogitsHead:
    """The shared batched predict loop's 'head': the fine-tuned model already scores every label."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = self.classes_ = np.asarray(labels, dtype=object)

    def predict(self, logits: np.ndarray) -> np.ndarray:
        return self.labels[np.argmax(logits, axis=1)]

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        """The softmax of the logits: the confidence harness.calibration judges."""
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)


class FineTunedClassifier(BatchedClassifier):
    """Fit (sample, fingerprint, reuse or train on a carved validation split, save) and batched predict for a
    model fine-tuned as a classifier. Subclasses say what the base is and how a trained model is saved:
    `_base_identity`, `_load_base`, `_save`, `_load_trained`, `artefact_file`; `device_` and `precision_` are
    where and how it trains.

    Latency per item is batch-amortised (`batch_size` items per forward pass); each record of a seeded sample of
    `single_item_sample` items also carries `single_item_latency_ms`, that item scored alone."""

    artefact_file = "model.safetensors"  # inside artifacts/<strategy>/model/

    def __init__(self, *, name: str, train_per_class: int | None = None, checkpoint_steps: int = 200,
                 num_threads: int | None = None, batch_size: int = 128, single_item_sample: int = 50,
                 **settings) -> None:
        super().__init__(name=name, head=None, batch_size=batch_size)
        self.settings = TrainingSettings(**settings)
        self.train_per_class = train_per_class
        self.checkpoint_steps = checkpoint_steps
        self.num_threads = num_threads
        self.single_item_sample = single_item_sample

    # ------------------------------------------------------------------------------------------- hooks
    def _base_identity(self) -> dict:
        raise NotImplementedError

    def _load_base(self, labels: Sequence[str]):
        raise NotImplementedError

    def _save(self, model, tokenizer, folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    def _load_trained(self, folder: Path):
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------ fit
    def fit(self, train, services):
        self._check()
        self.hardware_ = services.hardware
        import torch

        self.previous_threads_ = torch.get_num_threads()  # restored by close(): later strategies keep theirs
        self.threads_ = training.set_threads(self.num_threads)
        self._prepare_device()
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
        self.weights_ = (folder / "model" / self.artefact_file).relative_to(services.run_dir)
        # every saved file (weights, tokenizer, configs) as it was when training ended
        modelfiles.verify_dir(folder / "model", meta["files_sha256"], key=f"{self.name}'s {META_FILE}")
        self.model_, self.tokenizer_ = self._load_trained(folder / "model")
        self.model_.eval()
        id2label = self.model_.config.id2label
        self.head_ = LogitsHead([id2label[i] for i in range(len(id2label))])
        return self

    def _prepare_device(self) -> None:
        self.device_, self.precision_ = "cpu", "fp32"

    def _check(self) -> None:
        problems = self.settings.problems()
        if problems:
            key, value, rule = problems[0]
            raise HarnessError(f"strategy {self.name}: config key '{key}' must be {rule}, got {value!r}")

    def _fingerprint(self, examples, labels) -> str:
        return training.fingerprint({"settings": asdict(self.settings), **self._base_identity(),
                                     "train": content_hash(examples), "labels": list(labels)})

    def _train(self, examples, labels, folder: Path, fingerprint: str) -> dict:
        from transformers import set_seed

        t0 = time.perf_counter()
        set_seed(self.settings.seed)  # before the model exists: the new classifier layer's init is seeded too
        model, tokenizer = self._load_base(labels)
        learn, held = training.split_validation(examples, self.settings.validation_fraction, self.settings.seed,
                                              self.settings.validation_max_items)
        label_id = model.config.label2id
        features, validation = ([] if not part else training.encode(
            tokenizer, [ex.text for ex in part], [label_id[ex.label] for ex in part], self.settings.max_length)
            for part in (learn, held))
        checkpoints = training.claim(folder / "checkpoints", fingerprint)
        stats = training.train(model, tokenizer, features, validation, self.settings, checkpoints,
                               checkpoint_steps=self.checkpoint_steps, device=self.device_,
                               precision=self.precision_, eval_batch_size=self.batch_size)
        self._save(model, tokenizer, folder / "model")
        shutil.rmtree(checkpoints)  # the optimizer state is larger than the model; the model is saved
        # Seconds spent before an interruption count too: the fit costs what all of its training took.
        fit_seconds = time.perf_counter() - t0 + stats["resumed_at_seconds"]
        meta = {"fingerprint": fingerprint, "fit_seconds": fit_seconds, "n_train": len(examples),
                "n_validation": len(held), "threads": self.threads_, "device": self.device_,
                "precision": self.precision_, "artefact_bytes": (folder / "model" / self.artefact_file).stat().st_size,
                "files_sha256": modelfiles.hash_dir(folder / "model"), **stats}
        atomic_write(folder / META_FILE, json.dumps(meta, indent=2))
        return meta

    def artefacts(self) -> dict[str, str]:
        return {str(self.weights_): self.training_["files_sha256"][self.artefact_file]}

    def describe(self) -> dict:
        t = self.training_
        losses = t.get("losses") or [float("nan")]
        return {"reused_model": self.reused_model_, "train_seconds": t["train_seconds"],
                "train_items_per_s": t["train_items_per_s"], "train_steps": t["steps"],
                "planned_steps": t["planned_steps"], "train_epochs": t["epochs"], "stopped_early": t["stopped_early"],
                "n_validation": t["n_validation"], "validation_curve": t["validation_curve"],
                "best_step": t["best_step"], "class_weight_range": t["class_weight_range"],
                "train_loss_first": losses[0], "train_loss_last": losses[-1], "torch_threads": self.threads_,
                "device": t["device"], "precision": t["precision"], "artefact_bytes": t["artefact_bytes"],
                "settings": asdict(self.settings)}

    # -------------------------------------------------------------------------------------------- predict
    def _features(self, texts, desc=None):
        import torch

        t0 = time.perf_counter()
        batch = self.tokenizer_(list(texts), padding=True, truncation=True, max_length=self.settings.max_length,
                                return_tensors="pt").to(self.device_)
        # autocast as in training: a bfloat16 base computes with the float32 layers trained on it
        with torch.inference_mode(), torch.autocast(self.device_, dtype=torch.bfloat16 if self.precision_ == "bf16"
                                                     else torch.float16, enabled=self.precision_ != "fp32"):
            logits = self.model_(**batch).logits.float().cpu().numpy()
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


class FineTunedEncoder(FineTunedClassifier):
    """A transformer fine-tuned end to end as a classifier (default base: all-MiniLM-L6-v2), on the CPU."""

    def __init__(self, *, name: str, base: str, base_name: str = "", files: Mapping[str, str] | None = None,
                 **common) -> None:
        super().__init__(name=name, **common)
        self.base, self.base_name = base, base_name
        self.files = files  # every file of the base directory -> its sha256 (harness.modelfiles.verify_dir)
        self.model_name = f"{base_name or Path(base).name} fine-tuned"

    def _base_identity(self) -> dict:
        # Without pinned hashes, the base's actual files identify it (a replaced checkpoint is not reused).
        return {"base": self.base, "files": dict(self.files or modelfiles.hash_dir(modelfiles.resolve(self.base)))}

    def _load_base(self, labels):
        root = modelfiles.verify_dir(modelfiles.resolve(self.base), self.files, key=f"strategies.{self.name}.files")
        return load_base(root, labels)

    def _load_trained(self, folder: Path):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        return (AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True),
                AutoTokenizer.from_pretrained(str(folder), local_files_only=True))


def _saved_meta(folder: Path, fingerprint: str) -> dict | None:
    """The saved model's metadata if it was trained with exactly this fingerprint."""
    path = folder / META_FILE
    if not path.is_file():
        return None
    meta = json.loads(path.read_text())
    return meta if meta.get("fingerprint") == fingerprint else None
