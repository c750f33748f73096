"""report.md: the results table and what ran, from a Jinja2 template."""
from __future__ import annotations

import pandas as pd

from harness import metrics


def render(manifest: dict, results: pd.DataFrame, records: pd.DataFrame) -> str:
    from jinja2 import Environment, PackageLoader

    env = Environment(loader=PackageLoader("harness.report", "templates"), keep_trailing_newline=True)
    table = _results_table(results)
    confusions = {name: metrics.top_confusions(records, name, n=5).to_markdown(index=False)
                  for name in results["strategy"]}
    return env.get_template("report.md.j2").render(m=manifest, table=table, confusions=confusions,
                                                   results=results.to_dict("records"))


def _results_table(results: pd.DataFrame) -> str:
    shown = pd.DataFrame({
        "strategy": results["strategy"],
        "model": results["model"],
        "n": results["n"],
        "accuracy (95% CI)": [f"{a:.1%} ({lo:.1%}-{hi:.1%})" for a, lo, hi in
                              zip(results["accuracy"], results["accuracy_ci_low"], results["accuracy_ci_high"])],
        "macro-F1": results["macro_f1"].map("{:.3f}".format),
        "p50 / p95 ms": [f"{a:.1f} / {b:.1f}" for a, b in zip(results["latency_p50_ms"], results["latency_p95_ms"])],
        "$ per 1k": results["cost_per_1k_usd"].map("{:.4f}".format),
        "fit s": results["fit_seconds"].map("{:.1f}".format),
        "fit $": results["fit_cost_usd"].map("{:.4f}".format),
        "errors": results["n_errors"],
        "invalid": results["n_invalid"],
    })
    return shown.to_markdown(index=False)
