"""The run's plan: what the runner fits and predicts, stage by stage. One planner for the three shapes a run can
take; every stage is scored on the run's one held-out set.

- plain: every configured strategy is one stage, fitted on the whole training split.
- sweep (learning curves): each swept strategy becomes one stage per (training items per class, seed), named
  e.g. `embed_logreg[n=5,seed=0]`, fitted on a seeded per-class sample of the training split:
      sweep:
        strategies: [tfidf_logreg, finetune_encoder]   # which of the experiment's strategies; null = all
        train_per_class: [5, 10, 20, 50, all]          # `all` = the whole training split
        seeds: [0, 1, 2]
- scenario `new_category` ("what happens when we add category 48?"): every strategy runs twice, `NAME[before]`
  fitted without the new categories (absent from its training items and its taxonomy), then `NAME[after]`
  fitted on everything, as a team would when the categories arrive. The mechanism is the same for every
  strategy, a fresh `fit`: prompted strategies only rebuild their taxonomy, prompts and reference index; trained
  strategies retrain. The `[after]` stage's fit time and cost are the time and cost to adapt:
      scenario: {kind: new_category, new_categories: [...]}
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from harness.data import Dataset, per_class_sample
from harness.errors import HarnessError, choices
from harness.strategies.base import StageInfo

ALL = "all"
SCENARIO_KINDS = ("new_category",)
BEFORE, AFTER = "before", "after"


@dataclass
class Stage:
    name: str  # the strategy name in records and reports
    strategy: Any  # a harness.strategies.base.Strategy
    train: Dataset  # what `fit` sees; its held-out list is the run's
    info: StageInfo


def stages(cfg, dataset: Dataset) -> list[Stage]:
    """The run's stages in order (each strategy's stages together, so a local model's prompt cache is reused)."""
    if cfg.get("sweep") and cfg.get("scenario"):
        raise HarnessError("config keys 'sweep' and 'scenario' cannot be combined in one run; drop one")
    if cfg.get("sweep"):
        return _sweep(cfg, dataset)
    if cfg.get("scenario"):
        return _scenario(cfg, dataset)
    return [Stage(name, _instantiate(node, name), dataset, StageInfo(base=name)) for name, node in cfg.strategies.items()]


def _instantiate(node, name: str):
    from harness.config import instantiate

    return instantiate(node, name=name)


# ------------------------------------------------------------------------------------------------- scenario
def _scenario(cfg, dataset: Dataset) -> list[Stage]:
    scenario = cfg.scenario
    if scenario.get("kind") not in SCENARIO_KINDS:
        raise choices("scenario.kind", str(scenario.get("kind")), SCENARIO_KINDS)
    without = withhold(dataset, new_categories(scenario, dataset))
    return [Stage(f"{name}[{phase}]", _instantiate(node, f"{name}[{phase}]"), data,
                  StageInfo(kind="scenario", base=name, phase=phase, candidate=phase == AFTER))
            for name, node in cfg.strategies.items() for phase, data in ((BEFORE, without), (AFTER, dataset))]


def new_categories(scenario, dataset: Dataset) -> list[str]:
    names = [str(label) for label in (scenario.get("new_categories") or [])]
    if not names:
        raise HarnessError("config key 'scenario.new_categories' must list at least one category")
    for name in names:
        if name not in dataset.labels:
            raise choices("category (scenario.new_categories)", name, dataset.labels)
    if len(set(names)) >= len(dataset.labels):
        raise HarnessError("scenario.new_categories lists every category; leave at least one for the first fit")
    if not any(ex.label in names for ex in dataset.heldout):
        raise HarnessError(f"the held-out set has no item of scenario.new_categories {names}; use a larger "
                           "held-out set")
    return names


def withhold(dataset: Dataset, categories: list[str]) -> Dataset:
    """The dataset as it was before `categories` existed: training items, labels and descriptions without them.
    The held-out set is unchanged, so both stages are scored on the same items."""
    gone = set(categories)
    return replace(dataset, train=[ex for ex in dataset.train if ex.label not in gone],
                   labels=[label for label in dataset.labels if label not in gone],
                   descriptions={k: v for k, v in dataset.descriptions.items() if k not in gone})


# ---------------------------------------------------------------------------------------------------- sweep
def _sweep(cfg, dataset: Dataset) -> list[Stage]:
    """Each swept strategy's variants where the strategy stood, the others unchanged."""
    spec = cfg.sweep
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
            plan.append(Stage(name, _instantiate(node, name), dataset, StageInfo(base=name)))
            continue
        for size in sizes:
            # The whole split has no sampling variance to average over: one seed there keeps the costliest
            # points (a fine-tune on every item) to one run each.
            for seed in seeds if size is not None else seeds[:1]:
                variant = variant_name(name, size, seed)
                view = replace(dataset, train=per_class_sample(dataset.train, size, seed))
                # `all` is recorded as the mean items per class it amounts to, so the axis stays numeric.
                per_class = size if size is not None else round(len(view.train) / max(len(view.labels), 1), 1)
                plan.append(Stage(variant, _instantiate(_for_point(node, seed), variant), view,
                                  StageInfo(kind="sweep", base=name, train_per_class=per_class, sweep_seed=seed)))
    return plan


def variant_name(name: str, size: int | None, seed: int) -> str:
    return f"{name}[n={size or ALL},seed={seed}]"


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
