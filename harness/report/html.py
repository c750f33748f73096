"""report.html: one self-contained file. Charts are inline PNG data: URIs, the style sheet is inline, there is no
script, and a Content-Security-Policy forbids loading anything else. Jinja2 autoescaping escapes every piece of
text, so labels and item texts from the dataset always show as text."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

from harness.report import tables
from harness.report.analysis import Analysis
from harness.report.charts import Chart


def render(a: Analysis, charts: list[Chart]) -> str:
    from jinja2 import Environment, PackageLoader

    env = Environment(loader=PackageLoader("harness.report", "templates"), autoescape=True, trim_blocks=True,
                      lstrip_blocks=True)
    m = a.manifest
    return env.get_template("report.html.j2").render(
        title=f"{m.experiment}: decision report", m=m, a=a, plan=a.plan,
        generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        tables=_sections(a), projection_note=tables.PROJECTION_NOTE, charts=[_figure(chart) for chart in charts],
        manifest_json=json.dumps(m.to_dict(), indent=2, default=str))


def _sections(a: Analysis) -> dict[str, dict]:
    out = {"results": ("Results", tables.results(a)), **tables.sections(a),
           "per_class": ("F1 per class, worst first", tables.per_class(a)),
           "confusions": (f"Top confusions of {a.best or 'the most accurate strategy'}", tables.confusions(a)),
           "flips": ("Items where the two most accurate strategies disagree", tables.flips(a))}
    return {key: {"title": title, "columns": [str(c) for c in frame.columns],
                  "rows": frame.astype(str).values.tolist()} for key, (title, frame) in out.items()}


def _figure(chart: Chart) -> dict:
    return {"key": chart.key, "title": chart.title, "caption": chart.caption,
            "src": "data:image/png;base64," + base64.b64encode(chart.png.read_bytes()).decode("ascii"),
            "svg_file": f"charts/{chart.svg.name}"}
