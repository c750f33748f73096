"""One run: instantiate, fit, predict, record, score, write. Nothing else."""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from harness.config import instantiate
from harness.errors import HarnessError
from harness.records import RunDir
from harness import sweep
from harness.scenarios import stages
from harness.services import Services

log = logging.getLogger(__name__)


def run(cfg: DictConfig, *, resume: Path | None = None) -> Path:
    """Runs every strategy in `cfg.strategies` on the frozen held-out set; returns the run directory.

    With `resume`, continues that run: items already recorded are skipped (never re-predicted or re-paid)."""
    if not cfg.get("strategies"):
        raise HarnessError("config key 'strategies' is empty; pick an experiment (experiment=...) or add one "
                           "with +strategy@strategies.NAME=NAME")
    dataset = instantiate(cfg.dataset)
    # one stage per strategy, unless a scenario or a learning-curve sweep fits each more than once
    plan = sweep.stages(cfg, dataset) if cfg.get("sweep") else stages(cfg, dataset)
    hardware = instantiate(cfg.hardware)
    rundir = _open(cfg, dataset, resume)
    services = Services(hardware=hardware, run_dir=rundir.path, seed=int(cfg.seed),
                        embedder_factory=lambda: instantiate(cfg.embedder),
                        llm_factory=_llm_factory(cfg, hardware, rundir.path))
    import sys

    print(f"run directory: {rundir.path}  (if interrupted: harness resume {rundir.path})", file=sys.stderr)
    manifest = rundir.update_manifest(status="running")
    info = manifest.setdefault("strategies", {})
    try:
        for stage in plan:
            info[stage.name] = _run_strategy(stage.name, stage.strategy, stage.train, services, rundir,
                                             info.get(stage.name, {}), sweep.columns(stage))
            rundir.update_manifest(strategies=info)
        # inside the try: a failure here (a bad projection.models entry) marks the run failed, not "running";
        # `harness resume` then redoes only these steps, every item being recorded
        rundir.write_predictions([stage.name for stage in plan])
        from harness.projection import write_projection

        write_projection(rundir.path, cfg.get("projection"))
    except KeyboardInterrupt:
        rundir.update_manifest(status="interrupted")
        raise
    except BaseException:
        rundir.update_manifest(status="failed")
        raise
    finally:
        services.close()  # stops local model servers
    rundir.update_manifest(status="complete", finished_at=_now())
    from harness.report import build

    build(rundir.path)
    return rundir.path


def _llm_factory(cfg: DictConfig, hardware, run_dir: Path):
    """model config -> endpoint, with the root `llm:` client settings; heavy imports wait for the first call."""
    settings = OmegaConf.to_container(cfg.llm, resolve=True) if cfg.get("llm") else {}

    def connect(model: dict):
        from harness.llm.factory import connect as connect_model

        return connect_model(model, settings, hardware=hardware, run_dir=run_dir)
    return connect


def _open(cfg: DictConfig, dataset, resume: Path | None) -> RunDir:
    if resume is not None:
        rundir = RunDir.open(resume)
        recorded = rundir.read_manifest()["dataset"]["heldout_hash"]
        if recorded != dataset.heldout_hash:
            raise HarnessError(f"{resume}: held-out hash {dataset.heldout_hash[:12]} differs from the run's "
                               f"{recorded[:12]}; the data changed, start a new run")
        return rundir
    rundir = RunDir.create(Path(cfg.output_dir), cfg.experiment_name)
    from harness.provenance import environment

    rundir.write_manifest({
        "experiment": cfg.experiment_name,
        "status": "running",
        "started_at": _now(),
        "dataset": dataset.describe(),
        "price_sources": {"hardware": {"name": cfg.hardware.name, "usd_per_hour": cfg.hardware.usd_per_hour,
                                       "source": cfg.hardware.source}},
        **environment(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    })
    (rundir.path / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    return rundir


def _run_strategy(name, strategy, dataset, services, rundir: RunDir, previous: dict, columns: dict) -> dict:
    done = rundir.done_ids(name)
    todo = [ex for ex in dataset.heldout if ex.id not in done]
    if not todo:
        log.info("%s: all %d items already recorded, skipping", name, len(done))
        return previous
    t0 = time.perf_counter()
    strategy.fit(dataset, services)
    fit_wall = time.perf_counter() - t0
    fit_seconds = float(getattr(strategy, "fit_seconds_", fit_wall))
    info = {
        "model": strategy.model_name,
        "latency_basis": strategy.latency_basis,
        "fit_seconds": fit_seconds,
        "fit_cost_usd": float(getattr(strategy, "fit_cost_usd_", services.hardware.cost_usd(fit_seconds))),
        "predict_seconds": previous.get("predict_seconds", 0.0),
        "n_train": len(dataset.train),  # the training items fit was given (a strategy may report fewer it used)
        **strategy.describe(),
        **columns,
    }
    t1 = time.perf_counter()
    try:
        with rundir.open_records(name) as fh, tqdm(total=len(dataset.heldout), initial=len(done), desc=name,
                                                   unit="item", dynamic_ncols=True) as bar:
            for prediction in strategy.predict(todo):
                rundir.append(fh, prediction.to_record(name))
                bar.update(1)
    finally:
        info["predict_seconds"] += time.perf_counter() - t1
        rundir.update_manifest(**{"strategies": {**rundir.read_manifest().get("strategies", {}), name: info}})
        strategy.close()
    return info


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
