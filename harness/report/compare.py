"""`harness compare`: several runs made on the same held-out set (another model, a later day) merged into one
run-shaped directory, reports/compare/<timestamp>/, whose report is built like any run's."""
from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import pandas as pd

from harness.errors import HarnessError
from harness.run.directory import HELDOUT_FILE, RunDir
from harness.run.manifest import COMPLETE, Manifest, check_same_heldout


def compare(run_paths: Sequence[Path], output_root: Path, pricing_overrides: Sequence[str] = ()) -> Path:
    """Merges the runs' records and manifests into a new directory under output_root/compare/ and builds its
    report; returns the directory. Refuses runs whose held-out hashes differ, naming them."""
    from harness.report import build
    from harness.report.pricing import resolve

    runs = [RunDir.open(Path(path)) for path in run_paths]
    if len(runs) < 2:
        raise HarnessError("compare needs at least two run directories")
    if len({run.path.resolve() for run in runs}) < len(runs):
        raise HarnessError("compare: a run directory is named twice")
    manifests = [run.read_manifest() for run in runs]
    for run, manifest in zip(runs[1:], manifests[1:]):
        check_same_heldout(manifests[0].heldout_hash, manifest.heldout_hash,
                           what=f"{run.path} (dataset {manifest.dataset.name})",
                           advice=f"it was run on other held-out items than {runs[0].path}; compare only merges "
                                  "runs on the same held-out items")
    resolve(manifests[0], pricing_overrides)  # refuse bad overrides before anything is written
    run_records = [run.load_records() for run in runs]
    names = merged_names([run.path for run in runs], [list(r["strategy"].unique()) for r in run_records])
    frames, fits, projection = [], {}, []
    for run, manifest, renamed, records in zip(runs, manifests, names, run_records):
        for old, new in renamed.items():
            fit = manifest.strategies[old]
            fits[new] = replace(fit, details={**fit.details, "run": str(run.path), "strategy_in_run": old})
        projection += [{**row, "strategy": renamed.get(row["strategy"], row["strategy"])}
                       for row in manifest.projection]
        frames.append(records.assign(strategy=records["strategy"].map(renamed)))
    first = manifests[0]
    out = RunDir.create(Path(output_root), "compare")
    out.write_manifest(Manifest(
        experiment="compare", status=COMPLETE, started_at=_now(), finished_at=_now(), dataset=first.dataset,
        price_sources=first.price_sources, versions=first.versions, git=first.git,
        # The first run's config supplies the seed and the pricing plan.
        config={key: first.config.get(key) for key in ("seed", "pricing")},
        runs=[{"path": str(run.path), "experiment": m.experiment, "started_at": m.started_at, "status": m.status,
               "strategies": list(renamed.values())} for run, m, renamed in zip(runs, manifests, names)],
        strategies=fits, projection=projection, notes=list(dict.fromkeys(n for m in manifests for n in m.notes))))
    shutil.copyfile(runs[0].path / HELDOUT_FILE, out.path / HELDOUT_FILE)
    pd.concat(frames, ignore_index=True).to_parquet(out.path / "predictions.parquet", index=False)
    build(out.path, pricing_overrides)
    return out.path


def merged_names(paths: Sequence[Path], per_run: Sequence[list[str]]) -> list[dict[str, str]]:
    """Per run, {strategy in the run: strategy in the comparison}. A name that occurs in more than one run gets
    the shortest unique label of its run appended (`zero_shot@2026-01-31_12-00-00`, else
    `zero_shot@experiment/2026-01-31_12-00-00`, else the whole path), so every strategy stays distinct."""
    counts = pd.Series([name for names in per_run for name in names], dtype=object).value_counts()
    labels = [path.name for path in paths]
    for longer in (lambda p: f"{p.parent.name}/{p.name}", str):
        if len(set(labels)) < len(labels):
            labels = [longer(path) for path in paths]
    return [{name: f"{name}@{label}" if counts[name] > 1 else name for name in names}
            for names, label in zip(per_run, labels)]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
