"""finetune_llm: a LoRA adapter (peft) on an open-weight causal LM, trained as a classifier over the last token
(`AutoModelForSequenceClassification`: LlamaForSequenceClassification, Qwen2ForSequenceClassification, ...).

The base is a local GGUF file (by default the run's own model, so the prompted strategies and this one share their
weights), dequantised once by transformers' GGUF loader into a safetensors checkpoint kept beside the GGUF and
hash-checked on every use, or a local Hugging Face checkpoint directory. Training is finetune_encoder's loop
(harness/strategies/training.py): same step budget, validation split, class weights, checkpoints and reuse. The
saved artefact is the adapter (with the new classification layer); serving it needs the base model loaded too,
which is why its fit record says serving "gpu"."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Mapping, Sequence

from harness import modelfiles
from harness.errors import HarnessError
from harness.files import atomic_write
from harness.strategies.finetune import FineTunedClassifier, load_base, quiet_loading

SOURCE_FILE = "harness_source.json"  # in a dequantised checkpoint, written last: which GGUF, which weights
DEVICES, DTYPES = ("auto", "cpu", "cuda"), ("auto", "float32", "bfloat16", "float16")
PRECISION = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def dequantised(gguf: Path, gguf_sha256: str, cache_dir: Path) -> Path:
    """A Hugging Face checkpoint (float32 safetensors, tokenizer) of the GGUF file, made once in `cache_dir` and
    reused while every file's sha256 matches what was recorded when it was made (the record pins the others)."""
    target = cache_dir / f"{gguf.stem}.{gguf_sha256[:12]}.hf"
    source = target / SOURCE_FILE
    if source.is_file():
        recorded = json.loads(source.read_text())
        if recorded.get("gguf_sha256") == gguf_sha256:
            return modelfiles.verify_dir(target, {**recorded["files"], SOURCE_FILE: modelfiles.sha256_of(source)},
                                         key=f"{target.name}/{SOURCE_FILE}")
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        # dequantize=True: a dense model trains (packed GGUF layers do not) and can be saved as safetensors
        with quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                         quantization_config=GgufConfig(dequantize=True))
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        atomic_write(partial / SOURCE_FILE, json.dumps({"gguf": gguf.name, "gguf_sha256": gguf_sha256,
                                                        "files": modelfiles.hash_dir(partial)}))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)  # a concurrent run sees the old checkpoint or the whole new one
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


