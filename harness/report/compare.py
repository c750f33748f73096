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
from harness.files import temporary_sibling
from harness.run.directory import HELDOUT_FILE, RunDir
from harness.run.manifest import COMPLETE, FINISHING, Manifest, check_same_heldout
from harness.run.state import run_state


def compare(run_paths: Sequence[Path], output_root: Path, pricing_overrides: Sequence[str] = ()) -> Path:
    """Merges the runs' records and manifests into a new directory under output_root/compare/ and builds its
    report; returns the directory. Refuses runs whose held-out hashes differ, and runs that are not complete
    (a partial run's n=100 ranked beside another's n=240 would read as a like-for-like comparison), naming them."""
    from harness.report import build
    from harness.report.pricing import resolve, rule

    runs = [RunDir.open(Path(path)) for path in run_paths]
    if len(runs) < 2:
        raise HarnessError("compare needs at least two run directories")
    if len({run.path.resolve() for run in runs}) < len(runs):
        raise HarnessError("compare: a run directory is named twice")
    run_records = [run.load_records() for run in runs]
    for run, records in zip(runs, run_records):
        state = run_state(run, records)
        if not state.complete:
            raise HarnessError(f"compare: {run.path} is {state.describe()}; compare merges complete runs only: "
                               f"finish it with `harness resume {run.path}`")
    manifests = [run.read_manifest() for run in runs]
    for run, manifest in zip(runs[1:], manifests[1:]):
        check_same_heldout(manifests[0].heldout_hash, manifest.heldout_hash,
                           what=f"{run.path} (dataset {manifest.dataset.name})",
                           advice=f"it was run on other held-out items than {runs[0].path}; compare only merges "
                                  "runs on the same held-out items")
    resolve(manifests[0], pricing_overrides), rule(manifests[0], pricing_overrides)  # refuse bad overrides first
    names = merged_names([run.path for run in runs], [list(r["strategy"].unique()) for r in run_records])
    frames, fits, planned, projection = [], {}, {}, []
    for run, manifest, renamed, records in zip(runs, manifests, names, run_records):
        for old, new in renamed.items():
            fit = manifest.strategies[old]
            fits[new] = replace(fit, details={**fit.details, "run": str(run.path), "strategy_in_run": old})
            planned[new] = manifest.planned.get(old, manifest.dataset.n_heldout)
        projection += [{**row, "strategy": renamed.get(row["strategy"], row["strategy"])}
                       for row in manifest.projection]
        frames.append(records.assign(strategy=records["strategy"].map(renamed)))
    first = manifests[0]
    out = RunDir.create(Path(output_root), "compare")
    with out.writing("compare"):
        # "finishing" until its report exists, like a run: a comparison killed while writing it is not complete
        out.write_manifest(Manifest(
            experiment="compare", status=FINISHING, started_at=_now(), dataset=first.dataset,
            price_sources=first.price_sources, versions=first.versions, git=first.git,
            # The first run's config supplies the seed and the pricing plan.
            config={key: first.config.get(key) for key in ("seed", "pricing", "decision")},
            runs=[{"path": str(run.path), "experiment": m.experiment, "started_at": m.started_at,
                   "status": m.status, "strategies": list(renamed.values())}
                  for run, m, renamed in zip(runs, manifests, names)],
            planned=planned, strategies=fits, projection=projection,
            notes=list(dict.fromkeys(n for m in manifests for n in m.notes))))
        shutil.copyfile(runs[0].path / HELDOUT_FILE, out.path / HELDOUT_FILE)
        tmp = temporary_sibling(out.path / "predictions.parquet")
        pd.concat(frames, ignore_index=True).to_parquet(tmp, index=False)
        tmp.replace(out.path / "predictions.parquet")
        build(out.path, pricing_overrides)
        out.update_manifest(status=COMPLETE, finished_at=_now())
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
