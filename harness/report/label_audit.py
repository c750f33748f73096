"""The report's label audit (harness.audit, summarised in the manifest; what it means for the accuracies is
computed in harness.report.beyond): the estimated share of wrong labels in each split, the top suspects with their
texts, and each strategy's accuracy as measured, without the held-out suspects, and with their labels replaced by
the suggested ones. A difference between two strategies smaller than the suspects' share can be label noise."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from harness.report.fmt import pct

if TYPE_CHECKING:
    from harness.report.analysis import Analysis

TOP_SHOWN = 10  # suspects per split in the report (label_audit.csv has them all)


def summary_table(a: "Analysis") -> pd.DataFrame:
    audit = a.manifest.audit
    judged = {"training": f"{audit.model}, out of fold ({audit.folds} folds)",
              "held-out": f"{audit.model}, fitted on the training split"}
    return pd.DataFrame([{"split": split, "items": s.n_items, "suspected label errors": s.n_issues,
                          "estimated error rate": pct(s.error_rate), "judged by": judged[split]}
                         for split, s in (("training", audit.train), ("held-out", audit.heldout))])


def suspects_table(a: "Analysis") -> pd.DataFrame:
    audit = a.manifest.audit
    rows = [{"split": split, "item": s["item_id"], "text": s["text"], "given label": s["given_label"],
             "suggested label": s["suggested_label"], "p(given label)": f"{s['given_probability']:.3f}"}
            for split, part in (("training", audit.train), ("held-out", audit.heldout))
            for s in part.suspects[:TOP_SHOWN]]
    return pd.DataFrame(rows)


def impact_table(a: "Analysis") -> pd.DataFrame:
    i = a.beyond.label_audit
    return pd.DataFrame({"strategy": i["strategy"], "accuracy as measured": i["accuracy"].map(pct),
                         "without the suspects": i["without_suspects"].map(pct),
                         "with the suggested labels": i["relabelled"].map(pct),
                         "suspects it predicts as suggested": [f"{n} of {m}" for n, m in
                                                               zip(i["suspects_as_suggested"],
                                                                   i["suspects"])]})


def sections(a: "Analysis") -> dict:
    if a.manifest.audit is None:
        return {}
    return {"label_audit": ("Label audit: suspected label errors", summary_table(a)),
            "label_suspects": ("Label audit: the most suspect labels", suspects_table(a)),
            "label_impact": ("What the suspected label errors mean for the accuracies", impact_table(a))}
