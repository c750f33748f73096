"""The report's tables as frames of display strings, shared by report.md and report.html."""
from __future__ import annotations

import pandas as pd

from harness.report.analysis import Analysis
from harness.report.fmt import pct, points, pvalue, usd, volume
from harness.report.recommend import ALPHA
from harness.strategies.base import PROMPTED


def _ci(values, lows, highs, show) -> list[str]:
    return [f"{show(v)} ({show(lo)} to {show(hi)})" for v, lo, hi in zip(values, lows, highs)]


def results(a: Analysis) -> pd.DataFrame:
    r = a.results
    return pd.DataFrame({
        "strategy": r["strategy"], "family": r["family"], "model": r["model"].fillna(""), "n": r["n"],
        "accuracy (95% CI)": _ci(r["accuracy"], r["accuracy_ci_low"], r["accuracy_ci_high"], pct),
        "macro-F1 (95% CI)": _ci(r["macro_f1"], r["macro_f1_ci_low"], r["macro_f1_ci_high"], "{:.3f}".format),
        "p50 / p95 ms": [f"{p50:.1f} / {p95:.1f}" for p50, p95 in zip(r["latency_p50_ms"], r["latency_p95_ms"])],
        "latency basis": r["latency_basis"].fillna(""),
        "$ per 1k (95% CI)": _ci(r["cost_per_1k_usd"], r["cost_per_1k_usd_ci_low"], r["cost_per_1k_usd_ci_high"],
                                 usd),
        "fit s": r["fit_seconds"].map("{:.1f}".format), "fit $": r["fit_cost_usd"].map(usd),
        "errors": r["n_errors"], "invalid": r["n_invalid"],
    })


def total_cost(a: Analysis) -> pd.DataFrame:
    plan, r = a.plan, a.results
    lines = [a.lines[name] for name in r["strategy"]]
    return pd.DataFrame({
        "strategy": r["strategy"], "family": r["family"],
        "one-off fit": [usd(line.fit_usd) for line in lines],
        "retrains": [f"{line.retrains} x {usd(line.retrain_usd)}" for line in lines],
        "fixed fees a month": [usd(line.fixed_monthly_usd) for line in lines],
        "$ per 1k items": [usd(1000 * line.cost_per_item_usd) for line in lines],
        f"inference over {plan.horizon_months:g} months": [usd(line.usd_per_monthly_item * plan.monthly_volume)
                                                          for line in lines],
        f"total over {plan.horizon_months:g} months": r["total_usd"].map(usd),
        "a month": r["monthly_usd"].map(usd),
        "within budget": ["yes" if ok else "no" for ok in r["within_budget"]],
    })


def break_even(a: Analysis) -> pd.DataFrame:
    b = a.break_evens
    return pd.DataFrame({
        "prompted": b["prompted"], "trained": b["trained"],
        "break-even items a month": [volume(v) if kind == "crosses" else kind
                                     for kind, v in zip(b["kind"], b["monthly_volume"])],
        "cheaper below": b["cheaper_below"].fillna("(same)"), "cheaper above": b["cheaper_above"].fillna("(same)"),
    })


def significance(a: Analysis) -> pd.DataFrame:
    p = a.pairwise
    return pd.DataFrame({
        "a": p["a"], "b": p["b"], "paired items": p["n_items"],
        "accuracy a": p["accuracy_a"].map(pct), "accuracy b": p["accuracy_b"].map(pct),
        "b - a (95% CI)": _ci(p["diff_b_minus_a"], p["diff_ci_low"], p["diff_ci_high"], points),
        "only a right": p["only_a_correct"], "only b right": p["only_b_correct"],
        "McNemar p": p["p_mcnemar"].map(pvalue), "Holm p": p["p_holm"].map(pvalue),
        f"significant (Holm, {ALPHA:g})": ["yes" if q < ALPHA else "no" for q in p["p_holm"]],
    })


