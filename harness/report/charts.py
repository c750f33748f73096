"""The report's charts (matplotlib's object API, Agg rendering), saved as PNG and SVG. Each is drawn on a given
Axes so the PDF summary reuses them. Readable in black and white: strategies differ by marker and line style,
bars by hatching, the Pareto frontier by fill; colour only repeats what the shapes already say."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.report.analysis import Analysis
from harness.report.fmt import volume
from harness.report.style import short, style

HATCHES = ["//", "\\\\", "xx", "..", "oo", "--", "++", "**"]
ANNOTATE_ALL = 8  # up to this many strategies, every point of the accuracy/cost chart is named
PER_CLASS_ROWS = 25  # the per-class chart shows the worst classes; the full table is in the report
ANNOTATED_COLUMNS = 12  # the per-class chart prints each F1 in its cell up to this many strategies
LEGEND_ROWS = 18  # legend entries per column beside a 4.8-inch chart
RC = {
    "text.parse_math": False,  # dataset labels may contain '$'; they are text, never TeX
    "font.size": 9, "axes.grid": True, "grid.color": "0.88", "grid.linewidth": 0.6,
    "svg.hashsalt": "harness", "svg.fonttype": "none",  # reproducible SVG ids; text stays editable text
}


@dataclass
class Chart:
    key: str
    title: str
    caption: str
    png: Path
    svg: Path


@contextlib.contextmanager
def rc():
    import matplotlib

    with matplotlib.rc_context(RC):
        yield


# ------------------------------------------------------------------------------------------------ drawings
def accuracy_cost(ax, a: Analysis) -> None:
    """Accuracy against the all-in monthly cost at the plan's volume, 95% accuracy intervals, and the Pareto
    frontier. Measured strategies only: a projected option's accuracy was not measured on its model."""
    r = a.results
    monthly = np.array([a.costs.bills[name].total_usd / a.plan.horizon_months for name in r["strategy"]])
    frontier = pareto(monthly, r["accuracy"].to_numpy())
    for i, row in enumerate(r.itertuples()):
        s = style(i)
        yerr = [[row.accuracy - row.accuracy_ci_low], [row.accuracy_ci_high - row.accuracy]]
        ax.errorbar([monthly[i]], [row.accuracy], yerr=yerr, marker=s["marker"], color=s["color"], markersize=8,
                    capsize=3, linestyle="none", label=short(row.strategy),
                    markerfacecolor=s["color"] if i in frontier else "white", markeredgecolor="black")
        if len(r) <= ANNOTATE_ALL or i in frontier:  # many strategies: name only the frontier's, legend has all
            ax.annotate(short(row.strategy), (monthly[i], row.accuracy), textcoords="offset points", xytext=(6, 5),
                        fontsize=7)
    order = sorted(frontier, key=lambda i: monthly[i])
    ax.step(monthly[order], r["accuracy"].to_numpy()[order], where="post", color="black", linestyle="--",
            linewidth=1, label="Pareto frontier (filled markers)")
    _log_if_positive(ax, "x", monthly)
    ax.set_xlabel(f"all-in cost a month at {volume(a.plan.monthly_volume)} items (USD)")
    ax.set_ylabel("accuracy (95% CI)")
    _legend_outside(ax)


def pareto(costs: np.ndarray, accuracy: np.ndarray) -> list[int]:
    """Indices no other strategy beats on both cost (lower) and accuracy (higher)."""
    keep, best = [], -np.inf
    for i in sorted(range(len(costs)), key=lambda i: (costs[i], -accuracy[i])):
        if accuracy[i] > best:
            keep.append(i)
            best = accuracy[i]
    return keep


def cost_lines(a: Analysis) -> list[str]:
    """The options the cost-against-volume chart draws: every measured strategy, and the decision's prompted
    strategy on each API model it was projected onto."""
    d = a.costs.decision
    projected = [name for name, o in a.costs.options.items()
                 if o.projected and d is not None and o.strategy == d.prompted.strategy]
    return [*a.results["strategy"], *projected]


def total_cost(ax, a: Analysis) -> None:
    """Total cost over the horizon against monthly volume: measured strategies solid, projected API options
    dashed; the decision pair's break-even marked, the plan's volume shown."""
    from harness.costs.tco import bill

    d, plan, date = a.costs.decision, a.plan, a.costs.decision_date
    crossing = d.break_even.monthly_volume if d is not None and d.break_even.kind == "crosses" else None
    anchors = [plan.monthly_volume or 1.0, *([crossing] if crossing else [])]
    volumes = np.geomspace(max(min(anchors) / 100, 1.0), max(max(anchors) * 100, 1e4), 120)
    top = []
    for i, name in enumerate(cost_lines(a)):
        option, s = a.costs.options[name], style(i)
        totals = np.array([bill(option, plan, v, date).total_usd for v in volumes])
        top.append(totals[-1])
        ax.plot(volumes, totals, color=s["color"], linestyle="--" if option.projected else "-", marker=s["marker"],
                markevery=20, markerfacecolor="white",
                label=short(name, 48) + (" (cost projected)" if option.projected else ""))
    if crossing:
        total = bill(d.prompted, plan, crossing, date).total_usd
        ax.plot([crossing], [total], marker="X", color="black", markersize=10, linestyle="none",
                label=f"break-even: {volume(crossing)} a month")
    ax.axvline(plan.monthly_volume, color="0.3", linestyle=":", linewidth=1.2,
               label=f"plan: {volume(plan.monthly_volume)} a month")
    _log(ax, "x")
    _log_if_positive(ax, "y", np.array(top))
    ax.set_xlabel("items a month")
    ax.set_ylabel(f"total cost over {plan.horizon_months:g} months (USD)")
    _legend_outside(ax)


