"""How numbers read in every report format: percentages, dollars, volumes, p-values."""
from __future__ import annotations

import html
import math


def pct(x: float, digits: int = 1) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.{digits}f}%"


def points(x: float) -> str:
    """An accuracy difference in percentage points, signed."""
    return "n/a" if math.isnan(x) else f"{round(100 * x, 1) + 0.0:+.1f} pts"  # + 0.0: no "-0.0"


def usd(x: float) -> str:
    """Whole dollars from $100, cents from $1, else two significant digits (per-item costs are tiny); amounts
    under a hundredth of a cent read as such (the CSVs keep the exact figures)."""
    if x is None or math.isnan(x):
        return "n/a"
    if 0 < abs(x) < 1e-4:
        return "< $0.0001"
    if abs(x) >= 100:
        return f"${x:,.0f}"
    if abs(x) >= 1 or x == 0:
        return f"${x:,.2f}"
    return f"${x:.2g}"


def volume(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:,.0f}"


def pvalue(p: float) -> str:
    return "n/a" if math.isnan(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def md_cell(value, max_chars: int = 160) -> str:
    """Text in a Markdown table cell: one line, HTML escaped (pull-request comments render HTML), pipes escaped."""
    text = " ".join(str(value).split())
    text = text if len(text) <= max_chars else text[: max_chars - 1] + "…"
    return html.escape(text, quote=False).replace("|", "\\|")
