"""Training throughput of finetune_encoder (transformers' Trainer, as the strategy runs it) against a plain
PyTorch loop doing the same work: same base model, training items, batches (same sampler), max length,
optimizer (AdamW, weight decay off for biases and LayerNorm, as Trainer does), linear schedule with warmup,
gradient clipping, and number of steps. Rounds alternate which path goes first, so a change in the machine's
load does not favour either. Target: ratio >= 0.9.

    .venv/bin/python bench/finetune_throughput.py [--steps 20] [--rounds 2] [--threads N]...

Prints one line per thread count: by default the strategy's (every core this process may use) and 1.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harness  # noqa: E402,F401  (offline environment before transformers is imported)
from harness.config import compose, instantiate  # noqa: E402
from harness.data import per_class_sample  # noqa: E402
from harness.strategies import training  # noqa: E402


def plain_loop(model, tokenizer, features, settings) -> float:
    """Seconds for one pass over `features` with a hand-written loop (optimizer set-up included, as in Trainer)."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler
    from transformers import DataCollatorWithPadding, get_linear_schedule_with_warmup
    from transformers.trainer_pt_utils import LengthGroupedSampler

    t0 = time.perf_counter()
    no_decay = [p for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n or "layernorm" in n]
    decay = [p for p in model.parameters() if all(p is not q for q in no_decay)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=settings.learning_rate)
    steps = math.ceil(len(features) / settings.train_batch_size)
    schedule = get_linear_schedule_with_warmup(optimizer, math.ceil(steps * settings.warmup_ratio), steps)
    generator = torch.Generator().manual_seed(settings.seed)
    sampler = (LengthGroupedSampler(settings.train_batch_size, dataset=features, model_input_name="input_ids",
                                    generator=generator)
               if settings.group_by_length else RandomSampler(features, generator=generator))
    loader = DataLoader(features, batch_size=settings.train_batch_size, sampler=sampler,
                        collate_fn=DataCollatorWithPadding(tokenizer))
    model.train()
    for batch in loader:
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="measurements of each path (order alternates)")
    parser.add_argument("--threads", type=int, action="append",
                        help="torch threads to measure (repeatable; default: the strategy's num_threads, which is "
                             "every core this process may use, and 1)")
    args = parser.parse_args()

    cfg = compose(["experiment=finetune"])
    strategy = instantiate(cfg.strategies.finetune_encoder, name="finetune_encoder")
    settings = strategy.settings
    dataset = instantiate(cfg.dataset)
    # A per-class sample, so the batches hold texts of every intent (and their real lengths).
    batch = settings.train_batch_size
    items = per_class_sample(dataset.train, math.ceil(args.steps * batch / len(dataset.labels)),
                             seed=0)[:args.steps * batch]
    print(f"{len(items)} items per measurement ({args.steps} steps of {batch}), max_length "
          f"{settings.max_length}, group_by_length={settings.group_by_length}")

    def fresh():
        from transformers import set_seed

        set_seed(settings.seed)
        model, tokenizer = strategy._load_base(dataset.labels)
        ids = model.config.label2id
        features = training.encode(tokenizer, [ex.text for ex in items], [ids[ex.label] for ex in items],
                                   settings.max_length)
        return model, tokenizer, features

    def trainer_path() -> float:
        model, tokenizer, features = fresh()
        with tempfile.TemporaryDirectory() as work:
            stats = training.train(model, tokenizer, features, [], replace(settings, epochs=1.0, min_steps=0),
                                   Path(work))
        return stats["train_seconds"]

    def plain_path() -> float:
        model, tokenizer, features = fresh()
        return plain_loop(model, tokenizer, features, settings)

    for wanted in args.threads or dict.fromkeys([strategy.num_threads, 1]):
        threads = training.set_threads(wanted)
        seconds = {"trainer": 0.0, "plain": 0.0}
        for round_ in range(args.rounds):
            order = [("trainer", trainer_path), ("plain", plain_path)]
            for name, path in order if round_ % 2 == 0 else order[::-1]:
                seconds[name] += path()
        trainer_rate = args.rounds * len(items) / seconds["trainer"]
        plain_rate = args.rounds * len(items) / seconds["plain"]
        print(f"{threads} torch threads: finetune_encoder {trainer_rate:.1f} items/s  plain loop {plain_rate:.1f} "
              f"items/s  ratio {trainer_rate / plain_rate:.2f}")


if __name__ == "__main__":
    main()