def tornado(ax, a: Analysis) -> None:
    """The decision pair's break-even volume with each input halved and doubled, widest first."""
    from harness.costs.tco import MAX_VOLUME

    d = a.costs.decision
    t = d.sensitivity.iloc[::-1].reset_index(drop=True)  # widest on top
    base = d.break_even.monthly_volume if d.break_even.kind == "crosses" else None
    for i, row in t.iterrows():
        ends = [MAX_VOLUME if v is None or pd.isna(v) else v for v in (row.break_even_low, row.break_even_high)]
        low, high = min(ends), max(ends)
        ax.barh(i, high - low, left=low, color="0.75", edgecolor="black", hatch=HATCHES[0] if ends[0] > ends[1]
                else None)
    ax.set_yticks(range(len(t)), [short(x, 44) for x in t["input"]])
    if base:
        ax.axvline(base, color="black", linewidth=1.2, label=f"as planned: {volume(base)} a month")
    ax.plot([], [], color="0.75", linewidth=6, label="halved to doubled (hatched: halving raises it)")
    _log(ax, "x")
    ax.set_xlabel("break-even items a month (edge of the axis: never)")
    _legend_outside(ax)


def latency(ax, a: Analysis) -> None:
    names = list(a.latency_ms)
    data = [a.latency_ms[name] for name in names]
    ax.boxplot(data, orientation="horizontal", whis=(5, 95), showfliers=False, tick_labels=[short(n) for n in names],
               medianprops={"color": "black", "linewidth": 2})
    p95 = [np.percentile(d, 95) if len(d) else np.nan for d in data]
    ax.plot(p95, range(1, len(names) + 1), marker="^", color="black", linestyle="none", label="p95")
    ax.plot([], [], color="black", linewidth=2, label="p50 (median); box 25-75%, whiskers 5-95%")
    _log_if_positive(ax, "x", np.concatenate(data) if data else np.array([]))
    ax.invert_yaxis()
    ax.set_xlabel("latency per item (ms)")
    _legend_outside(ax)


def per_class_f1(ax, a: Analysis) -> None:
    from harness.report import tables

    frame = tables.per_class(a, limit=PER_CLASS_ROWS)
    values = frame.drop(columns=["class", "support"]).astype(float).to_numpy()
    image = ax.imshow(values, cmap="Greys_r", vmin=0, vmax=1, aspect="auto")
    if values.shape[1] <= ANNOTATED_COLUMNS:  # beyond that (a sweep's many points) the numbers overlap
        for (row, col), value in np.ndenumerate(values):
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if value < 0.55 else "black")
    ax.set_xticks(range(values.shape[1]), [short(c) for c in frame.columns[2:]], rotation=30, ha="right")
    ax.set_yticks(range(len(frame)), [short(c) for c in frame["class"]])
    ax.grid(False)
    ax.figure.colorbar(image, ax=ax, label="F1", fraction=0.04)


