"""summary.pdf: one page for leadership: the recommendation and the two cost charts (matplotlib's PdfPages)."""
from __future__ import annotations

import textwrap
from pathlib import Path

from harness.report import charts
from harness.report.analysis import Analysis

A4_LANDSCAPE_IN = (11.69, 8.27)
COST_CHARTS = ("accuracy_cost", "total_cost")


def write(a: Analysis, path: Path) -> None:
    from matplotlib.backends.backend_pdf import PdfPages

    with charts.rc(), PdfPages(path, metadata={"Title": f"{a.manifest.experiment}: decision summary",
                                               "CreationDate": None}) as pdf:
        pdf.savefig(page(a))


def page(a: Analysis):
    """The summary page as a matplotlib Figure: title, the recommendation's sentences, the two cost charts."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=A4_LANDSCAPE_IN, layout="constrained")
    text_area, chart_area = fig.subfigures(2, 1, height_ratios=[1, 2.1])
    text_area.text(0.01, 0.97, f"{a.manifest.experiment}: recommendation", fontsize=15,
                   fontweight="bold", va="top")
    body = "\n\n".join(textwrap.fill(sentence, 150) for sentence in a.recommendation)
    text_area.text(0.01, 0.78, body, fontsize=9.5, va="top", linespacing=1.45)
    axes = chart_area.subplots(1, 2)
    crowded = charts.legend_columns(len(a.results) + 2) > 1  # a sweep's dozens of points
    for ax, (_, title, _, draw, _) in zip(axes, [spec for spec in charts.specs(a) if spec[0] in COST_CHARTS]):
        draw(ax, a)
        ax.set_title(title, fontsize=10)
        if crowded:  # two legends that size leave no room for the charts on one page
            ax.get_legend().remove()
    if crowded:
        chart_area.suptitle(f"{len(a.results)} strategies: the legends are in report.html's charts", fontsize=8)
    return fig
