"""summary.pdf: one page a leadership team can sign: the money that matters at their volume, the cost against
volume chart with the prompted (API) and trained lines and the break-even marked, and the assumptions under it
(matplotlib's PdfPages)."""
from __future__ import annotations

import textwrap
from pathlib import Path

from harness.report import charts
from harness.report.analysis import Analysis

A4_LANDSCAPE_IN = (11.69, 8.27)
MAX_ASSUMPTIONS = 14


def write(a: Analysis, path: Path) -> None:
    from matplotlib.backends.backend_pdf import PdfPages

    with charts.rc(), PdfPages(path, metadata={"Title": f"{a.manifest.experiment}: decision summary",
                                               "CreationDate": None}) as pdf:
        pdf.savefig(page(a))


def page(a: Analysis):
    """The summary page as a matplotlib Figure: title, the summary (else the recommendation), the cost chart,
    the assumptions."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=A4_LANDSCAPE_IN, layout="constrained")
    text_area, chart_area, notes_area = fig.subfigures(3, 1, height_ratios=[1.05, 2.0, 0.95])
    text_area.text(0.01, 0.97, f"{a.manifest.experiment}: what it costs, prompt or train", fontsize=15,
                   fontweight="bold", va="top")
    sentences = [*([a.banner] if a.banner else []), *(a.summary or a.recommendation)]
    body = "\n".join(textwrap.fill(sentence, 165) for sentence in sentences)
    text_area.text(0.01, 0.78, body, fontsize=9, va="top", linespacing=1.4)
    text_area.text(0.99, 0.97, f"Run {a.status}", fontsize=8, va="top", ha="right",
                   color="#b00" if a.banner else "#444")
    ax = chart_area.subplots()
    charts.total_cost(ax, a)
    ax.set_title("Total cost against monthly volume", fontsize=10)
    notes_area.text(0.01, 0.98, _assumptions(a), fontsize=6.8, va="top", family="monospace", linespacing=1.3)
    return fig


def _assumptions(a: Analysis) -> str:
    from harness.report import tables

    rows = tables.assumptions(a)
    lines = [f"{r.assumption:<38} {r.value:<28} {textwrap.shorten(r.source, 120)}"
             for r in rows.head(MAX_ASSUMPTIONS).itertuples()]
    more = len(rows) - MAX_ASSUMPTIONS
    return "\n".join(["Assumptions (edit them in the pricing config; every one is in report.html):", *lines,
                      *([f"... and {more} more in report.html"] if more > 0 else [])])
