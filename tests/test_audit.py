"""The label audit finds labels planted wrong: a run with `audit:` lists them in label_audit.csv, the manifest
and the report, with the label they should have had."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.config import compose
from harness.errors import HarnessError
from tests.conftest import run

WORDS = {"refund": "refund money back returned reimburse", "card": "card plastic arrive delivery post",
         "transfer": "transfer send wire account recipient", "pin": "pin code blocked locked digits"}
FILLER = "please help my the a with when why how today".split()


@pytest.fixture(scope="module")
def flipped(tmp_path_factory):
    """60 training and 20 held-out items per label, each three of its label's words among filler; 12 training
    and 4 held-out labels planted wrong (moved to the next label)."""
    rng = np.random.default_rng(0)
    labels = sorted(WORDS)
    rows = []
    for split, n in (("train", 60), ("test", 20)):
        for label in labels:
            for _ in range(n):
                words = list(rng.choice(WORDS[label].split(), 3)) + list(rng.choice(FILLER, 4))
                rows.append({"text": " ".join(rng.permutation(words)), "label": label, "split": split})
    frame = pd.DataFrame(rows)
    frame.insert(0, "id", [f"r{i:04d}" for i in range(len(frame))])
    planted = {}
    for split, k in (("train", 12), ("test", 4)):
        for i in rng.choice(np.flatnonzero(frame["split"] == split), k, replace=False):
            planted[frame.at[i, "id"]] = frame.at[i, "label"]
            frame.at[i, "label"] = labels[(labels.index(frame.at[i, "label"]) + 1) % len(labels)]
    path = tmp_path_factory.mktemp("audit") / "flipped.csv"
    frame.to_csv(path, index=False)
    return path, planted


def _overrides(path, tmp_path) -> list[str]:
    return ["experiment=classic", "dataset=table", f"dataset.path={path}", "dataset.split_column=split",
            "dataset.id_column=id", f"output_dir={tmp_path}", "~strategies.embed_logreg", "~strategies.embed_knn",
            "+strategies.majority={_target_: tests.cot_strategy.MajorityPrompt}",
            "+strategy@audit.strategy=tfidf_logreg", "+audit.folds=5"]


def test_the_audit_finds_most_planted_flips_and_suggests_the_true_label(flipped, tmp_path):
    path, planted = flipped
    run_dir = run(compose(_overrides(path, tmp_path)))
    suspects = pd.read_csv(run_dir / "label_audit.csv")
    for split, n_planted in (("train", 12), ("heldout", 4)):
        found = suspects[(suspects["split"] == split) & suspects["item_id"].isin(list(planted))]
        assert len(found) >= 0.75 * n_planted, split
        assert (found["suggested_label"] == found["item_id"].map(planted)).mean() >= 0.9
        assert len(suspects[suspects["split"] == split]) <= 2 * n_planted  # few false alarms
    audit = json.loads((run_dir / "manifest.json").read_text())["audit"]
    assert audit["train"]["n_items"] == 240 and 0.03 <= audit["train"]["error_rate"] <= 0.1
    assert {s["item_id"] for s in audit["heldout"]["suspects"]} == set(suspects.query("split == 'heldout'")["item_id"])
    report = (run_dir / "report.md").read_text()
    assert "Label audit: the most suspect labels" in report and "look wrong" in report
    impact = report.split("What the suspected label errors mean for the accuracies")[1].split("##")[0]
    assert "| tfidf_logreg" in impact


def test_an_audit_strategy_without_probabilities_is_refused(flipped, tmp_path):
    path, _ = flipped
    cfg = compose([*_overrides(path, tmp_path), "audit.strategy._target_=tests.cot_strategy.MajorityPrompt",
                   "~audit.strategy.vectorizers", "~audit.strategy.head", "~audit.strategy.batch_size"])
    with pytest.raises(HarnessError, match="audit.strategy tests.cot_strategy.MajorityPrompt gives no class"):
        run(cfg)
