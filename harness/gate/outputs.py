"""The regression gate's outputs: JUnit XML (one testcase per check per strategy) for CI test panels, and a
Markdown summary fit for a pull-request comment (verdict, checks, what changed, the flipped items)."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

from harness.files import atomic_write
from harness.gate import work
from harness.gate.check import Check, Comparison, Outcome
from harness.report.fmt import md_cell

MAX_FLIPS_SHOWN = 50  # per kind and strategy, fewer when the summary would not fit in a comment
COMMENT_MAX_CHARS = 65_000  # GitHub refuses pull-request comments over 65,536 characters
MAX_CLASSES_SHOWN = 15
MAX_JUNIT_ITEMS = 500  # broken items listed in one JUnit failure; CI panels choke on megabyte messages

SUMMARY = """\
## harness regress: {{ "PASS" if o.passed else "FAIL" }}

Baseline **{{ o.baseline }}** vs candidate `{{ o.candidate.name }}` on the same held-out items \
(hash `{{ o.heldout_hash[:12] }}`).
{%- if o.overrides %} Candidate overrides: \
{% for x in o.overrides %}`{{ x }}`{{ ", " if not loop.last }}{% endfor %}.{% endif %}

{{ checks }}
{% if o.changes %}
Changed outside the strategies:
{% for line in o.changes %}- `{{ line }}`
{% endfor %}{% endif %}
{%- for c in o.comparisons %}
### {{ c.strategy }}: {{ "pass" if c.passed else "FAIL" }}

Accuracy {{ pct(c.accuracy[0]) }} -> {{ pct(c.accuracy[1]) }} on {{ c.n }} items: \
{{ "%+.1f" % c.delta_points[0] }} points (95% paired bootstrap interval {{ "%+.1f" % c.delta_points[1] }} to \
{{ "%+.1f" % c.delta_points[2] }}; two-sided exact McNemar p = {{ "%.3g" % c.mcnemar_p }}); \
{{ flips[c.strategy].broken }} broken, {{ flips[c.strategy].fixed }} fixed.

{% if c.changes %}What changed:
{% for line in c.changes %}- `{{ line }}`
{% endfor %}{% else %}Nothing changed in this strategy's config or template hashes.
{% endif %}
{%- if classes[c.strategy] %}
Classes whose accuracy changed (worst first):

{{ classes[c.strategy] }}
{% endif %}
{%- for kind in ("broken", "fixed") if flips[c.strategy][kind] %}
<details><summary>{{ kind | capitalize }} items ({{ flips[c.strategy][kind] }})</summary>

{{ flips[c.strategy][kind + "_table"] }}

