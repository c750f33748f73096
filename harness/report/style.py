"""The charts' shared look: strategies differ by marker and line style (readable in black and white), colour only
repeats what the shapes say; long names are shortened so the plot keeps its room."""
from __future__ import annotations

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p"]
LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)), (0, (8, 3)), (0, (3, 1, 1, 1, 1, 1))]


def style(index: int) -> dict:
    from matplotlib import colormaps

    return {"marker": MARKERS[index % len(MARKERS)], "linestyle": LINESTYLES[index % len(LINESTYLES)],
            "color": colormaps["tab10"](index % 10)}


def short(text: str, limit: int = 40) -> str:
    """Long names (a merged run's `zero_shot@experiment/2026-...`, long labels) would squeeze the plot away;
    the tables carry them whole."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit // 2 - 1]}...{text[-(limit // 2 - 2):]}"
