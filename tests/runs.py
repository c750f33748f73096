"""Run directories built from constructed outcomes, for tests of everything that reads a run (report, compare,
gate): a typed manifest, the held-out items and predictions.parquet, as the runner writes them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.hashing import content_hash
from harness.run.directory import PREDICTION_COLUMNS, RunDir
from harness.run.manifest import DatasetInfo, Manifest
from harness.strategies.base import FitRecord, PromptArtefact, StageInfo

PLAN = {"monthly_volume": 10_000, "horizon_months": 12, "retrains_per_year": 4, "monthly_budget_usd": None,
        "fixed_monthly_usd": {}, "retrain_cost_usd": {}, "cost_per_1k_usd": {}}


class Item:
    def __init__(self, item_id: str, text: str, label: str, group: str | None = None) -> None:
        self.id, self.text, self.label, self.group = item_id, text, label, group


def fit_record(spec: dict, name: str) -> FitRecord:
    info = spec.get("info", {})
    stage = StageInfo(kind=info.get("kind", "sweep" if "train_per_class" in info else "plain"),
                      base=info.get("base", name.split("[")[0]), phase=info.get("phase"),
                      train_per_class=info.get("train_per_class"), sweep_seed=info.get("sweep_seed"),
                      candidate=info.get("candidate", True))
    prompt = info.get("prompt")
    return FitRecord(family=spec["family"], model=info.get("model", "m"), latency_basis=info.get("latency_basis",
                     "per-item"), fit_seconds=info.get("fit_seconds", 1.0), fit_cost_usd=spec.get("fit_cost_usd", 0.0),
                     n_train=info.get("n_train", 100), billing=info.get("billing", "self_hosted"),
                     predict_seconds=1.0, stage=stage, details=info.get("details", {}),
                     prompt=PromptArtefact(**prompt) if prompt else None)


def write_run(root: Path, strategies: dict[str, dict], items: list[tuple[str, str]], *,
              texts: dict[str, str] | None = None, pricing: dict | None = None, experiment: str = "constructed",
              status: str = "complete", config: dict | None = None, n_train: int = 100,
              groups: dict[str, str] | None = None) -> Path:
    """strategies: name -> {pred: [...], family, cost_usd, fit_cost_usd, latency_ms, info: {...}};
    items: (item id, gold label); texts: item id -> text (default "text of <id>")."""
    run = RunDir.create(root, experiment)
    rows = []
    for index, (name, spec) in enumerate(strategies.items()):
        latency = np.random.default_rng(index).lognormal(np.log(spec.get("latency_ms", 20.0)), 0.3, len(items))
        for (item, gold), pred, ms in zip(items, spec["pred"], latency):
            rows.append({"strategy": name, "item_id": item, "gold": gold, "pred": pred, "correct": pred == gold,
                         "latency_ms": ms, "prompt_tokens": spec.get("prompt_tokens", 0), "completion_tokens": 0,
                         "cost_usd": spec.get("cost_usd", 0.0), "spent_usd": spec.get("cost_usd", 0.0),
                         "cached": False, "error": spec.get("error"), "raw": pred or "", "extra": None})
    pd.DataFrame(rows, columns=PREDICTION_COLUMNS).to_parquet(run.path / "predictions.parquet", index=False)
    heldout = [Item(item, (texts or {}).get(item, f"text of {item}"), gold, (groups or {}).get(item))
               for item, gold in items]
    digest = content_hash(heldout)
    labels = sorted({gold for _, gold in items})
    run.write_manifest(Manifest(
        experiment=experiment, status=status, started_at="2026-01-01T00:00:00+00:00",
        dataset=DatasetInfo(name="constructed", source="tests", n_train=n_train, n_heldout=len(items),
                            n_labels=len(labels), heldout_hash=digest, group_column="source" if groups else None),
        price_sources={"hardware": {"name": "cpu", "usd_per_hour": 0.1, "source": "tests"}},
        versions={"python": "3", "harness": "0", "scikit-learn": "1", "torch": "2"},
        git={"commit": "abc", "dirty": False},
        config={"seed": 0, "pricing": pricing or PLAN, **(config or {})},
        planned={name: len(items) for name in strategies},
        strategies={name: fit_record(spec, name) for name, spec in strategies.items()}))
    run.write_heldout(heldout, digest)
    return run.path


def outcomes(items: list[tuple[str, str]], n_wrong: int, wrong: str = "other") -> list[str]:
    return [wrong if i < n_wrong else gold for i, (_, gold) in enumerate(items)]


ITEMS = [(f"i{i:03d}", f"label_{i % 4}") for i in range(200)]
