"""What differs between a baseline and a candidate: the paired items, per-class accuracy, the flipped items,
and the changed config keys and template hashes. The regression gate (harness.gate.check) judges these."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.gate.baselines import Baseline
from harness.run.manifest import Manifest, check_same_heldout

NOT_RUN_CONFIG = ("output_dir", "gate")  # config keys that say where or how to judge, not what ran


def same_items(baseline: Baseline, manifest: Manifest, path: Path) -> None:
    """Refuses a candidate run made on other held-out items."""
    check_same_heldout(baseline.heldout_hash, manifest.heldout_hash, what=f"{path} (against baseline "
                       f"'{baseline.name}')", advice="the gate only compares runs on the same items")


def paired(strategy: str, baseline: Baseline, records: pd.DataFrame, path: Path) -> pd.DataFrame:
    """One row per baseline item (indexed by item id): text, gold, both predictions, both outcomes."""
    base = baseline.records[baseline.records["strategy"] == strategy].set_index("item_id")
    cand = records[records["strategy"] == strategy].set_index("item_id")
    missing = base.index.difference(cand.index)
    if len(missing):
        raise HarnessError(f"{path}: strategy '{strategy}' has no record for {len(missing)} of the baseline's "
                           f"{len(base)} items (first: {missing[0]}); complete it with `harness resume {path}`")
    cand = cand.loc[base.index]
    return pd.DataFrame({"text": base["text"], "gold": base["gold"].astype(str), "baseline_pred": base["pred"],
                         "candidate_pred": cand["pred"], "candidate_error": cand["error"],
                         "base_correct": base["correct"].astype(bool), "cand_correct": cand["correct"].astype(bool)})


def per_class(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per gold label: accuracy on its items (its recall) before and after, and the flips."""
    frame = pairs.assign(broken=pairs["base_correct"] & ~pairs["cand_correct"],
                         fixed=~pairs["base_correct"] & pairs["cand_correct"])
    table = frame.groupby("gold").agg(n=("gold", "size"), baseline=("base_correct", "mean"),
                                      candidate=("cand_correct", "mean"), broken=("broken", "sum"),
                                      fixed=("fixed", "sum"))
    table["delta_points"] = 100.0 * (table["candidate"] - table["baseline"])
    return table.rename_axis("label")


def flips(pairs: pd.DataFrame) -> pd.DataFrame:
    """The items whose correctness changed: "broken" (right before, wrong now) and "fixed", in item order."""
    kind = np.select([pairs["base_correct"] & ~pairs["cand_correct"], ~pairs["base_correct"] & pairs["cand_correct"]],
                     ["broken", "fixed"], default="")
    rows = pairs.assign(kind=kind)[kind != ""].reset_index()
    return rows[["kind", "item_id", "text", "gold", "baseline_pred", "candidate_pred", "candidate_error"]]


# --------------------------------------------------------------------------------------------- what changed


def strategy_changes(strategy: str, base_manifest: Manifest, cand_manifest: Manifest) -> list[str]:
    """Changed prompt and artefact hashes (the fit records in the manifests) and changed strategy config keys."""
    old, new = (_flat(m.strategies[strategy].to_dict()) if strategy in m.strategies else {}
                for m in (base_manifest, cand_manifest))
    hashes = [f"{key}: {str(old.get(key))[:12]} -> {str(new.get(key))[:12]}" for key in sorted(set(old) | set(new))
              if _is_hash(key) and old.get(key) != new.get(key)]
    configs = [(m.config.get("strategies") or {}).get(strategy, {}) for m in (base_manifest, cand_manifest)]
    return hashes + config_changes(*configs, prefix=f"strategies.{strategy}.")


def config_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    old, new = _flat(old), _flat(new)
    return [f"{prefix}{key}: {_short(old.get(key))} -> {_short(new.get(key))}"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def run_globals(config: dict) -> dict:
    """The run config outside any strategy."""
    return {k: v for k, v in config.items() if k not in (*NOT_RUN_CONFIG, "strategies")}


def _is_hash(key: str) -> bool:
    return key.startswith("artefacts.") or any(word in part.lower() for part in key.split(".")
                                               for word in ("sha256", "hash"))


def _flat(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree} if prefix else {}
    out = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) and value else {f"{prefix}{key}": value})
    return out


def _short(value, max_chars: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."
