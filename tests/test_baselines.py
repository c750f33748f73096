"""Saving a run as a committable baseline, loading it back by name or path, and the candidate configuration
made from a baseline's config plus Hydra overrides."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness.gate import baselines
from harness.cli import main
from harness.config import compose
from harness.errors import HarnessError
from harness.run.directory import PREDICTION_COLUMNS, RunDir
from tests.conftest import run
from tests.conftest import tiny_overrides

ONLY_TFIDF = ["~strategies.embed_logreg", "~strategies.embed_knn"]  # the fastest strategy: seconds, no encoder


def tiny_run(csv: Path, out: Path, *overrides: str) -> Path:
    """A real run of tfidf_logreg on the tiny dataset (shared with test_regress)."""
    return run(compose(["experiment=classic", *tiny_overrides(csv, out), *ONLY_TFIDF, *overrides]))


@pytest.fixture(scope="module")
def run_dir(tiny_csv, tmp_path_factory) -> Path:
    return tiny_run(tiny_csv, tmp_path_factory.mktemp("run"))


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "baselines"
    monkeypatch.setenv("HARNESS_BASELINES", str(root))
    return root


def test_save_writes_records_with_texts_and_the_manifest(run_dir, store, tiny_csv):
    path = baselines.save(run_dir, "tiny-v1")
    assert path == store / "tiny-v1"
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "records.parquet"]  # no models, no artifacts
    records = pd.read_parquet(path / "records.parquet")
    assert set(PREDICTION_COLUMNS) | {"text"} == set(records.columns)
    source = pd.read_csv(tiny_csv, dtype=str).set_index("id")
    assert records["text"].tolist() == source.loc[records["item_id"], "text"].tolist()
    manifest = json.loads((path / "manifest.json").read_text())
    run_manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["dataset"]["heldout_hash"] == run_manifest["dataset"]["heldout_hash"]
    assert manifest["strategies"] == run_manifest["strategies"]  # where prompted strategies keep template hashes
    assert manifest["baseline"]["name"] == "tiny-v1"
    assert manifest["baseline"]["strategies"]["tfidf_logreg"]["n"] == len(records)
    assert str(run_dir.parent.parent) not in manifest["baseline"]["source_run"]  # no machine paths


def test_load_by_name_and_by_path_give_the_same_baseline(run_dir, store):
    path = baselines.save(run_dir, "tiny-v1")
    by_name, by_path, from_run = baselines.load("tiny-v1"), baselines.load(path), baselines.load(run_dir)
    assert by_name.name == by_path.name == "tiny-v1"
    pd.testing.assert_frame_equal(by_name.records, by_path.records)
    pd.testing.assert_frame_equal(by_name.records.drop(columns="extra"), from_run.records.drop(columns="extra"))
    assert by_name.heldout_hash == from_run.heldout_hash
    assert by_name.strategies == ["tfidf_logreg"]


def test_unknown_baseline_lists_the_known_ones(run_dir, store):
    baselines.save(run_dir, "tiny-v1")
    with pytest.raises(HarnessError, match=r"no baseline 'tiny-v2'; known: tiny-v1"):
        baselines.load("tiny-v2")


def test_save_refuses_to_replace_without_force(run_dir, store):
    baselines.save(run_dir, "tiny-v1")
    with pytest.raises(HarnessError, match="already exists; pass --force"):
        baselines.save(run_dir, "tiny-v1")
    assert baselines.save(run_dir, "tiny-v1", force=True) == store / "tiny-v1"


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden"])
def test_save_refuses_names_that_are_not_one_directory(run_dir, store, name):
    with pytest.raises(HarnessError, match="baseline name"):
        baselines.save(run_dir, name)


def test_save_refuses_an_unfinished_run(run_dir, store, tmp_path):
    copy = shutil.copytree(run_dir, tmp_path / "copy")
    RunDir.open(copy).update_manifest(status="interrupted")
    with pytest.raises(HarnessError, match="not 'complete'; finish it with `harness resume"):
        baselines.save(copy, "tiny-v1")


def test_baseline_texts_come_from_the_run_not_from_the_data_file(tiny_csv, store, tmp_path):
    """The run stored its held-out items: editing the source file later changes nothing, tampering with the
    stored items is refused by their hash."""
    csv = tmp_path / "data.csv"
    shutil.copy(tiny_csv, csv)
    path = tiny_run(csv, tmp_path)
    frame = pd.read_csv(csv, dtype=str)
    frame.loc[frame["split"] == "test", "text"] += " (edited)"
    frame.to_csv(csv, index=False)
    saved = pd.read_parquet(baselines.save(path, "tiny-v1") / "records.parquet")
    assert not saved["text"].str.endswith("(edited)").any()
    heldout = pd.read_parquet(path / "heldout.parquet")
    heldout.loc[0, "text"] += " (tampered)"
    heldout.to_parquet(path / "heldout.parquet", index=False)
    with pytest.raises(HarnessError, match="the stored items were changed after the run"):
        baselines.save(path, "tiny-v2")


def test_cli_baseline_save(run_dir, store, capsys):
    assert main(["baseline", "save", str(run_dir), "tiny-v1"]) == 0
    assert str(store / "tiny-v1") in capsys.readouterr().out
    assert main(["baseline", "save", str(run_dir), "tiny-v1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["baseline", "save", str(run_dir), "tiny-v1", "--force"]) == 0


# --------------------------------------------------------------------------------------- candidate config


def test_candidate_config_is_the_baseline_config_plus_hydra_overrides(run_dir):
    baseline = baselines.load(run_dir)
    cfg = baseline.candidate_config(["strategies.tfidf_logreg.head.C=0.5", "+strategy@strategies.knn=embed_knn",
                                     "~strategies.tfidf_logreg.batch_size"])
    assert cfg.strategies.tfidf_logreg.head.C == 0.5
    assert "batch_size" not in cfg.strategies.tfidf_logreg
    assert cfg.strategies.knn.head.n_neighbors == 10  # a group option read from the project's conf/
    assert cfg.dataset == baseline.config["dataset"]


def test_candidate_config_keeps_a_literal_dollar_brace(run_dir, tmp_path):
    baseline = baselines.load(run_dir)
    baseline.manifest.config = {**baseline.config, "note": "costs ${amount} per item"}
    assert baseline.candidate_config([]).note == "costs ${amount} per item"


def test_candidate_config_reports_a_bad_override_in_one_line(run_dir):
    with pytest.raises(HarnessError, match=r"candidate overrides: .*strategies\.nope"):
        baselines.load(run_dir).candidate_config(["strategies.nope.C=1"])
