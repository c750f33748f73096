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
from harness.files import atomic_write
from harness.run.directory import RunDir
from harness.run.executors import LocalExecutor
from harness.run.manifest import COMPLETE, FAILED, FINISHING, INTERRUPTED, RUNNING, DatasetInfo, Manifest, \
    check_same_heldout
from harness.run.plan import Stage, stages
from harness.run.provenance import environment, reference_ms
from harness.run.services import Services
from harness.run.state import strategy_states

log = logging.getLogger(__name__)

NO_TASK_NOTE = ("The prompts carry no task description: the dataset gives none, so they name items '{item}' and "
                "labels '{label}' and say only \"{instructions}\". Describe the task in your words with "
                "dataset.task.item, dataset.task.label and dataset.task.instructions.")


def run(cfg: DictConfig, *, resume: Path | None = None, finish: Callable[[Path], object] | None = None,
        expected_heldout_hash: str | None = None, retry_errors: bool = False) -> Path:
    """Runs every strategy in `cfg.strategies` on the frozen held-out set; returns the run directory.

    With `resume`, continues that run: items already recorded are skipped (never re-predicted or re-paid);
    with `retry_errors` too, items whose latest record is an error are predicted again, and only those.
    `finish(run_dir)` writes what is derived from the records (the report) before the run is marked complete.
    `expected_heldout_hash` refuses to start unless the held-out set is exactly those items (the gate).
    The run holds its directory's writer lock throughout; a stage whose items failed more often than
    `max_error_share` fails the run, once its records are written, naming the commonest error."""
    if not cfg.get("strategies"):
        raise HarnessError("config key 'strategies' is empty; pick an experiment (experiment=...) or add one "
                           "with +strategy@strategies.NAME=NAME")
    # runs configured before the key existed get its default
    max_error_share = float(cfg.get("max_error_share", 0.5))
    dataset = instantiate(cfg.dataset)
    if expected_heldout_hash is not None:
        check_same_heldout(expected_heldout_hash, dataset.heldout_hash, what="the candidate's held-out set",
                           advice="the gate only compares the same items, so leave dataset.* and seed-driven "
                                  "sampling as the baseline had them")
    plan = stages(cfg, dataset)
    hardware = instantiate(cfg.hardware)
    rundir = RunDir.open(resume) if resume is not None else RunDir.create(Path(cfg.output_dir), dataset.name,
                                                                           cfg.experiment_name)
    with rundir.writing("run" if resume is None else "resume"):
        _open(cfg, dataset, rundir, resume is not None, plan)
        services = Services(hardware=hardware, run_dir=rundir.path, seed=int(cfg.seed),
                            embedder_factory=lambda: instantiate(cfg.embedder),
                            llm_factory=_llm_factory(cfg, hardware, rundir.path))
        # runs configured before the key existed predict in this process, as they did
        executor = instantiate(cfg.executor) if cfg.get("executor") else LocalExecutor()
        _announce(rundir, dataset, plan)
        rundir.update_manifest(status=RUNNING)
        try:
            for stage in plan:
                _run_stage(stage, services, rundir, executor, retry_errors=retry_errors)
            if cfg.get("audit") and rundir.read_manifest().audit is None:  # done once, kept on resume
                from harness.audit import label_audit

                rundir.update_manifest(audit=label_audit(cfg.audit, dataset, services, rundir.path))
            # inside the try: a failure in the end steps (a bad projection.models entry) marks the run failed,
            # not "running"; `harness resume` then redoes only these steps, every item being recorded
            # not kept: the report reads predictions.parquet itself, and two copies of 100,000 records add up
            _check_errors(rundir, rundir.write_predictions([stage.name for stage in plan]), max_error_share)
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
            try:
                executor.close()  # a local Ray cluster the run started
            finally:
                services.close()  # stops local model servers
        rundir.update_manifest(status=COMPLETE, finished_at=_now())
    return rundir.path


def _check_errors(rundir: RunDir, records, max_error_share: float) -> None:
    """Failed calls are not results: a stage that mostly failed (a revoked key answers 401 to every call) fails
    the run instead of reporting 0% accuracy as if it had been measured."""
    over = [s for s in strategy_states(rundir.read_manifest(), records).values() if s.error_share > max_error_share]
    if not over:
        return
    worst = max(over, key=lambda s: s.error_share)
    more = f" (and {len(over) - 1} more strateg{'y' if len(over) == 2 else 'ies'})" if len(over) > 1 else ""
    raise HarnessError(f"{worst.strategy}: {worst.errors} of {worst.recorded} items failed ({worst.error_share:.0%}, "
                       f"above max_error_share {max_error_share:g}){more}; commonest error "
                       f"({worst.commonest_error_count}x): {worst.commonest_error[:300]}; once it is fixed, "
                       f"`harness resume --retry-errors {rundir.path}` redoes the failed items")


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


def _open(cfg: DictConfig, dataset, rundir: RunDir, resumed: bool, plan: list[Stage]) -> None:
    if resumed:
        check_same_heldout(rundir.read_manifest().heldout_hash, dataset.heldout_hash, what=f"{rundir.path}",
                           advice="the data changed since the run; start a new run")
        return
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
    atomic_write(rundir.path / "config.yaml", OmegaConf.to_yaml(cfg))


def _run_stage(stage: Stage, services: Services, rundir: RunDir, executor, *, retry_errors: bool = False) -> None:
    name, strategy, data = stage.name, stage.strategy, stage.train
    done = rundir.done_ids(name, errored=not retry_errors)
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
    before_ms = reference_ms()
    t1 = time.perf_counter()
    try:
        with rundir.open_records(name) as fh, tqdm(total=len(data.heldout), initial=len(done), desc=name,
                                                   unit="item", dynamic_ncols=True) as bar:
            for prediction in executor.predict(strategy, todo):
                rundir.append(fh, prediction.to_record(name))
                bar.update(1)
    finally:
        record.predict_seconds += time.perf_counter() - t1
        record.reference_ms = (before_ms + reference_ms()) / 2
        rundir.record_fit(name, record)
        strategy.close()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
