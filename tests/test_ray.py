"""executor=ray on a local Ray cluster bound to 127.0.0.1: the same predictions as a local run, sharded or with the
stages side by side as tasks (parallel_stages), a killed worker's shard or stage finished by another with every item
recorded exactly once, and fitted strategies that survive pickling.

The cluster is started once for the module with `ray start` (loopback only, its own temporary directory, usage
stats and token files off) and stopped by the PIDs of the processes it started, never with `ray stop`, which
ends every Ray process on the machine."""
from __future__ import annotations

import json
import os
import shutil
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from harness.config import compose
from harness.errors import HarnessError
from harness.run.executors import shard_of, shards
from harness.strategies.classic import TfidfClassifier
from tests.conftest import run, tiny_overrides

pytestmark = pytest.mark.ray
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _processes_under(marker: str) -> list[int]:
    """PIDs of the processes whose command line names `marker` (the cluster's own temporary directory)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _listening(pids: list[int]) -> list[str]:
    """Local addresses the given processes listen on (TCP)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if any(f"pid={pid}," in line for pid in pids)]


def _stop(pids: list[int]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The address of a 2-CPU Ray head on 127.0.0.1, started for this module and stopped by its PIDs."""
    saved = {key: os.environ.get(key) for key in RAY_ENV}
    os.environ.update(RAY_ENV)  # before Ray is imported: it reads them then, in this process as in the cluster's
    pytest.importorskip("ray")
    temp_dir = tmp_path_factory.mktemp("ray")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ray_cli = Path(sys.executable).with_name("ray")
    subprocess.run([str(ray_cli), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    f"--temp-dir={temp_dir}", "--num-cpus=2", "--include-dashboard=false",
                    "--disable-usage-stats"], check=True, capture_output=True, timeout=180)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        os.environ.update({k: v for k, v in saved.items() if v is not None})
        for key in (k for k, v in saved.items() if v is None):
            os.environ.pop(key)
        started = _processes_under(str(temp_dir))
        addresses = _listening(started)
        _stop(started)
        assert not _processes_under(str(temp_dir))
    assert addresses and all(address.rsplit(":", 1)[0] in ("127.0.0.1", "[::ffff:127.0.0.1]")
                             for address in addresses), addresses


def _ray(cluster: str) -> list[str]:
    return ["executor=ray", f"executor.address={cluster}"]


@pytest.fixture(scope="module")
def local_run(tiny_csv, tmp_path_factory) -> Path:
    """The classic experiment on the tiny CSV, run in this process: what every executor must reproduce."""
    return run(compose(["experiment=classic", *tiny_overrides(tiny_csv, tmp_path_factory.mktemp("local"))]))


def _same_run(local: Path, remote: Path) -> None:
    columns = ["strategy", "item_id", "gold", "pred", "correct", "error"]
    local_rows = pd.read_parquet(local / "predictions.parquet")[columns]
    remote_rows = pd.read_parquet(remote / "predictions.parquet")[columns]
    assert len(remote_rows) == 3 * 32
    pd.testing.assert_frame_equal(local_rows, remote_rows)  # rows in held-out order whichever executor ran
    statistics = ["strategy", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "macro_f1", "macro_f1_ci_low"]
    pd.testing.assert_frame_equal(pd.read_csv(local / "results.csv")[statistics],
                                  pd.read_csv(remote / "results.csv")[statistics])
    manifest = json.loads((remote / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    # fit records in the plan's order, whatever order the stages finished in
    assert list(manifest["strategies"]) == list(json.loads((local / "manifest.json").read_text())["strategies"])


def test_ray_run_gives_the_local_run_s_predictions_and_report(cluster, local_run, tiny_csv, tmp_path):
    _same_run(local_run, run(compose(["experiment=classic", *tiny_overrides(tiny_csv, tmp_path), *_ray(cluster)])))


def test_stages_side_by_side_give_the_local_run_s_predictions_and_report(cluster, local_run, tiny_csv, tmp_path):
    _same_run(local_run, run(compose(["experiment=classic", *tiny_overrides(tiny_csv, tmp_path), *_ray(cluster),
                                      "executor.parallel_stages=true"])))


class FitPidTfidf(TfidfClassifier):
    """tfidf_logreg whose fit record names the process that fitted it."""

    def describe(self) -> dict:
        return {**super().describe(), "fitted_in": os.getpid()}


@pytest.fixture(scope="module")
def swept_side_by_side(cluster, tiny_csv, tmp_path_factory) -> Path:
    """A two-point sweep of FitPidTfidf, each point a stage task of its own."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not import the tests
    cfg = compose(["~experiment", "+strategy@strategies.fitpid=tfidf_logreg",
                   f"strategies.fitpid._target_={__name__}.FitPidTfidf",
                   "+sweep={train_per_class: [2, all], seeds: [0]}",
                   *tiny_overrides(tiny_csv, tmp_path_factory.mktemp("swept")), *_ray(cluster),
                   "executor.parallel_stages=true"])
    return run(cfg)


def test_each_stage_task_fits_there_and_its_fit_record_is_kept(swept_side_by_side):
    manifest = json.loads((swept_side_by_side / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    fits = manifest["strategies"]
    assert list(fits) == ["fitpid[n=2,seed=0]", "fitpid[n=all,seed=0]"]
    assert [fits[name]["n_train"] for name in fits] == [16, 96]
    for fit in fits.values():
        assert fit["fit_seconds"] > 0 and fit["predict_seconds"] > 0 and fit["reference_ms"] > 0
        assert fit["stage"]["kind"] == "sweep" and fit["details"]["fitted_in"] != os.getpid()  # fitted in a task
    assert len(pd.read_parquet(swept_side_by_side / "predictions.parquet")) == 2 * 32


def test_a_resumed_side_by_side_run_predicts_only_the_unrecorded_items(swept_side_by_side, tmp_path):
    from omegaconf import OmegaConf

    run_dir = Path(shutil.copytree(swept_side_by_side, tmp_path / "run"))
    (run_dir / "predictions.parquet").unlink()
    kept = {}
    for records in (run_dir / "records").glob("*.jsonl"):
        kept[records.name] = records.read_text().splitlines()[:10]
        records.write_text("".join(line + "\n" for line in kept[records.name]))
    before = json.loads((run_dir / "manifest.json").read_text())["strategies"]
    run(OmegaConf.load(run_dir / "config.yaml"), resume=run_dir)
    for name, first in kept.items():
        lines = (run_dir / "records" / name).read_text().splitlines()
        assert lines[:10] == first and len(lines) == 32  # the 10 kept, the 22 others once each
        assert len({json.loads(line)["item_id"] for line in lines}) == 32
    after = json.loads((run_dir / "manifest.json").read_text())
    assert after["status"] == "complete" and len(pd.read_parquet(run_dir / "predictions.parquet")) == 2 * 32
    for name, fit in after["strategies"].items():  # refitted; the first run's prediction seconds carried on
        assert fit["predict_seconds"] > before[name]["predict_seconds"]


class SlowTfidf(TfidfClassifier):
    """tfidf_logreg at 0.1 s an item, each record naming the process that predicted it."""

    def predict(self, items):
        for prediction in super().predict(items):
            time.sleep(0.1)
            prediction.extra["pid"] = os.getpid()
            yield prediction


def _kill_first_worker(records: Path, killed: list[int]) -> None:
    """Once the first records arrive, SIGKILLs the worker that predicted them (its shard is then half done)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        lines = records.read_text().splitlines() if records.exists() else []
        if lines:
            pid = json.loads(lines[0])["extra"]["pid"]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.02)


def _run_killing_a_worker(cluster, tiny_csv, tmp_path, *overrides: str) -> tuple[Path, set, int]:
    """A run of the slow strategy (and `overrides`) whose first worker is SIGKILLed once it has recorded items;
    returns the run directory, the PIDs that recorded items and the killed PID, once every item is recorded once."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not import the tests
    cfg = compose(["~experiment", "+strategy@strategies.slow=tfidf_logreg",
                   f"strategies.slow._target_={__name__}.SlowTfidf", *tiny_overrides(tiny_csv, tmp_path),
                   *_ray(cluster), *overrides])
    root, killed = tmp_path / "reports", []
    watcher = threading.Thread(target=lambda: _kill_first_worker(_records_file(root), killed), daemon=True)
    watcher.start()
    run_dir = run(cfg)
    watcher.join(timeout=5)
    lines = [json.loads(line) for line in (run_dir / "records" / "slow.jsonl").read_text().splitlines()]
    per_item = Counter(rec["item_id"] for rec in lines)
    assert killed and len(per_item) == 32 and set(per_item.values()) == {1}
    return run_dir, {rec["extra"]["pid"] for rec in lines}, killed[0]


@pytest.mark.parametrize("chunk_items", [None, 3], ids=["one-call-a-shard", "shards-in-calls-of-3"])
def test_a_killed_worker_s_shard_is_finished_with_every_item_recorded_once(cluster, tiny_csv, tmp_path, monkeypatch,
                                                                           caplog, chunk_items):
    if chunk_items:  # a shard's later calls wait on its worker when it dies: each is sent again, once
        monkeypatch.setattr("harness.run.ray_executor.CHUNK_ITEMS", chunk_items)
    run_dir, pids, killed = _run_killing_a_worker(cluster, tiny_csv, tmp_path)
    assert killed in pids and len(pids) == 3  # two workers, and the one that took over the killed one's shard
    deaths = [r for r in caplog.records if "died" in r.getMessage()]
    assert len(deaths) == 1, [r.getMessage() for r in deaths]  # one death, told once, whatever was queued behind it
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "complete"


def test_a_killed_stage_task_is_submitted_again_with_its_unrecorded_items(cluster, tiny_csv, tmp_path):
    run_dir, pids, killed = _run_killing_a_worker(cluster, tiny_csv, tmp_path,
                                                  "+strategy@strategies.fast=tfidf_logreg",
                                                  "executor.parallel_stages=true")
    assert killed in pids and len(pids) == 2  # the killed task's worker, and the one that took over
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and list(manifest["strategies"]) == ["slow", "fast"]


def _records_file(root: Path) -> Path:
    """The slow strategy's records in the one run directory that will appear under `root`."""
    while True:
        found = list(root.glob("*/*/*/records"))
        if found:
            return found[0] / "slow.jsonl"
        time.sleep(0.02)


def test_shards_follow_item_ids_not_their_order():
    from harness.data import Example

    items = [Example(f"item-{i}", "text", "label") for i in range(200)]
    forward = shards(items, 3)
    backward = shards(items[::-1], 3)
    assert sorted(len(part) for part in forward) == sorted(len(part) for part in backward)
    assert [{ex.id for ex in part} for part in forward] == [{ex.id for ex in part} for part in backward]
    assert all(shard_of(ex.id, 3) == index for index, part in enumerate(forward) for ex in part)
    assert min(len(part) for part in forward) > 40  # a hash spreads them, it does not pile them up


def test_what_crosses_to_and_from_workers_comes_back_equal():
    from harness.data import Example
    from harness.run.ray_executor import _pack, _unpack
    from harness.strategies.base import Prediction

    items = [Example(f"item-{i}", f"text {i}", "label", group="g" if i % 2 else None) for i in range(50)]
    predictions = [Prediction(item_id=ex.id, gold=ex.label, pred=None if i % 7 else "label", latency_ms=0.5 * i,
                              error="timeout" if i == 3 else None, extra={"confidence": 0.25} if i % 3 else {})
                   for i, ex in enumerate(items)]
    mixed = [items[0], predictions[0], {"not": "a dataclass"}]
    for objects in (items, predictions, mixed, []):
        assert _unpack(_pack(objects)) == objects
    assert type(_unpack(_pack(predictions))[0]) is Prediction


@pytest.mark.parametrize("override, named", [
    ("+executor.resources.gpus=1", "no executor.resources key 'gpus'"),
    ("executor.num_workers=0", "executor.num_workers"),
    ("executor.max_retries=-1", "executor.max_retries"),
    ("executor.parallel_stages=maybe", "executor.parallel_stages"),
    ("+executor.stage_resources.tfidf_logreg.gpus=1", "no executor.stage_resources.tfidf_logreg key 'gpus'")])
def test_bad_executor_settings_fail_in_one_line_before_any_cluster(override, named, tiny_csv, tmp_path):
    from harness.run.runner import run as run_only

    with pytest.raises(HarnessError, match=named):
        run_only(compose(["experiment=classic", *tiny_overrides(tiny_csv, tmp_path), "executor=ray", override]))


def test_a_fitted_embedding_strategy_ships_without_its_model_or_cache_connection(tiny_cfg, tmp_path):
    from harness.config import instantiate
    from harness.run.services import Services

    cfg = tiny_cfg("classic")
    dataset = instantiate(cfg.dataset)
    services = Services(hardware=instantiate(cfg.hardware), run_dir=tmp_path,
                        embedder_factory=lambda: instantiate(cfg.embedder))
    strategy = instantiate(cfg.strategies.embed_logreg, name="embed_logreg").fit(dataset, services)
    before = [p.pred for p in strategy.predict(dataset.heldout)]
    copy = pickle.loads(pickle.dumps(strategy))
    assert copy.embedder_._model is None and copy.embedder_._vectors == {}
    assert copy.embedder_.store()._db is None
    assert [p.pred for p in copy.predict(dataset.heldout)] == before
    # served by the on-disk cache the original filled, not embedded again
    assert copy.embedder_.from_disk == len({ex.text for ex in dataset.heldout})
    services.close()


def test_services_ship_to_a_stage_task_without_what_they_started(tiny_cfg, tmp_path):
    """A stage task gets the run's recipes (hardware, factories closing over the config), never the driver's live
    embedder or endpoints: it makes its own there and stops them itself."""
    cloudpickle = pytest.importorskip("ray.cloudpickle")
    from harness.config import instantiate
    from harness.run.services import Services

    cfg = tiny_cfg("classic")
    services = Services(hardware=instantiate(cfg.hardware), run_dir=tmp_path,
                        embedder_factory=lambda: instantiate(cfg.embedder), llm_factory=lambda model: dict(model))
    embedder, endpoint = services.embedder, services.llm({"name": "local"})
    copy = cloudpickle.loads(cloudpickle.dumps(services))
    assert copy._embedder is None and copy._llms == {}
    assert services._embedder is embedder and services._llms == {"local": endpoint}  # the original keeps them
    assert copy.embedder is not embedder and copy.embedder.path == embedder.path  # made anew from the config
    assert copy.llm({"name": "local"}) is not endpoint
    assert copy.hardware == services.hardware and copy.run_dir == services.run_dir
    for each in (copy, services):
        each._llms.clear()  # plain dicts here, not endpoints to stop
        each.close()