def confusions(ax, a: Analysis) -> None:
    c = a.confusions
    labels = [f"{short(gold)} -> {short(pred)}" for gold, pred in zip(c["gold"], c["pred"])]
    bars = ax.barh(range(len(c)), c["count"], color="white", edgecolor="black")
    for bar, hatch in zip(bars, HATCHES * len(c)):
        bar.set_hatch(hatch)
    ax.set_yticks(range(len(c)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(f"held-out items ({a.best or 'most accurate'}: gold -> predicted)")
    ax.xaxis.get_major_locator().set_params(integer=True)


def learning_curve(ax, a: Analysis) -> None:
    for i, (name, curve) in enumerate(a.learning_curve.groupby("strategy", sort=False)):
        s = style(i)
        err = [curve["accuracy"] - curve["accuracy_min"], curve["accuracy_max"] - curve["accuracy"]]
        ax.errorbar(curve["train_per_class"], curve["accuracy"], yerr=err, capsize=3, label=short(name),
                    color=s["color"], marker=s["marker"], linestyle=s["linestyle"], markerfacecolor="white")
    _log(ax, "x", base=2)
    ax.set_xlabel("training items per class")
    ax.set_ylabel("accuracy (mean; bars: min to max over seeds)")
    _legend_outside(ax)


def _log_if_positive(ax, axis: str, values: np.ndarray) -> None:
    """Log scale when every value is positive and they span more than a factor of 10; else linear."""
    values = values[np.isfinite(values)]
    if len(values) and values.min() > 0 and values.max() / values.min() > 10:
        _log(ax, axis)


def _log(ax, axis: str, base: float = 10) -> None:
    """A log axis with plain tick labels: the default ones are TeX, which RC turns off for dataset text."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    (ax.set_xscale if axis == "x" else ax.set_yscale)("log", base=base)
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(FuncFormatter(lambda value, _: compact(value)))
    target.set_minor_formatter(NullFormatter())


def compact(value: float) -> str:
    """Tick labels that fit side by side on a log axis: 500, 10k, 2.5M."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def _legend_outside(ax) -> None:
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
              ncols=legend_columns(len(handles)))


def legend_columns(entries: int) -> int:
    """A sweep's dozens of points would make one legend column taller than the chart."""
    return max(1, math.ceil(entries / LEGEND_ROWS))


def _legend_width(a: Analysis) -> float:
    """The width of the charts with a legend beside them: 7.5 inches, plus room for every extra legend column
    (the legend lists each strategy and up to two reference entries)."""
    return 7.5 + 2.4 * (legend_columns(max(len(a.results), len(cost_lines(a))) + 2) - 1)


# ----------------------------------------------------------------------------------------------- charts
def specs(a: Analysis) -> list[tuple]:
    """(key, title, caption, draw, (width, height) inches) of the charts this analysis has data for."""
    plan = a.plan
    out = [
        ("accuracy_cost", "Accuracy against all-in monthly cost",
         "Bars: 95% bootstrap intervals. Filled markers and the dashed step: the Pareto frontier (no other strategy "
         "is both cheaper and more accurate).", accuracy_cost, (_legend_width(a), 4.8)),
        ("total_cost", "Total cost against monthly volume",
         f"All in over {plan.horizon_months:g} months: people's time, labelling, retrains and prompt changes, "
         "serving or API calls. Dashed: a prompted strategy's prompts priced on an API model (cost projected; "
         "its accuracy measured on the run's own model). X: where the decision's prompted and trained options "
         f"break even. Dotted: the plan's {volume(plan.monthly_volume)} items a month.", total_cost,
         (_legend_width(a), 4.8)),
        ("latency", "Latency per item", "Box: 25th to 75th percentile; whiskers: 5th to 95th; triangle: p95.",
         latency, (7.5, 0.9 + 0.45 * len(a.latency_ms))),
    ]
    if a.costs.decision is not None and not a.costs.decision.sensitivity.empty:
        out.append(("sensitivity", "What moves the break-even",
                    f"{a.costs.decision.prompted.name} against {a.costs.decision.trained.name}: the break-even "
                    "volume with each input halved and doubled, every other as planned.", tornado,
                    (7.5, 1.2 + 0.32 * len(a.costs.decision.sensitivity))))
    if not a.per_class.empty:
        rows = min(PER_CLASS_ROWS, a.per_class["label"].nunique())
        out.append(("per_class_f1", "F1 per class, worst first",
                    f"The {rows} classes with the lowest mean F1 across strategies (of "
                    f"{a.per_class['label'].nunique()}).", per_class_f1,
                    (max(7.5, 3.5 + 0.4 * len(a.results)), 1.2 + 0.28 * rows)))
    if not a.confusions.empty:
        out.append(("confusions", f"Top confusions of {a.best or 'the most accurate strategy'}",
                    "Most frequent (gold, predicted) mistakes.", confusions, (10.0, 1.0 + 0.3 * len(a.confusions))))
    if not a.learning_curve.empty:
        out.append(("learning_curve", "Learning curves", "Accuracy as training items per class grow.",
                    learning_curve, (7.5, 4.5)))
    from harness.report import abstention, hybrids

    return out + ([*abstention.chart_specs(a), *hybrids.chart_specs(a)] if a.beyond is not None else [])


def render(a: Analysis, out_dir: Path) -> list[Chart]:
    """Every chart as out_dir/<key>.png and .svg."""
    from matplotlib.figure import Figure

    out_dir.mkdir(parents=True, exist_ok=True)
    for old in [*out_dir.glob("*.png"), *out_dir.glob("*.svg")]:  # a re-render may draw fewer charts
        old.unlink()
    charts = []
    with rc():
        for key, title, caption, draw, size in specs(a):
            fig = Figure(figsize=size, layout="constrained")
            ax = fig.add_subplot()
            draw(ax, a)
            ax.set_title(title, fontsize=10)
            png, svg = out_dir / f"{key}.png", out_dir / f"{key}.svg"
            fig.savefig(png, dpi=110)
            fig.savefig(svg, metadata={"Date": None})
            charts.append(Chart(key, title, caption, png, svg))
    return charts

