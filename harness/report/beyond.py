"""What lies between prompting and training, computed once for the report from the manifest and the records:
calibration and abstention per strategy that scores its answers, each cascade beside its stages run alone, each
distillation with its labels' agreement, and what the label audit's held-out suspects mean for the accuracies.
harness.report.abstention, .hybrids and .label_audit format it."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.calibration import BINS, TARGET_ACCURACY, at_target, confidences, coverage_curve, ece, ece_interval, \
    reliability
from harness.report.fmt import pct
from harness.strategies.base import CASCADE, DISTILL

if TYPE_CHECKING:
    from harness.run.manifest import Manifest

SUMMARY_COLUMNS = ["strategy", "n", "mean_confidence", "accuracy", "ece", "ece_ci_low", "ece_ci_high", "target",
                   "coverage", "threshold", "answered_accuracy"]


@dataclass
class Abstention:
    target: float
    bins: int
    summary: pd.DataFrame  # SUMMARY_COLUMNS, one row per strategy that scores; coverage NaN: target never met
    reliability: pd.DataFrame  # strategy + harness.calibration.reliability's columns
    curves: pd.DataFrame  # strategy + harness.calibration.coverage_curve's columns


@dataclass
class Beyond:
    abstention: Abstention
    cascades: pd.DataFrame  # one row per cascade and per stage of it run alone; empty without a cascade
    distills: pd.DataFrame  # one row per distillation; empty without one
    label_audit: pd.DataFrame | None  # per strategy: accuracy as measured, without the suspects, relabelled
    notes: list[str] = field(default_factory=list)


def analyse(manifest: "Manifest", records: pd.DataFrame, results: pd.DataFrame, *, seed: int = 0) -> Beyond:
    impact, notes = label_impact(manifest, records)
    return Beyond(abstention=abstention(manifest, records, seed=seed), cascades=cascades(manifest, records, results),
                  distills=distills(manifest, results), label_audit=impact, notes=notes)


def abstention(manifest: "Manifest", records: pd.DataFrame, *, seed: int = 0) -> Abstention:
    settings = manifest.config.get("calibration") or {}
    target, bins = float(settings.get("target_accuracy", TARGET_ACCURACY)), int(settings.get("bins", BINS))
    rows, bins_frames, curves = [], [], []
    for name, group in records.groupby("strategy", sort=False):
        confidence = confidences(list(group["extra"]), list(group["pred"]))
        if confidence is None:
            continue
        correct = group["correct"].astype(bool).to_numpy()
        curve = coverage_curve(confidence, correct)
        point = at_target(curve, target)
        low, high = ece_interval(confidence, correct, bins, seed=seed)
        rows.append({"strategy": name, "n": len(group), "mean_confidence": float(confidence.mean()),
                     "accuracy": float(correct.mean()), "ece": ece(confidence, correct, bins), "ece_ci_low": low,
                     "ece_ci_high": high, "target": target,
                     **({"coverage": point["coverage"], "threshold": point["threshold"],
                         "answered_accuracy": point["accuracy"]} if point is not None else {})})
        bins_frames.append(reliability(confidence, correct, bins).assign(strategy=name))
        curves.append(curve.assign(strategy=name))
    return Abstention(target, bins, pd.DataFrame(rows, columns=SUMMARY_COLUMNS), _concat(bins_frames),
                      _concat(curves))


def cascades(manifest: "Manifest", records: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Per cascade: held-out accuracy, cost per 1,000, the share sent to the LLM, what each stage answered and how
    well, the threshold's settings; then each of its stages run alone in the same run (a strategy whose config is
    exactly the stage's)."""
    scores = results.set_index("strategy")
    rows = []
    for name in _of_family(manifest, CASCADE):
        group = records[records["strategy"] == name]
        first = np.array([_extra(e).get("stage") for e in group["extra"]]) == "first"
        correct = group["correct"].astype(bool).to_numpy()
        d = manifest.strategies[name].details
        rows.append({"cascade": name, "strategy": name, "role": "cascade", **_score(scores, name),
                     "llm_share": float((~first).mean()), "first_share": float(first.mean()),
                     "first_accuracy": _mean(correct[first]), "deferred_accuracy": _mean(correct[~first]),
                     "threshold": d["threshold"], "objective": d["objective"], "target": d["accuracy"],
                     "met": d["met"], "validation_items": d["validation_items"]})
        for role, llm_share in (("first", 0.0), ("second", 1.0)):
            alone = _same_config(manifest, name, role)
            if alone is not None:
                rows.append({"cascade": name, "strategy": alone, "role": f"{role} stage alone",
                             **_score(scores, alone), "llm_share": llm_share})
    return pd.DataFrame(rows)


