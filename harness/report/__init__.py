"""Reports rebuilt from a run directory's records and manifest alone: no model is loaded here.

A run directory gets results.csv, per_class.csv, total_cost.csv, break_even.csv, sensitivity.csv,
significance.csv (and scenario.csv for a scenario run), report.md, report.html, summary.pdf and
charts/*.png|svg."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from harness.errors import HarnessError
from harness.files import atomic_write, temporary_sibling, write_csv
from harness.run.directory import RunDir

RESULT_COLUMNS = ["strategy", "family", "model", "n", "accuracy", "accuracy_ci_low", "accuracy_ci_high",
                  "macro_f1", "macro_f1_ci_low", "macro_f1_ci_high", "latency_p50_ms", "latency_p95_ms",
                  "latency_p99_ms", "throughput_items_per_s", "cost_per_1k_usd", "cost_per_1k_usd_ci_low",
                  "cost_per_1k_usd_ci_high", "spent_usd", "fit_seconds", "fit_cost_usd", "n_errors", "n_invalid",
                  "n_cached", "latency_basis", "run_status", "coverage"]
PLAN_COLUMNS = ["total_usd", "monthly_usd", "within_budget", "retired"]  # depend on the pricing plan, not the run


def build(run_path: Path, pricing_overrides: Sequence[str] = ()) -> pd.DataFrame:
    """Writes the run's tables and reports; returns the results (one row per strategy).

    `pricing_overrides` (`pricing.monthly_volume=50000`, `pricing=NAME`) re-price the decision without touching
    the records."""
    from harness.report import analysis, markdown, pricing
    from harness.run.state import run_state

    rundir = RunDir.open(Path(run_path))
    manifest = rundir.read_manifest()
    records = rundir.load_records()
    if records.empty:
        raise HarnessError(f"{rundir.path}: no records yet, so nothing to report")
    plan, rule = pricing.resolve(manifest, pricing_overrides), pricing.rule(manifest, pricing_overrides)
    items, notes = _items(rundir)
    result = analysis.analyse(manifest, records, plan, rule=rule, items=items, notes=notes,
                              state=run_state(rundir, records))
    _write_tables(rundir.path, result)
    atomic_write(rundir.path / "report.md", markdown.render(result))
    _write_visuals(rundir.path, result)
    return _results_frame(result.results)


def _items(rundir: RunDir) -> tuple[pd.DataFrame | None, list[str]]:
    """The held-out items the run stored: texts for the confusion and flip lists, groups for the statistics."""
    try:
        return rundir.heldout(), []
    except HarnessError as exc:
        return None, [f"item texts unavailable: {exc}"]


def _results_frame(results: pd.DataFrame) -> pd.DataFrame:
    """results.csv: RESULT_COLUMNS first, then whatever else metrics.summarize reports (e.g. train_per_class);
    the costs at the pricing plan go to total_cost.csv instead."""
    rest = [c for c in results.columns if c not in RESULT_COLUMNS and c not in PLAN_COLUMNS]
    return results.reindex(columns=RESULT_COLUMNS + rest)


COMPONENTS = ("build", "fit", "upkeep", "new categories", "retirement", "fees", "serving", "inference")


def total_cost_frame(a) -> pd.DataFrame:
    """total_cost.csv: every option's bill at the plan's volume, one column per component, exact figures."""
    rows = []
    for name, b in a.costs.bills.items():
        o = b.option
        rows.append({"option": name, "strategy": o.strategy, "family": o.family, "model": o.model,
                     "projected": o.projected, "billing": o.billing,
                     **{f"{c.replace(' ', '_')}_usd": b.part(c) for c in COMPONENTS},
                     "upfront_usd": b.upfront_usd, "total_usd": b.total_usd,
                     "monthly_usd": b.total_usd / a.plan.horizon_months, "retired": b.retired,
                     "retires_on": b.retires_on, "monthly_volume": a.plan.monthly_volume,
                     "horizon_months": a.plan.horizon_months})
    return pd.DataFrame(rows)


def _write_tables(path: Path, a) -> None:
    frames = {"results.csv": _results_frame(a.results), "per_class.csv": a.per_class,
              "total_cost.csv": total_cost_frame(a), "break_even.csv": a.costs.break_evens,
              "significance.csv": a.pairwise}
    if a.costs.decision is not None:
        frames["sensitivity.csv"] = a.costs.decision.sensitivity
    if a.scenario is not None:
        frames["scenario.csv"] = a.scenario
    for name, frame in frames.items():
        write_csv(frame, path / name)


def _write_visuals(path: Path, a) -> None:
    from harness.report import charts, html, pdf

    rendered = charts.render(a, path / "charts")
    atomic_write(path / "report.html", html.render(a, rendered))
    tmp = temporary_sibling(path / "summary.pdf")
    pdf.write(a, tmp)
    tmp.replace(path / "summary.pdf")
