"""The new-category scenario's table ("what happens when we add category 48?"): per strategy, accuracy on the new
categories, on the old ones and overall, before and after adapting, and the time and cost to adapt (the `after`
stage's fit). The stages themselves are planned by harness.run.plan."""
from __future__ import annotations

import pandas as pd

from harness.run.manifest import Manifest

BEFORE, AFTER = "before", "after"


def table(records: pd.DataFrame, manifest: Manifest) -> pd.DataFrame:
    new = set(manifest.config["scenario"]["new_categories"])
    phases: dict[str, dict[str, str]] = {}  # base strategy -> phase -> stage name
    for name, fit in manifest.strategies.items():
        if fit.stage.kind == "scenario":
            phases.setdefault(fit.stage.base, {})[fit.stage.phase] = name
    rows = []
    for base, names in phases.items():
        if AFTER not in names:
            continue
        adapted = manifest.strategies[names[AFTER]]
        row = {"strategy": base, "family": adapted.family}
        for phase in (BEFORE, AFTER):
            group = records[records["strategy"] == names.get(phase)]
            is_new = group["gold"].astype(str).isin(new)
            correct = group["correct"].astype(bool)
            row.update({f"new_accuracy_{phase}": _mean(correct[is_new]),
                        f"old_accuracy_{phase}": _mean(correct[~is_new]), f"accuracy_{phase}": _mean(correct)})
        row.update(adapt_seconds=adapted.fit_seconds, adapt_cost_usd=adapted.fit_cost_usd,
                   n_new_items=int(records.loc[records["strategy"] == names[AFTER], "gold"].isin(new).sum()))
        rows.append(row)
    return pd.DataFrame(rows)


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else float("nan")