def distills(manifest: "Manifest", results: pd.DataFrame) -> pd.DataFrame:
    scores = results.set_index("strategy")
    rows = []
    for name in _of_family(manifest, DISTILL):
        d = manifest.strategies[name].details
        human = _same_config(manifest, name, "student")
        rows.append({"strategy": name, "labels_from": d["labels_from"], "share": d["share"], "drawn": d["drawn"],
                     "labelled": d["labelled"], "agreement": d["agreement_with_human"],
                     "labelling_seconds": d["labelling"]["seconds"], "labelling_usd": d["labelling"]["cost_usd"],
                     "n_train": manifest.strategies[name].n_train, **_score(scores, name),
                     "all_human": human, "all_human_accuracy": scores.loc[human, "accuracy"] if human else math.nan})
    return pd.DataFrame(rows)


def label_impact(manifest: "Manifest", records: pd.DataFrame) -> tuple[pd.DataFrame | None, list[str]]:
    """Per strategy: accuracy as measured, without the held-out suspects, and with their suggested labels; and
    the note every reader gets. (None, []) without an audit."""
    audit = manifest.audit
    if audit is None:
        return None, []
    suggested = {s["item_id"]: s["suggested_label"] for s in audit.heldout.suspects}
    rows = []
    for name, group in records.groupby("strategy", sort=False):
        suspect = group["item_id"].isin(list(suggested))
        right = group["pred"] == group["item_id"].map(suggested).fillna(group["gold"])
        rows.append({"strategy": name, "accuracy": group["correct"].astype(bool).mean(),
                     "without_suspects": group.loc[~suspect, "correct"].astype(bool).mean(),
                     "relabelled": right.mean(), "suspects_as_suggested": int(right[suspect].sum()),
                     "suspects": int(suspect.sum())})
    h = audit.heldout
    note = (f"Label audit ({audit.model}, cleanlab): {h.n_issues} of {h.n_items} held-out labels "
            f"({pct(h.error_rate)}) and {audit.train.n_issues:,} of {audit.train.n_items:,} training labels "
            f"({pct(audit.train.error_rate)}) look wrong. Accuracy differences smaller than about "
            f"{100 * h.error_rate:.1f} points could be label noise rather than skill; the table 'What the suspected "
            "label errors mean' gives each accuracy without those items and with their suggested labels.")
    return pd.DataFrame(rows), [note]


def _of_family(manifest: "Manifest", family: str) -> list[str]:
    return [name for name, fit in manifest.strategies.items() if fit.family == family]


def _same_config(manifest: "Manifest", name: str, part: str) -> str | None:
    """The run's strategy whose config is exactly `name`'s `part` (a stage, a student), if there is one."""
    configs = manifest.config.get("strategies") or {}
    wanted = (configs.get(name) or {}).get(part)
    return next((other for other, node in configs.items() if other != name and node == wanted
                 and other in manifest.strategies), None)


def _score(scores: pd.DataFrame, name: str) -> dict:
    return {"accuracy": scores.loc[name, "accuracy"], "cost_per_1k_usd": scores.loc[name, "cost_per_1k_usd"]}


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else math.nan


def _extra(value) -> dict:
    value = json.loads(value) if isinstance(value, str) else value
    return value if isinstance(value, dict) else {}


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