class FineTunedLLM(FineTunedClassifier):
    """LoRA (or QLoRA: 4-bit base, where bitsandbytes and a GPU are present) on a causal LM as a classifier."""

    serving = "gpu"  # the adapter is served on top of its base model
    artefact_file = "adapter_model.safetensors"

    def __init__(self, *, name: str, gguf: Mapping | None = None, hf_dir: str | None = None,
                 files: Mapping[str, str] | None = None, base_name: str = "",
                 lora_r: int = 8, lora_alpha: int = 16, lora_dropout: float = 0.05,
                 target_modules: Sequence[str] = ("q_proj", "v_proj"), device: str = "auto", dtype: str = "auto",
                 qlora: bool = False, **common) -> None:
        super().__init__(name=name, **common)
        self.gguf, self.hf_dir, self.files = gguf, hf_dir, files
        self.lora = {"r": lora_r, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout,
                     # peft's "all-linear" is a string; a list names the modules
                     "target_modules": target_modules if isinstance(target_modules, str) else list(target_modules)}
        self.device, self.dtype, self.qlora = device, dtype, qlora
        self.model_name = f"{base_name or Path(hf_dir or (gguf or {}).get('file_name') or 'llm').name} + LoRA"

    # ------------------------------------------------------------------------------------------ the base
    def _check(self) -> None:
        super()._check()
        if bool(self.gguf) == bool(self.hf_dir):
            raise HarnessError(f"strategy {self.name}: give config key 'gguf' (a GGUF file: the run's model by "
                               "default) or 'hf_dir' (a Hugging Face checkpoint directory), not both or neither")
        for key, value, known in (("device", self.device, DEVICES), ("dtype", self.dtype, DTYPES)):
            if value not in known:
                raise HarnessError(f"strategy {self.name}: config key '{key}' is {value!r}; known: {', '.join(known)}")

    def _prepare_device(self) -> None:
        import torch

        cuda = torch.cuda.is_available()
        self.device_ = ("cuda" if cuda else "cpu") if self.device == "auto" else self.device
        if self.device_ == "cuda" and not cuda:
            raise HarnessError(f"strategy {self.name}: config key 'device' is 'cuda' but torch sees no GPU "
                               f"(torch {torch.__version__}); use device=cpu or auto")
        gpu_bf16 = self.device_ == "cuda" and torch.cuda.is_bf16_supported()
        self.torch_dtype_ = (("bfloat16" if gpu_bf16 else "float32") if self.dtype == "auto" else self.dtype)
        self.precision_ = PRECISION[self.torch_dtype_]
        if self.qlora:
            _require_qlora(self.name, self.device_)

    def _checkpoint(self) -> Path:
        """The base as a Hugging Face checkpoint directory (weights checked)."""
        if self.hf_dir:
            return modelfiles.verify_dir(modelfiles.resolve(self.hf_dir), self.files, key=f"strategies.{self.name}.files")
        from harness.llm.local import gguf_file

        path = gguf_file(**self.gguf)
        return dequantised(path, self.gguf["sha256"], Path(self.gguf.get("cache_dir") or ".cache/models"))

    def _base_identity(self) -> dict:
        base = ({"gguf_sha256": self.gguf["sha256"]} if self.gguf else
                {"hf_dir": self.hf_dir, "files": dict(self.files or modelfiles.hash_dir(modelfiles.resolve(self.hf_dir)))})
        return {**base, "lora": self.lora, "device": self.device_, "dtype": self.torch_dtype_, "qlora": self.qlora}

    def _base_model(self, labels):
        import torch

        options = {"dtype": getattr(torch, self.torch_dtype_)}
        if self.qlora:
            from transformers import BitsAndBytesConfig

            # NF4 with double quantisation and bf16 compute (the QLoRA recipe); the new head stays unquantised
            options["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.bfloat16, llm_int8_skip_modules=["score"])
            options["device_map"] = {"": self.device_}  # 4-bit weights are placed when loaded, never moved
        model, tokenizer = load_base(self._checkpoint(), labels, **options)
        if tokenizer.pad_token is None:  # Llama-family tokenizers often have none; the head needs padding found
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
        return model, tokenizer

    def _load_base(self, labels):
        from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training

        model, tokenizer = self._base_model(labels)
        if self.qlora:
            model = prepare_model_for_kbit_training(model)
        # TaskType.SEQ_CLS also trains and saves the new `score` layer with the adapter (modules_to_save)
        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, **self.lora))
        for parameter in model.parameters():
            if parameter.requires_grad:  # AdamW's small updates vanish in a bfloat16 copy of the weights
                parameter.data = parameter.data.float()
        return model, tokenizer

    def _load_trained(self, folder: Path):
        from peft import PeftModel
        from transformers import AutoTokenizer

        base, _ = self._base_model(json.loads((folder / "labels.json").read_text()))
        model = PeftModel.from_pretrained(base, str(folder))
        return (model if self.qlora else model.to(self.device_)), AutoTokenizer.from_pretrained(str(folder))

    def _save(self, model, tokenizer, folder: Path) -> None:
        super()._save(model, tokenizer, folder)
        id2label = model.config.id2label
        atomic_write(folder / "labels.json", json.dumps([id2label[i] for i in range(len(id2label))]))

    def describe(self) -> dict:
        return {**super().describe(), "lora": self.lora, "qlora": self.qlora}


def _require_qlora(name: str, device: str) -> None:
    if device != "cuda":
        raise HarnessError(f"strategy {name}: config key 'qlora' needs a GPU (device is {device}); set qlora=false")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise HarnessError(f"strategy {name}: config key 'qlora' needs the bitsandbytes package "
                           "(pip install bitsandbytes); set qlora=false to train plain LoRA") from None
