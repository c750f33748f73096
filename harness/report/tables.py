"""The report's tables as frames of display strings, shared by report.md and report.html."""
from __future__ import annotations

import pandas as pd

from harness.report.analysis import Analysis
from harness.report.fmt import pct, points, pvalue, usd, volume
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
    """Every option (measured strategies, then prompted strategies projected onto API models) at the plan's
    volume, component by component."""
    plan, accuracy = a.plan, dict(zip(a.results["strategy"], a.results["accuracy"]))
    months = f"{plan.horizon_months:g} months"
    rows = []
    for name, b in a.costs.bills.items():
        o = b.option
        note = ("retired" if b.retired else "") or (f"retires {b.retires_on}" if b.retires_on else "")
        rows.append({
            "option": name, "family": o.family,
            "accuracy": pct(accuracy[o.strategy]) + (" (measured on the run's model)" if o.projected else ""),
            "build": usd(b.part("build")), "fit": usd(b.part("fit")), "upkeep": usd(b.part("upkeep")),
            "new categories": usd(b.part("new categories")), "retirement": usd(b.part("retirement")),
            "serving or API calls": usd(b.part("serving") + b.part("inference") + b.part("fees")),
            f"total over {months}": usd(b.total_usd), "a month": usd(b.total_usd / plan.horizon_months),
            "within budget": "yes" if plan.monthly_budget_usd is None or
                             b.total_usd / plan.horizon_months <= plan.monthly_budget_usd else "no",
            "note": ", ".join(x for x in ("projected" if o.projected else "", note) if x)})
    return pd.DataFrame(rows)


def bill_detail(a: Analysis) -> pd.DataFrame:
    """The decision pair's bills, one row per component with its arithmetic: checkable by hand."""
    d = a.costs.decision
    if d is None:
        return pd.DataFrame()
    rows = [{"option": o.name, "component": c.name, "usd": usd(c.usd), "how": c.how}
            for o in (d.prompted, d.trained) for c in a.costs.bills[o.name].components]
    return pd.DataFrame(rows)


def break_even(a: Analysis) -> pd.DataFrame:
    b = a.costs.break_evens
    return pd.DataFrame({
        "prompted": b["prompted"], "trained": b["trained"],
        "break-even items a month": [volume(v) if kind == "crosses" else kind
                                     for kind, v in zip(b["kind"], b["monthly_volume"])],
        "cheaper below": b["cheaper_below"].fillna("(same)"), "cheaper above": b["cheaper_above"].fillna("(same)"),
    })


def sensitivity(a: Analysis) -> pd.DataFrame:
    d = a.costs.decision
    if d is None:
        return pd.DataFrame()
    t = d.sensitivity

    def even(v):
        return "never" if v is None or pd.isna(v) else volume(v)

    return pd.DataFrame({
        "input (halved / doubled)": t["input"], "planned": t["planned"].map("{:g}".format),
        "break-even if halved": t["break_even_low"].map(even), "if doubled": t["break_even_high"].map(even),
        "cheaper at plan if halved": t["cheaper_low"], "if doubled ": t["cheaper_high"]})


def assumptions(a: Analysis) -> pd.DataFrame:
    """The plan's assumptions: each dotted key, its value in this report, and where the default comes from."""
    from harness.report.sensitivity import plan_value

    rows = []
    for key, source in a.plan.assumptions.items():
        try:
            value = plan_value(a.plan, key)
        except (AttributeError, KeyError):
            value = "(not a pricing key)"
        shown = (", ".join(f"{k}: {v:g}" for k, v in value.items()) if isinstance(value, dict)
                 else f"{value:g}" if isinstance(value, float) else str(value))
        rows.append({"assumption": key, "value": shown, "source": source})
    return pd.DataFrame(rows)


def significance(a: Analysis) -> pd.DataFrame:
    p = a.pairwise
    return pd.DataFrame({
        "a": p["a"], "b": p["b"], "paired items": p["n_items"],
        "accuracy a": p["accuracy_a"].map(pct), "accuracy b": p["accuracy_b"].map(pct),
        "b - a (95% CI)": _ci(p["diff_b_minus_a"], p["diff_ci_low"], p["diff_ci_high"], points),
        "only a right": p["only_a_correct"], "only b right": p["only_b_correct"],
        "McNemar p": p["p_mcnemar"].map(pvalue), "Holm p": p["p_holm"].map(pvalue),
        f"significant (Holm, {a.verdict.rule.alpha:g})": ["yes" if q < a.verdict.rule.alpha else "no"
                                                          for q in p["p_holm"]],
    })


