"""report.md: the results table and what ran, from a Jinja2 template."""
from __future__ import annotations

import pandas as pd


def render(a) -> str:
    """report.md of an analysis (harness.report.analysis.Analysis): the same tables as report.html."""
    from jinja2 import Environment, PackageLoader

    from harness.report import tables
    from harness.report.analysis import confusions

    env = Environment(loader=PackageLoader("harness.report", "templates"), keep_trailing_newline=True)
    table = _markdown(tables.results(a)) + _single_item_note(a.results)
    top = {name: _markdown(confusions(a.records, name, {}, n=5)[["gold", "pred", "count"]])
           for name in a.results["strategy"]}
    return env.get_template("report.md.j2").render(m=a.manifest, a=a, table=table, confusions=top,
                                                   results=a.results.to_dict("records"), **_decision(a))


def _decision(a) -> dict:
    from harness.report import tables

    sections = {title: frame for title, frame in tables.sections(a).values()}
    sections["F1 per class, worst first (20)"] = tables.per_class(a, limit=20)
    return {"recommendation": a.recommendation, "decision_tables": {title: _markdown(frame)
                                                                    for title, frame in sections.items()}}


def _single_item_note(results: pd.DataFrame) -> str:
    """Batch-amortised strategies also measure items scored one at a time; say which latency is which."""
    column = results.get("single_item_latency_p50_ms")
    if column is None or column.isna().all():
        return ""
    measured = [f"{name}: {ms:.1f} ms" for name, ms in zip(results["strategy"], column) if pd.notna(ms)]
    return ("\n\nSingle-item latency (p50, one item per forward pass, measured on a sample of the held-out items; "
            "the table's p50 / p95 for these strategies is batch-amortised): " + "; ".join(measured) + ".")


def _markdown(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(none)"
    from harness.report.fmt import md_cell

    cells = frame.astype(str).map(md_cell)  # dataset labels: one line, no live HTML, no '|' ending the cell
    return cells.to_markdown(index=False, disable_numparse=True)