def per_class(a: Analysis, limit: int | None = None) -> pd.DataFrame:
    """F1 per class and strategy, worst classes (lowest mean F1 across strategies) first."""
    if a.per_class.empty:
        return pd.DataFrame()
    wide = a.per_class.pivot(index="label", columns="strategy", values="f1")[list(a.results["strategy"])]
    support = a.per_class.groupby("label")["support"].max()
    order = wide.mean(axis=1).sort_values(kind="stable").index[:limit]
    shown = wide.loc[order].map("{:.2f}".format)
    shown.insert(0, "support", support.loc[order].astype(int))
    return shown.rename_axis("class").reset_index()


def confusions(a: Analysis) -> pd.DataFrame:
    c = a.confusions
    return pd.DataFrame({"gold": c["gold"], "predicted": c["pred"], "count": c["count"],
                         "example": c["example_text"].where(c["example_text"] != "", c["example_id"])})


def flips(a: Analysis) -> pd.DataFrame:
    f = a.flips
    return pd.DataFrame({"item": f["item_id"], "text": f["text"], "gold": f["gold"], "right": f["right"],
                         "best predicted": f["pred_best"], "other predicted": f["pred_other"]})


def learning_curve(a: Analysis) -> pd.DataFrame:
    c = a.learning_curve
    return pd.DataFrame({"strategy": c["strategy"], "training items per class": c["train_per_class"].map("{:g}".format),
                         "accuracy (min to max over seeds)": [f"{pct(m)} ({pct(lo)} to {pct(hi)})" for m, lo, hi in
                                                              zip(c["accuracy"], c["accuracy_min"], c["accuracy_max"])],
                         "seeds": c["n_seeds"]})


def scenario(a: Analysis) -> pd.DataFrame:
    s = a.scenario
    return pd.DataFrame({
        "strategy": s["strategy"], "family": s["family"],
        "new categories: before": s["new_accuracy_before"].map(pct),
        "new categories: after": s["new_accuracy_after"].map(pct),
        "old categories: before": s["old_accuracy_before"].map(pct),
        "old categories: after": s["old_accuracy_after"].map(pct),
        "overall: before": s["accuracy_before"].map(pct), "overall: after": s["accuracy_after"].map(pct),
        "time to adapt s": s["adapt_seconds"].map("{:.1f}".format), "cost to adapt": s["adapt_cost_usd"].map(usd),
    })


def retrain(a: Analysis) -> pd.DataFrame:
    """Per strategy that trains (any family but prompted): the time and money one refit takes (its measured fit, priced on the hardware
    profile, or a provider's training price), and the training items it learned from."""
    fits = a.manifest.strategies
    rows = a.results[a.results["family"] != PROMPTED]
    return pd.DataFrame({
        "strategy": rows["strategy"],
        "training items": [fits[name].n_train for name in rows["strategy"]],
        "retrain time": ["provider-side (not measured)" if pd.isna(s) else f"{s:,.1f} s" for s in rows["fit_seconds"]],
        "retrain $": rows["fit_cost_usd"].map("{:.4f}".format),
        "priced as": [fits[name].fit_basis for name in rows["strategy"]]})


PROJECTION_NOTE = ("What the same prompts would cost per 1,000 items on each API model, from their tokens counted "
                   "with that model's tokenizer and the completion tokens measured here; no API model was called "
                   "and accuracy on them is unknown.")


def projection(manifest) -> pd.DataFrame:
    """The prompted strategies' recorded prompts priced on API models (harness.costs.projection), beside the cost
    measured on the run's own model. Empty when the run has no projection."""
    rows = manifest.projection
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    return pd.DataFrame({
        "strategy": frame["strategy"], "if run on (projected)": frame["api_model"],
        "projected $ per 1k": frame["projected_cost_per_1k_usd"].map("{:.4f}".format),
        "measured on": frame["measured_model"],
        "measured $ per 1k": frame["measured_cost_per_1k_usd"].map("{:.4f}".format),
        "prompt / completion tokens": [f"{p:.0f} / {c:.1f}" for p, c in
                                       zip(frame["prompt_tokens_mean"], frame["completion_tokens_mean"])],
        "tokenizer": frame["tokenizer"], "price source": frame["price_source"]})
