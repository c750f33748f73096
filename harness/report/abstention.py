"""The report's calibration and abstention (computed in harness.report.beyond): per strategy that scores its
answers, the expected calibration error with a 95% bootstrap interval and the share of items it can answer at the
target accuracy (config key `calibration.target_accuracy`) with the threshold that gives it; a reliability diagram
and accuracy-against-coverage curves. The threshold here is read off the held-out curve itself, so it is the best
case for planning; a cascade chooses its own on a validation split."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from harness.report.fmt import pct
from harness.report.style import short, style
from harness.strategies.base import CASCADE

if TYPE_CHECKING:
    from harness.report.analysis import Analysis


def source(fit) -> str:
    """What a strategy's confidence is, from its fit record."""
    if fit.family == CASCADE:
        return "the answering stage's"
    if fit.details.get("logprobs"):
        return "label probability (token log-probabilities)"
    if fit.details.get("samples"):
        return "agreement of repeated samples"
    return "top class probability"


def table(a: "Analysis") -> pd.DataFrame:
    ab, fits = a.beyond.abstention, a.manifest.strategies
    s = ab.summary
    return pd.DataFrame({
        "strategy": s["strategy"], "confidence": [source(fits[name]) for name in s["strategy"]],
        "mean confidence": s["mean_confidence"].map(pct), "accuracy": s["accuracy"].map(pct),
        f"ECE, {ab.bins} bins (95% CI)": [f"{e:.3f} ({lo:.3f} to {hi:.3f})"
                                          for e, lo, hi in zip(s["ece"], s["ece_ci_low"], s["ece_ci_high"])],
        f"answered at {pct(ab.target)} accuracy": s["coverage"].map(lambda c: "none" if pd.isna(c) else pct(c)),
        "confidence threshold": s["threshold"].map(lambda t: "" if pd.isna(t) else f"{t:.3f}"),
        "accuracy of those answered": s["answered_accuracy"].map(lambda x: "" if pd.isna(x) else pct(x))})


def sections(a: "Analysis") -> dict:
    if a.beyond.abstention.summary.empty:
        return {}
    return {"abstention": (f"Calibration and abstention: what each strategy can answer at "
                           f"{pct(a.beyond.abstention.target)} accuracy", table(a))}


# ------------------------------------------------------------------------------------------------- charts
def reliability_chart(ax, a: "Analysis") -> None:
    ax.plot([0, 1], [0, 1], color="black", linestyle=":", linewidth=1, label="perfectly calibrated")
    for i, (name, bins) in enumerate(a.beyond.abstention.reliability.groupby("strategy", sort=False)):
        s = style(i)
        ax.plot(bins["confidence"], bins["accuracy"], color=s["color"], marker=s["marker"],
                linestyle=s["linestyle"], markerfacecolor="white", label=short(name))
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("mean confidence in the bin")
    ax.set_ylabel("accuracy in the bin")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def coverage_chart(ax, a: "Analysis") -> None:
    for i, (name, curve) in enumerate(a.beyond.abstention.curves.groupby("strategy", sort=False)):
        s = style(i)
        ax.step(curve["coverage"], curve["accuracy"], where="post", color=s["color"], linestyle=s["linestyle"],
                label=short(name))
    ax.axhline(a.beyond.abstention.target, color="black", linestyle=":", linewidth=1,
               label=f"target {pct(a.beyond.abstention.target)}")
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("coverage: share of items answered (most confident first)")
    ax.set_ylabel("accuracy of the answered items")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def chart_specs(a: "Analysis") -> list[tuple]:
    if a.beyond.abstention.summary.empty:
        return []
    return [("reliability", "Reliability diagram",
             f"Per strategy that scores its answers: accuracy against mean confidence in {a.beyond.abstention.bins} "
             "equal-width bins (empty bins left out). On the dotted diagonal a confidence of 80% is right 80% of "
             "the time; below it the strategy is overconfident.", reliability_chart, (7.5, 4.8)),
            ("coverage", "Accuracy against coverage",
             "Each strategy answers only its most confident items: the accuracy of those it answers as the share "
             f"grows. Where a curve crosses the dotted {pct(a.beyond.abstention.target)} line is how much it can "
             "answer at the target.", coverage_chart, (7.5, 4.8))]
