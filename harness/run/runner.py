"""One run: plan, fit, predict, record. The run directory is the only thing it writes; what reads the records
(the report, the gate) is called by whoever called the run (`finish`)."""
from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from harness.config import instantiate
from harness.errors import HarnessError
from harness.files import atomic_write
from harness.run.directory import RunDir
from harness.run.executors import LocalExecutor, StageWork
from harness.run.manifest import COMPLETE, FAILED, FINISHING, INTERRUPTED, RUNNING, DatasetInfo, Manifest, \
    check_same_heldout
from harness.run.plan import Stage, stages
from harness.run.provenance import environment
from harness.run.services import Services
from harness.run.state import strategy_states
from harness.strategies.base import FitRecord, Prediction

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
            work = [w for w in (_work(stage, rundir, retry_errors=retry_errors) for stage in plan) if w is not None]
            with _Recorder(rundir, work) as recorder:
                executor.run_stages(work, services, recorder)
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


def _work(stage: Stage, rundir: RunDir, *, retry_errors: bool) -> StageWork | None:
    """What `stage` has left to do: its unrecorded items (with `retry_errors`, those whose latest record is an
    error too); None when every item is recorded."""
    done = rundir.done_ids(stage.name, errored=not retry_errors)
    todo = [ex for ex in stage.train.heldout if ex.id not in done]
    if not todo:
        log.info("%s: all %d items already recorded, skipping", stage.name, len(done))
        return None
    return StageWork(stage, todo, recorded=len(done), previous=rundir.read_manifest().fit(stage.name))


class _Recorder:
    """The executor's StageSink: appends each prediction to its stage's records (one open file and one progress
    bar per stage, from its first prediction until its fit record arrives) and keeps each fit record in the
    manifest. The one writer of the run directory, whichever executor ran the stages."""

    def __init__(self, rundir: RunDir, work: list[StageWork]) -> None:
        self.rundir, self.work = rundir, {w.name: w for w in work}
        self.open: dict[str, tuple] = {}  # stage -> (records file, progress bar)

    def predicted(self, stage: str, prediction: Prediction) -> None:
        if stage not in self.open:
            work, fh = self.work[stage], self.rundir.open_records(stage)
            self.open[stage] = (fh, tqdm(total=len(work.stage.train.heldout), initial=work.recorded, desc=stage,
                                         unit="item", dynamic_ncols=True))
        fh, bar = self.open[stage]
        self.rundir.append(fh, prediction.to_record(stage))
        bar.update(1)

    def fitted(self, stage: str, record: FitRecord) -> None:
        self._close(stage)
        self.rundir.record_fit(stage, record)

    def _close(self, stage: str) -> None:
        fh, bar = self.open.pop(stage, (None, None))
        if fh is not None:
            try:
                fh.close()
            finally:
                bar.close()

    def __enter__(self) -> "_Recorder":
        return self

    def __exit__(self, *exc) -> None:
        for stage in list(self.open):
            self._close(stage)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
