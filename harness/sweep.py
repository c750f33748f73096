"""Learning-curve sweeps inside one run: each swept strategy becomes one stage per (training items per class,
seed), named e.g. `embed_logreg[n=5,seed=0]`, fitted on a seeded per-class sample of the training split and
scored on the same held-out set, so every point lands in the run's one results table (columns
`train_per_class` and `sweep_seed`; `n_train` is the sample's size).

Config (`sweep:` at the top level; absent or null = no sweep):
    sweep:
      strategies: [tfidf_logreg, finetune_encoder]   # which of the experiment's strategies; null = all of them
      train_per_class: [5, 10, 20, 50, all]          # `all` = the whole training split
      seeds: [0, 1, 2]
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from harness.data import Dataset, per_class_sample
from harness.errors import HarnessError, choices
from harness.scenarios import Stage

ALL = "all"


@dataclass
class SweepStage(Stage):
    columns: dict = field(default_factory=dict)  # what the results table records about this point


def stages(cfg, dataset: Dataset) -> list[Stage]:
    """The run's stages: each swept strategy's variants where the strategy stood, the others unchanged."""
    from harness.config import instantiate

    spec = cfg.sweep
    if cfg.get("scenario"):
        raise HarnessError("config keys 'sweep' and 'scenario' cannot be combined in one run; drop one")
    names = list(cfg.strategies)
    swept = list(spec.get("strategies") or names)
    for name in swept:
        if name not in names:
            raise choices("strategy in sweep.strategies", name, names)
    sizes = [_size(value) for value in spec.get("train_per_class") or [ALL]]
    seeds = [int(seed) for seed in spec.get("seeds") or [0]]
    plan: list[Stage] = []
    for name, node in cfg.strategies.items():
        if name not in swept:
            plan.append(Stage(name, instantiate(node, name=name), dataset))
            continue
        for size in sizes:
            # The whole split has no sampling variance to average over: one seed there keeps the costliest
            # points (a fine-tune on every item) to one run each.
            for seed in seeds if size is not None else seeds[:1]:
                variant = variant_name(name, size, seed)
                view = replace(dataset, train=per_class_sample(dataset.train, size, seed))
                plan.append(SweepStage(variant, instantiate(_for_point(node, seed), name=variant), view,
                                       _columns(view, size, seed)))
    return plan


def columns(stage: Stage) -> dict:
    """The result columns a sweep point adds (none for an ordinary stage)."""
    return stage.columns if isinstance(stage, SweepStage) else {}


def variant_name(name: str, size: int | None, seed: int) -> str:
    return f"{name}[n={size or ALL},seed={seed}]"


def _columns(view: Dataset, size: int | None, seed: int) -> dict:
    # `all` is recorded as the mean items per class it amounts to, so the axis stays numeric.
    per_class = size if size is not None else round(len(view.train) / max(len(view.labels), 1), 1)
    return {"train_per_class": per_class, "sweep_seed": seed}


def _size(value) -> int | None:
    if value is None or str(value).lower() == ALL:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HarnessError(f"sweep.train_per_class: {value!r} is not a positive integer or '{ALL}'")
    return value


def _for_point(node, seed: int):
    """The sweep decides a point's training items and seed: the strategy's own `train_per_class` is cleared (it
    would cut the sweep's sample again, and the results would report the sweep's n for less data), and its own
    `seed` (e.g. a fine-tune's initialisation and shuffling) follows the sweep seed."""
    if "seed" not in node and "train_per_class" not in node:
        return node
    from omegaconf import OmegaConf

    node = OmegaConf.create(OmegaConf.to_container(node, resolve=True))
    if "seed" in node:
        node.seed = seed
    if "train_per_class" in node:
        node.train_per_class = None
    return node
