"""The report's cascades and distillations (computed in harness.report.beyond): each cascade beside its two
stages run alone in the same run, with the share of items that never reached the LLM and its validation curve;
each distillation with its labeller's agreement with the human labels, the labelling's time and cost, and the same
student on every human label when the run has it."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from harness.calibration import thinned
from harness.report.fmt import pct, usd
from harness.report.style import short, style

if TYPE_CHECKING:
    from harness.report.analysis import Analysis

CURVE_ROWS = 11  # validation thresholds the report's table shows (the chart and the manifest have more)


# ------------------------------------------------------------------------------------------------- tables
def cascade_table(a: "Analysis") -> pd.DataFrame:
    c = a.beyond.cascades
    return pd.DataFrame({
        "strategy": c["strategy"], "role": c["role"], "accuracy": c["accuracy"].map(pct),
        "$ per 1k": c["cost_per_1k_usd"].map(usd), "items sent to the LLM": c["llm_share"].map(pct),
        "threshold": [_threshold(r) if r.role == "cascade" else "" for r in c.itertuples()],
        "first stage answered (accuracy)": [f"{pct(r.first_share)} ({pct(r.first_accuracy)})"
                                            if r.role == "cascade" else "" for r in c.itertuples()],
        "deferred (accuracy)": [f"{pct(r.llm_share)} ({pct(r.deferred_accuracy)})" if r.role == "cascade" else ""
                                for r in c.itertuples()]})


def _threshold(row) -> str:
    rule = (f"first stage at least {pct(row.target)} right" if row.objective == "target"
            else f"cheapest with cascade at least {pct(row.target)} right")
    met = "" if row.met else "; not met"
    return f"{_value(row.threshold)} ({rule} on {int(row.validation_items)} validation items{met})"


def _value(threshold: float) -> str:
    return f"{threshold:.3f}" if math.isfinite(threshold) else "defer all"


def curve_table(a: "Analysis") -> pd.DataFrame:
    rows = []
    for name in a.beyond.cascades.query("role == 'cascade'")["strategy"]:
        details = a.manifest.strategies[name].details
        curve = pd.DataFrame(details["curve"])
        rows += [{"cascade": name, "threshold": _value(r.threshold), "coverage": pct(r.coverage),
                  "first stage accuracy": pct(r.first_accuracy), "cascade accuracy": pct(r.accuracy),
                  "$ per 1k": usd(r.cost_per_1k_usd), "chosen": "yes" if r.threshold == details["threshold"] else ""}
                 for r in thinned(curve, details["threshold"], CURVE_ROWS).itertuples()]
    return pd.DataFrame(rows)


def distill_table(a: "Analysis") -> pd.DataFrame:
    d = a.beyond.distills
    return pd.DataFrame({
        "strategy": d["strategy"], "labels from": d["labels_from"],
        "texts labelled": [f"{lab:,} of {drawn:,} drawn ({pct(share)})" for lab, drawn, share in
                           zip(d["labelled"], d["drawn"], d["share"])],
        "agreement with human labels": d["agreement"].map(pct),
        "labelling time": d["labelling_seconds"].map(lambda s: f"{s / 60:.1f} min"),
        "labelling $": d["labelling_usd"].map(usd), "training items": d["n_train"],
        "accuracy": d["accuracy"].map(pct),
        "same student, every human label": [f"{pct(acc)} ({name})" if name else "" for name, acc in
                                            zip(d["all_human"], d["all_human_accuracy"])]})


def sections(a: "Analysis") -> dict:
    out = {}
    if not a.beyond.cascades.empty:
        out["cascade"] = ("Cascades against their stages alone (held-out items)", cascade_table(a))
        out["cascade_curve"] = ("Cascade thresholds on the validation split", curve_table(a))
    if not a.beyond.distills.empty:
        out["distill"] = ("Distillation: a student trained on LLM labels", distill_table(a))
    return out


# ------------------------------------------------------------------------------------------------- charts
def cascade_chart(ax, a: "Analysis") -> None:
    cascaded = a.beyond.cascades.query("role == 'cascade'")
    for i, row in enumerate(cascaded.itertuples()):
        details, s = a.manifest.strategies[row.strategy].details, style(i)
        curve = pd.DataFrame(details["curve"])
        ax.plot(curve["coverage"], curve["accuracy"], color=s["color"], linestyle="-",
                label=f"{short(row.strategy)}: cascade (validation)")
        ax.plot(curve["coverage"], curve["first_accuracy"], color=s["color"], linestyle="--",
                label=f"{short(row.strategy)}: first stage's answers (validation)")
        ax.plot([row.first_share], [row.accuracy], marker="*", markersize=12, color=s["color"], linestyle="none",
                markeredgecolor="black", label=f"{short(row.strategy)}: held-out, at the chosen threshold")
        ax.axvline(details["chosen"]["coverage"], color=s["color"], linestyle=":", linewidth=1)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("coverage: share of items the first stage answers")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def chart_specs(a: "Analysis") -> list[tuple]:
    if a.beyond.cascades.empty:
        return []
    return [("cascade", "Cascade: accuracy against the first stage's coverage",
             "On the validation split: the cascade's accuracy (solid) and the first stage's on the items it answers "
             "(dashed) for every threshold; dotted: the chosen threshold's coverage; star: the held-out result.",
             cascade_chart, (8.5, 4.8))]
