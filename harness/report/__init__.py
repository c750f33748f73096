"""Reports rebuilt from a run directory's records and manifest alone: no model is loaded here."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness import metrics
from harness.records import RunDir, atomic_write

RESULT_COLUMNS = ["strategy", "model", "n", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "macro_f1",
                  "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "throughput_items_per_s",
                  "cost_per_1k_usd", "spent_usd", "fit_seconds", "fit_cost_usd", "n_errors", "n_invalid",
                  "n_cached", "latency_basis"]


def build(run_path: Path) -> pd.DataFrame:
    """Writes results.csv, per_class.csv and report.md into the run directory; returns the results."""
    rundir = RunDir.open(Path(run_path))
    manifest = rundir.read_manifest()
    records = rundir.load_records()
    results = metrics.summarize(records, manifest.get("strategies", {}), seed=manifest.get("config", {}).get("seed", 0))
    results = results.reindex(columns=RESULT_COLUMNS)
    atomic_write(rundir.path / "results.csv", results.to_csv(index=False))
    atomic_write(rundir.path / "per_class.csv", metrics.per_class(records).to_csv(index=False))
    from harness.report.markdown import render

    atomic_write(rundir.path / "report.md", render(manifest, results, records))
    return results