</details>
{% endfor %}
{%- endfor %}
{%- if o.not_compared %}
Not compared: {% for s, why in o.not_compared.items() %}{{ s }} ({{ why }}){{ ", " if not loop.last }}{% endfor %}.
{% endif %}"""


def write(outcome: Outcome, *, junit: Path, summary: Path) -> None:
    for path, text in ((junit, junit_xml(outcome)), (summary, markdown(outcome))):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(Path(path), text)


def markdown(outcome: Outcome) -> str:
    """The summary, with as many flipped items as fit in one pull-request comment."""
    from jinja2 import Environment

    template = Environment(keep_trailing_newline=True).from_string(SUMMARY)
    classes = {c.strategy: _class_table(c) for c in outcome.comparisons}
    max_rows = MAX_FLIPS_SHOWN
    while True:
        flips = {c.strategy: _flip_tables(c, max_rows) for c in outcome.comparisons}
        text = template.render(o=outcome, checks=_checks_table(outcome), flips=flips, classes=classes,
                               pct=lambda x: f"{x:.1%}")
        if len(text) <= COMMENT_MAX_CHARS or max_rows == 0:
            return text
        max_rows //= 2


def junit_xml(outcome: Outcome) -> str:
    suites = ET.Element("testsuites", name="harness regress")
    for comparison in outcome.comparisons:
        checks = comparison.checks
        suite = ET.SubElement(suites, "testsuite", name=f"regress.{comparison.strategy}", tests=str(len(checks)),
                              failures=str(sum(c.status == "fail" for c in checks)),
                              skipped=str(sum(c.status == "skip" for c in checks)), errors="0")
        for check in checks:
            case = ET.SubElement(suite, "testcase", classname=f"regress.{comparison.strategy}", name=check.name,
                                 time="0")
            # CI panels show these beside the result: a machine-dependent check can move with the runner's load
            properties = ET.SubElement(case, "properties")
            ET.SubElement(properties, "property", name="machine_dependent",
                          value=str(check.machine_dependent).lower())
            ET.SubElement(properties, "property", name="unit", value=check.unit)
            if check.status == "fail":
                failure = ET.SubElement(case, "failure", message=_verdict(check), type="regression")
                items = _broken_lines(comparison, check)
                more = [f"...and {len(items) - MAX_JUNIT_ITEMS} more"] if len(items) > MAX_JUNIT_ITEMS else []
                failure.text = "\n".join([_verdict(check), *items[:MAX_JUNIT_ITEMS], *more])
            elif check.status == "skip":
                ET.SubElement(case, "skipped", message=check.message)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def failure_text(outcome: Outcome, max_items: int = 20) -> str:
    """The failed checks and the items they broke, as plain text (the pytest fixture's failure message)."""
    lines = [f"candidate is worse than baseline '{outcome.baseline}':"]
    for comparison in outcome.comparisons:
        for check in (c for c in comparison.checks if c.status == "fail"):
            lines += [f"  {_verdict(check)}", *(f"    {x}" for x in _broken_lines(comparison, check)[:max_items])]
    return "\n".join(lines)


def verdict_lines(outcome: Outcome) -> list[str]:
    """One line per check: status, strategy, check, before -> after, change, rule."""
    return [_verdict(check) for c in outcome.comparisons for check in c.checks]


# ------------------------------------------------------------------------------------------------- helpers


def _verdict(check: Check) -> str:
    machine = " [depends on the machine]" if check.machine_dependent else ""
    return (f"{check.status.upper()} {check.strategy} {check.name}{machine}: {_value(check, check.baseline)} -> "
            f"{_value(check, check.candidate)} ({_change(check)}); {check.message}")


def _value(check: Check, value: float) -> str:
    if check.unit == work.USD:  # local work can cost fractions of a cent per 1,000 items
        return f"${value:.4f}/1k" if value >= 0.01 else f"${value:.2g}/1k"
    if check.unit == work.MS:
        return f"{value:.1f} ms"
    if check.unit == work.TOKENS:
        return f"{value:.1f} tokens/item"
    return f"{value:.1%}"


def _change(check: Check) -> str:
    if check.unit != "share":
        return "new cost" if math.isinf(check.change) else f"{check.change:+.1f}%"
    return f"{check.change:+.1f} points"


def _broken_lines(comparison: Comparison, check: Check) -> list[str]:
    if check.name != "accuracy" and not check.name.startswith("class:"):
        return []
    broken = comparison.flips[comparison.flips["kind"] == "broken"]
    if check.name.startswith("class:"):
        broken = broken[broken["gold"] == check.name.split(":", 1)[1]]
    return [f"{r.item_id} [{r.gold}] {r.baseline_pred} -> {_pred(r.candidate_pred, r.candidate_error)}: "
            f"{' '.join(str(r.text).split())[:160]}" for r in broken.itertuples()]


def _pred(pred, error) -> str:
    if isinstance(error, str) and error:
        return f"(error: {error[:60]})"
    return "(no label)" if pred is None or pred != pred else str(pred)  # pred != pred: NaN from parquet


def _checks_table(outcome: Outcome) -> str:
    rows = [{"strategy": c.strategy, "check": md_cell(c.name + (" (machine-dependent)" if c.machine_dependent else "")),
             "baseline": _value(c, c.baseline),
             "candidate": _value(c, c.candidate), "change": _change(c),
             "result": {"pass": "pass", "fail": "**FAIL**", "skip": "skipped"}[c.status], "rule": md_cell(c.message)}
            for comparison in outcome.comparisons for c in comparison.checks]
    return _markdown(pd.DataFrame(rows))


def _class_table(comparison: Comparison) -> str:
    changed = comparison.per_class[comparison.per_class["delta_points"] != 0].sort_values("delta_points")
    if changed.empty:
        return ""
    shown = changed.head(MAX_CLASSES_SHOWN).reset_index()
    table = _markdown(pd.DataFrame({"class": shown["label"].map(md_cell), "items": shown["n"],
                                    "baseline": shown["baseline"].map("{:.1%}".format),
                                    "candidate": shown["candidate"].map("{:.1%}".format),
                                    "change (points)": shown["delta_points"].map("{:+.1f}".format),
                                    "broken": shown["broken"], "fixed": shown["fixed"]}))
    more = len(changed) - len(shown)
    return table + (f"\n\n...and {more} more classes" if more > 0 else "")


def _flip_tables(comparison: Comparison, max_rows: int) -> dict:
    out = {}
    for kind in ("broken", "fixed"):
        rows = comparison.flips[comparison.flips["kind"] == kind]
        out[kind] = len(rows)
        shown = rows.head(max_rows)
        table = pd.DataFrame({"item": shown["item_id"].map(md_cell), "text": shown["text"].map(md_cell),
                              "gold": shown["gold"].map(md_cell),
                              "baseline": [md_cell(_pred(p, None)) for p in shown["baseline_pred"]],
                              "candidate": [md_cell(_pred(p, e)) for p, e in
                                            zip(shown["candidate_pred"], shown["candidate_error"])]})
        more = len(rows) - len(shown)
        out[f"{kind}_table"] = _markdown(table) + (f"\n\n...and {more} more" if more > 0 else "")
    return out


def _markdown(table: pd.DataFrame) -> str:
    # numparse off: tabulate would otherwise print an id or label like "007" as 7
    return table.to_markdown(index=False, disable_numparse=True)
