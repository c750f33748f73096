"""What the runner fits and predicts, stage by stage, and the new-category scenario ("what happens when we add
category 48?").

Without a scenario every configured strategy is one stage, fitted on the whole training split. With
`scenario: {kind: new_category, new_categories: [...]}` every strategy runs twice on the same held-out set:
`NAME[before]` is fitted without the new categories (absent from its training items and its taxonomy), then
`NAME[after]` is fitted on everything, as a team would when the categories arrive. The mechanism is the same for
every strategy, a fresh `fit`: for prompted strategies that only rebuilds their taxonomy, prompts and reference
index; trained strategies retrain. The `[after]` stage's fit time and cost are the time and cost to adapt."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from harness.data import Dataset
from harness.errors import HarnessError, choices

KINDS = ("new_category",)
BEFORE, AFTER = "before", "after"


@dataclass
class Stage:
    name: str  # the strategy name in records and reports
    strategy: Any  # a harness.strategies.base.Strategy
    train: Dataset  # what `fit` sees; its held-out list is the run's


def stages(cfg, dataset: Dataset) -> list[Stage]:
    """The run's stages in order (each strategy's stages together, so a local model's prompt cache is reused)."""
    from harness.config import instantiate

    scenario = cfg.get("scenario")
    if not scenario:
        return [Stage(name, instantiate(node, name=name), dataset) for name, node in cfg.strategies.items()]
    if scenario.get("kind") not in KINDS:
        raise choices("scenario.kind", str(scenario.get("kind")), KINDS)
    without = withhold(dataset, new_categories(scenario, dataset))
    return [Stage(f"{name}[{phase}]", instantiate(node, name=f"{name}[{phase}]"), data)
            for name, node in cfg.strategies.items() for phase, data in ((BEFORE, without), (AFTER, dataset))]


def new_categories(scenario, dataset: Dataset) -> list[str]:
    names = [str(label) for label in (scenario.get("new_categories") or [])]
    if not names:
        raise HarnessError("config key 'scenario.new_categories' must list at least one category")
    for name in names:
        if name not in dataset.labels:
            raise choices("category", name, dataset.labels)
    if len(set(names)) >= len(dataset.labels):
        raise HarnessError("scenario.new_categories lists every category; leave at least one for the first fit")
    if not any(ex.label in names for ex in dataset.heldout):
        raise HarnessError(f"the held-out set has no item of scenario.new_categories {names}; use a larger "
                           "dataset.heldout_size")
    return names


def withhold(dataset: Dataset, categories: list[str]) -> Dataset:
    """The dataset as it was before `categories` existed: training items, labels and descriptions without them.
    The held-out set is unchanged, so both stages are scored on the same items."""
    gone = set(categories)
    return replace(dataset, train=[ex for ex in dataset.train if ex.label not in gone],
                   labels=[label for label in dataset.labels if label not in gone],
                   descriptions={k: v for k, v in dataset.descriptions.items() if k not in gone})


def is_candidate(name: str, manifest: dict) -> bool:
    """Whether a strategy is an option to adopt: a scenario's `[before]` stage lacks the new categories, so it is
    shown in the tables but never recommended."""
    return not (manifest.get("config", {}).get("scenario") and name.endswith(f"[{BEFORE}]"))


def table(records: pd.DataFrame, manifest: dict) -> pd.DataFrame:
    """Per strategy: accuracy on the new categories, on the old ones and overall, before and after adapting;
    the time and cost to adapt (the [after] stage's fit)."""
    from harness.report.analysis import family_of

    new = set(manifest["config"]["scenario"]["new_categories"])
    info = manifest.get("strategies", {})
    bases = list(dict.fromkeys(name[: -len(f"[{AFTER}]")] for name in records["strategy"].unique()
                               if name.endswith(f"[{AFTER}]")))
    rows = []
    for base in bases:
        row = {"strategy": base, "family": family_of(f"{base}[{AFTER}]", manifest, records)}
        for phase in (BEFORE, AFTER):
            group = records[records["strategy"] == f"{base}[{phase}]"]
            is_new = group["gold"].astype(str).isin(new)
            correct = group["correct"].astype(bool)
            row.update({f"new_accuracy_{phase}": _mean(correct[is_new]),
                        f"old_accuracy_{phase}": _mean(correct[~is_new]), f"accuracy_{phase}": _mean(correct)})
        adapted = info.get(f"{base}[{AFTER}]", {})
        row.update(adapt_seconds=float(adapted.get("fit_seconds", float("nan"))),
                   adapt_cost_usd=float(adapted.get("fit_cost_usd", float("nan"))),
                   n_new_items=int(records.loc[records["strategy"] == f"{base}[{AFTER}]", "gold"].isin(new).sum()))
        rows.append(row)
    return pd.DataFrame(rows)


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else float("nan")