def decision_family(a: Analysis) -> pd.DataFrame:
    """The recommended strategy against each other option, Holm over these comparisons only."""
    f, alpha = a.verdict.family, a.verdict.rule.alpha
    if f.empty:
        return pd.DataFrame()
    return pd.DataFrame({
        "recommended": f["a"], "against": f["b"], "paired items": f["n_items"],
        "accuracy difference (95% CI)": _ci(-f["diff_b_minus_a"], -f["diff_ci_high"], -f["diff_ci_low"], points),
        "macro-F1 difference (95% CI)": [f"{-d:+.3f} ({-h:+.3f} to {-lo:+.3f})" for d, lo, h in
                                         zip(f["macro_f1_diff_b_minus_a"], f["macro_f1_diff_ci_low"],
                                             f["macro_f1_diff_ci_high"])],
        "McNemar p": f["p_mcnemar"].map(pvalue), "Holm p (the decision's comparisons)": f["p_holm"].map(pvalue),
        f"significant ({alpha:g})": ["yes" if q < alpha else "no" for q in f["p_holm"]]})


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


PROJECTION_NOTE = ("What the same prompts would cost on each API model: tokens counted with that model's "
                   "tokenizer, the shared prefix that prompt caching can serve, the completion tokens measured here, "
                   "and the model's published prices in each billing mode. No API model was called: the accuracy is "
                   "the run's own model's.")


def projection(a: Analysis) -> pd.DataFrame:
    """The prompted strategies' prompts priced on API models in every billing mode, at the plan's volume. Empty
    when the run has no projection."""
    from harness.costs.api import mode_note, per_item_usd

    plan, rows = a.plan, []
    for name, o in a.costs.options.items():
        if o.quote is None:
            continue
        q, t = o.quote, o.tokens
        cost = {mode: 1000 * per_item_usd(q, t, mode, plan.api, plan.monthly_volume)
                for mode in ("on_demand", "cached", "batch")}
        rows.append({"option": name, "API model": q.model, "prompt / prefix / completion tokens":
                     f"{t.prompt:,.0f} / {t.prefix:,.0f} / {t.completion:.1f}",
                     "$ per 1k on demand": f"{cost['on_demand']:.4f}", "cached": f"{cost['cached']:.4f}",
                     "batch": f"{cost['batch']:.4f}", "caching": mode_note(q, t, "cached", plan.api,
                                                                          plan.monthly_volume),
                     "retires": q.retires_on or "not dated", "price source": q.source})
    return pd.DataFrame(rows)


def sections(a: Analysis) -> dict[str, tuple[str, pd.DataFrame]]:
    """The report's tables after the results, in order, each with its title: shared by report.md and
    report.html, so the two never drift apart. Tables with nothing to show are left out."""
    out = {"total_cost": (f"Total cost of ownership at {volume(a.plan.monthly_volume)} items a month",
                          total_cost(a)),
           "bill_detail": ("The decision's two bills, component by component", bill_detail(a)),
           "break_even": ("Break-even volumes (prompted against trained)", break_even(a)),
           "sensitivity": ("What moves the break-even: each assumption halved and doubled", sensitivity(a)),
           "assumptions": ("Assumptions behind the costs", assumptions(a)),
           "projection": ("Projected API cost (a projection, not measured)", projection(a)),
           "retrain": ("What one retrain costs (trained strategies)", retrain(a))}
    if not a.learning_curve.empty:
        out["learning_curve"] = ("Learning curves", learning_curve(a))
    if a.scenario is not None:
        out["scenario"] = ("New categories: before and after adapting", scenario(a))
    from harness.report import abstention, hybrids, label_audit

    if a.beyond is not None:
        out.update({**hybrids.sections(a), **abstention.sections(a), **label_audit.sections(a)})
    out["decision_family"] = ("The decision's comparisons: the recommended strategy against each other option",
                              decision_family(a))
    out["significance"] = ("Every pair (a reference; Holm over all pairs)", significance(a))
    return {key: (title, frame) for key, (title, frame) in out.items() if not frame.empty}
