"""One run: plan, fit, predict, record. The run directory is the only thing it writes; what reads the records
(the report, the gate) is called by whoever called the run (`finish`)."""
from __future__ import annotations

import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from harness.config import instantiate
from harness.errors import HarnessError
from harness.run.directory import RunDir
from harness.run.manifest import COMPLETE, FAILED, FINISHING, INTERRUPTED, RUNNING, DatasetInfo, Manifest, \
    check_same_heldout
from harness.run.plan import Stage, stages
from harness.run.services import Services

log = logging.getLogger(__name__)

NO_TASK_NOTE = ("The prompts carry no task description: the dataset gives none, so they name items '{item}' and "
                "labels '{label}' and say only \"{instructions}\". Describe the task in your words with "
                "dataset.task.item, dataset.task.label and dataset.task.instructions.")


def run(cfg: DictConfig, *, resume: Path | None = None, finish: Callable[[Path], object] | None = None,
        expected_heldout_hash: str | None = None) -> Path:
    """Runs every strategy in `cfg.strategies` on the frozen held-out set; returns the run directory.

    With `resume`, continues that run: items already recorded are skipped (never re-predicted or re-paid).
    `finish(run_dir)` writes what is derived from the records (the report) before the run is marked complete.
    `expected_heldout_hash` refuses to start unless the held-out set is exactly those items (the gate)."""
    if not cfg.get("strategies"):
        raise HarnessError("config key 'strategies' is empty; pick an experiment (experiment=...) or add one "
                           "with +strategy@strategies.NAME=NAME")
    dataset = instantiate(cfg.dataset)
    if expected_heldout_hash is not None:
        check_same_heldout(expected_heldout_hash, dataset.heldout_hash, what="the candidate's held-out set",
                           advice="the gate only compares the same items, so leave dataset.* and seed-driven "
                                  "sampling as the baseline had them")
    plan = stages(cfg, dataset)
    hardware = instantiate(cfg.hardware)
    rundir = _open(cfg, dataset, resume, plan)
    services = Services(hardware=hardware, run_dir=rundir.path, seed=int(cfg.seed),
                        embedder_factory=lambda: instantiate(cfg.embedder),
                        llm_factory=_llm_factory(cfg, hardware, rundir.path))
    _announce(rundir, dataset, plan)
    rundir.update_manifest(status=RUNNING)
    try:
        for stage in plan:
            _run_stage(stage, services, rundir)
        # inside the try: a failure in the end steps (a bad projection.models entry) marks the run failed, not
        # "running"; `harness resume` then redoes only these steps, every item being recorded
        rundir.write_predictions([stage.name for stage in plan])
        from harness.costs.projection import project

        rundir.update_manifest(projection=project(rundir, cfg.get("projection")))
        rundir.update_manifest(status=FINISHING)
        if finish is not None:
            finish(rundir.path)
    except KeyboardInterrupt:
        rundir.update_manifest(status=INTERRUPTED)
        raise
    except BaseException:
        rundir.update_manifest(status=FAILED)
        raise
    finally:
        services.close()  # stops local model servers
    rundir.update_manifest(status=COMPLETE, finished_at=_now())
    return rundir.path


def _announce(rundir: RunDir, dataset, plan: list[Stage]) -> None:
    print(f"run directory: {rundir.path}  (if interrupted: harness resume {rundir.path})", file=sys.stderr)
    print(f"dataset {dataset.name}: {len(dataset.heldout):,} held-out items scored by {len(plan)} "
          f"strateg{'y' if len(plan) == 1 else 'ies'}; {len(dataset.train):,} training items, "
          f"{len(dataset.labels)} labels", file=sys.stderr)
    if not dataset.task.described and any(stage.strategy.prompts for stage in plan):
        print("note: " + NO_TASK_NOTE.format(**dataset.task.describe()), file=sys.stderr)


def _llm_factory(cfg: DictConfig, hardware, run_dir: Path):
    """model config -> endpoint, with the root `llm:` client settings; heavy imports wait for the first call."""
    settings = OmegaConf.to_container(cfg.llm, resolve=True) if cfg.get("llm") else {}

    def connect(model: dict):
        from harness.llm.factory import connect as connect_model

        return connect_model(model, settings, hardware=hardware, run_dir=run_dir)
    return connect


def _open(cfg: DictConfig, dataset, resume: Path | None, plan: list[Stage]) -> RunDir:
    if resume is not None:
        rundir = RunDir.open(resume)
        check_same_heldout(rundir.read_manifest().heldout_hash, dataset.heldout_hash, what=f"{resume}",
                           advice="the data changed since the run; start a new run")
        return rundir
    rundir = RunDir.create(Path(cfg.output_dir), dataset.name, cfg.experiment_name)
    from harness.run.provenance import environment

    notes = []
    if not dataset.task.described and any(stage.strategy.prompts for stage in plan):
        notes.append(NO_TASK_NOTE.format(**dataset.task.describe()))
    rundir.write_manifest(Manifest(
        experiment=cfg.experiment_name, status=RUNNING, started_at=_now(), dataset=DatasetInfo(**dataset.describe()),
        config=OmegaConf.to_container(cfg, resolve=True),
        price_sources={"hardware": {"name": cfg.hardware.name, "usd_per_hour": cfg.hardware.usd_per_hour,
                                    "source": cfg.hardware.source}},
        planned={stage.name: len(dataset.heldout) for stage in plan}, notes=notes, **environment()))
    rundir.write_heldout(dataset.heldout, dataset.heldout_hash)
    (rundir.path / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    return rundir


def _run_stage(stage: Stage, services: Services, rundir: RunDir) -> None:
    name, strategy, data = stage.name, stage.strategy, stage.train
    done = rundir.done_ids(name)
    todo = [ex for ex in data.heldout if ex.id not in done]
    if not todo:
        log.info("%s: all %d items already recorded, skipping", name, len(done))
        return
    previous = rundir.read_manifest().fit(name)
    t0 = time.perf_counter()
    strategy.fit(data, services)
    record = strategy.fit_record(wall_seconds=time.perf_counter() - t0, hardware=services.hardware,
                                 n_train=len(data.train), stage=stage.info)
    record.predict_seconds = previous.predict_seconds if previous else 0.0
    t1 = time.perf_counter()
    try:
        with rundir.open_records(name) as fh, tqdm(total=len(data.heldout), initial=len(done), desc=name,
                                                   unit="item", dynamic_ncols=True) as bar:
            for prediction in strategy.predict(todo):
                rundir.append(fh, prediction.to_record(name))
                bar.update(1)
    finally:
        record.predict_seconds += time.perf_counter() - t1
        rundir.record_fit(name, record)
        strategy.close()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
