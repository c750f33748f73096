"""Baselines: a finished run's records, item texts and manifest, saved small enough to commit, loaded back by
name or path for the regression gate, and the candidate configuration made from a baseline's config.

Layout (no model files, no artifacts):
    baselines/<name>/
        manifest.json     the run's manifest (resolved config, held-out hash, per-strategy info including the
                          prompt template hashes) plus a "baseline" section: name, source run, saved_at, and
                          each strategy's item count and accuracy
        records.parquet   one row per strategy x item: the run's record columns plus the item's `text`
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from harness.config import PROJECT_ROOT
from harness.errors import HarnessError, choices
from harness.files import atomic_write, temporary_sibling
from harness.run.directory import PREDICTION_COLUMNS, RunDir
from harness.run.manifest import Manifest
from harness.run.state import run_state

RECORDS_FILE = "records.parquet"
MANIFEST_FILE = "manifest.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def baselines_dir() -> Path:
    """Where named baselines live: $HARNESS_BASELINES, else the project's `baselines/`."""
    return Path(os.environ.get("HARNESS_BASELINES", PROJECT_ROOT / "baselines"))


def known() -> list[str]:
    root = baselines_dir()
    return sorted(p.name for p in root.iterdir() if (p / RECORDS_FILE).is_file()) if root.is_dir() else []


@dataclass
class Baseline:
    name: str
    path: Path
    manifest: Manifest
    records: pd.DataFrame  # PREDICTION_COLUMNS plus `text`

    @property
    def heldout_hash(self) -> str:
        return self.manifest.heldout_hash

    @property
    def config(self) -> dict:
        return self.manifest.config

    @property
    def strategies(self) -> list[str]:
        return list(dict.fromkeys(self.records["strategy"]))

    def candidate_config(self, overrides):
        """This baseline's resolved config plus Hydra `overrides`: it is the primary config of a Hydra
        composition, so overrides keep Hydra's syntax (key=value, ~key, +GROUP@PACKAGE=OPTION from conf/)."""
        from hydra import compose, initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra
        from hydra.errors import HydraException
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        from harness.config import _one_line, conf_dir

        with tempfile.TemporaryDirectory() as tmp:
            # The stored config is already resolved: escape "${" so a literal one in a prompt stays literal.
            (Path(tmp) / "baseline.yaml").write_text(OmegaConf.to_yaml({"defaults": ["_self_"],
                                                                         **_escape(self.config)}))
            GlobalHydra.instance().clear()
            try:
                with initialize_config_dir(config_dir=tmp, version_base="1.3"):
                    return compose(config_name="baseline",
                                   overrides=[*overrides, f"hydra.searchpath=['file://{conf_dir()}']"])
            except (HydraException, OmegaConfBaseException) as exc:
                raise HarnessError(f"candidate overrides: {_one_line(exc)} (the candidate is baseline "
                                   f"'{self.name}''s config: override its keys, or add a group option with "
                                   "+GROUP@PACKAGE=OPTION)") from exc
            finally:
                GlobalHydra.instance().clear()


def from_run(run_path: Path) -> Baseline:
    """A complete run as a baseline; item texts come from the held-out items the run stored."""
    rundir = RunDir.open(Path(run_path))
    manifest = rundir.read_manifest()
    records = rundir.load_records()
    state = run_state(rundir, records)
    if not state.complete:
        raise HarnessError(f"{rundir.path}: run status is '{state.display}' ({state.recorded:,} of "
                           f"{state.planned:,} items recorded), not 'complete'; finish it with "
                           f"`harness resume {rundir.path}` first")
    texts = rundir.texts()
    unknown = records.loc[~records["item_id"].isin(texts), "item_id"]
    if len(unknown):
        raise HarnessError(f"{rundir.path}: item '{unknown.iloc[0]}' is not in the run's held-out set")
    records.insert(records.columns.get_loc("item_id") + 1, "text", records["item_id"].map(texts))
    return Baseline(name=rundir.path.name, path=rundir.path, manifest=manifest, records=records)


def save(run_path: Path, name: str, *, force: bool = False) -> Path:
    """Writes baselines/<name>/ from a complete run; returns its directory."""
    if not _NAME.fullmatch(name):
        raise HarnessError(f"baseline name '{name}' must be letters, digits, '.', '_' or '-' (no slashes)")
    target = baselines_dir() / name
    if target.exists() and not force:
        raise HarnessError(f"{target}: baseline '{name}' already exists; pass --force to replace it")
    baseline = from_run(run_path)
    target.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(target / RECORDS_FILE)
    baseline.records.to_parquet(tmp, index=False)
    os.replace(tmp, target / RECORDS_FILE)
    manifest = {**baseline.manifest.to_dict(), "baseline": _summary(baseline, name)}
    atomic_write(target / MANIFEST_FILE, json.dumps(manifest, indent=2, default=str))
    return target


def load(ref: str | Path) -> Baseline:
    """A baseline by name (under baselines_dir()) or by path: a saved baseline or a complete run directory."""
    path = Path(ref)
    if not path.is_dir():
        path = baselines_dir() / str(ref)
        if not (path / RECORDS_FILE).is_file():
            raise choices("baseline", str(ref), known())
    if (path / RECORDS_FILE).is_file():
        return _read(path)
    if (path / "manifest.json").is_file():
        return from_run(path)
    raise HarnessError(f"{path}: neither a baseline (no {RECORDS_FILE}) nor a run directory (no manifest.json)")


def _read(path: Path) -> Baseline:
    try:
        data = json.loads((path / MANIFEST_FILE).read_text())
        records = pd.read_parquet(path / RECORDS_FILE)
    except (OSError, ValueError) as exc:  # ValueError covers bad JSON and unreadable parquet
        raise HarnessError(f"{path}: baseline cannot be read: {str(exc).splitlines()[0]}") from exc
    missing = [c for c in [*PREDICTION_COLUMNS, "text"] if c not in records.columns]
    if missing:
        raise HarnessError(f"{path / RECORDS_FILE}: no column '{missing[0]}'; a baseline needs "
                           f"{', '.join([*PREDICTION_COLUMNS, 'text'])}")
    name = (data.get("baseline") or {}).get("name", path.name)
    return Baseline(name=name, path=path, manifest=Manifest.from_dict(data), records=records)


def _summary(baseline: Baseline, name: str) -> dict:
    manifest = baseline.manifest
    by_strategy = baseline.records.groupby("strategy", sort=False)["correct"]
    return {
        "name": name,
        # experiment/timestamp rather than a filesystem path: the baseline is committed and shared
        "source_run": f"{manifest.experiment}/{baseline.path.name}",
        "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "strategies": {s: {"n": int(c.size), "accuracy": float(c.astype(bool).mean())} for s, c in by_strategy},
    }


def _escape(tree):
    if isinstance(tree, dict):
        return {k: _escape(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_escape(v) for v in tree]
    return tree.replace("${", "\\${") if isinstance(tree, str) else tree
