"""`executor=ray`: a stage's held-out items sharded across Ray workers, or (`parallel_stages`) whole stages side by
side as Ray tasks.

Sharded (the default): the driver (the `harness run` process) fits each strategy as it always does, then splits
the items it has not recorded into `num_workers` shards by a hash of their ids (harness.run.executors.shards).
Each shard is predicted by one Ray actor that unpickles the fitted strategy once and streams its predictions back
in small batches; the driver hands them to the runner, which alone writes the run directory. When a worker dies
(killed, out of memory, its node lost), the driver starts another actor for that shard with only the items not
yet recorded, up to `max_retries` times per shard.

What is shipped: the fitted strategy, pickled (its learned state; an embedder travels without its model and its
cache connection, a local LLM endpoint as the recipe that starts one server per worker, harness.llm.factory).
What is not: strategies whose `distributable` is false (prompted strategies on an API model, bound by the
provider's rate limits, not by cores) predict on the driver with their async client, as under executor=local.

Side by side (`parallel_stages: true`, when more than one stage has items left): every stage (a strategy of the
experiment, a point of a sweep, a phase of a scenario) is one Ray task with its own resource request
(`stage_resources` by the strategy's name, else `resources`), so a GPU fine-tune lands on a GPU node while CPU
baselines fill the rest. The task (`stage_task`, a streaming generator) fits the unfitted strategy there, timed
there, streams its predictions back in batches, then its fit record with the seconds the predictions took there;
the driver reads every stage's stream as it comes (ray.wait) and hands it to the runner. What the task gets: the
stage (its strategy, unfitted, and its training view), its unrecorded items and the run's Services, pickled
without anything live (harness.run.services): the task loads its own embedder and starts its own local model
server, and stops them when it ends. A stage whose worker dies is submitted again with only its unrecorded items
(refitted there), up to `max_retries` times per stage.
"""
from __future__ import annotations

import logging
import os
import pickle
import sys
import time
from dataclasses import dataclass, field, fields, is_dataclass, replace
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from harness.errors import HarnessError, choices
from harness.run.executors import Executor, StageSink, StageWork, fit_stage, measured, shards
from harness.strategies.base import TRAINED, FitRecord, Prediction, Strategy

if TYPE_CHECKING:
    from harness.run.plan import Stage
    from harness.run.services import Services

log = logging.getLogger(__name__)

RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory", "resources", "accelerator_type")
# A worker sends what it has every BATCH_ITEMS predictions or BATCH_SECONDS, whichever comes first: one Ray object
# per item costs more than a fast strategy's prediction, and a slow one (a local LLM) should not hold finished
# items back for long.
BATCH_ITEMS, BATCH_SECONDS = 4096, 0.5
# A shard's items go to its worker in calls of at most CHUNK_ITEMS (about 1 MB packed), so the worker starts on
# the first while the driver packs the rest.
CHUNK_ITEMS = 20_000


# Items and predictions cross between driver and workers as bytes we pickle ourselves, each list as its dataclass
# and one list of values per field (columns), not as Python objects for Ray to serialise: Ray's serialiser
# (cloudpickle) calls a Python-level hook for every object it meets, unpickling a dataclass instance costs twice
# what building it from a tuple does, and columns unpickle in a third of the time rows (one tuple per object) do.
# For a fast strategy each costs about as much as predicting the item, and on 2 cores the driver pays it while
# the workers hold the cores (tfidf_logreg on 2 warm workers against local: 1.30x over 30,000 items as objects,
# 1.43x as bytes). Both ends run this module.
def _pack(objects: list) -> bytes:
    kind = type(objects[0]) if objects else None
    names = [f.name for f in fields(kind) if f.init] if is_dataclass(kind) else []
    if len(names) < 2 or len(names) < len(fields(kind)) or not all(type(o) is kind for o in objects):
        return pickle.dumps((None, objects), protocol=pickle.HIGHEST_PROTOCOL)  # as they are
    columns = [list(map(attrgetter(name), objects)) for name in names]
    return pickle.dumps((kind, columns), protocol=pickle.HIGHEST_PROTOCOL)


def _unpack(blob: bytes) -> list:
    kind, columns = pickle.loads(blob)
    return columns if kind is None else [kind(*row) for row in zip(*columns)]


class ShardWorker:
    """A Ray actor's body, kept for the whole run so its process imports the libraries once: the fitted strategy
    of the stage at hand (unpickled once per stage) and the predictions of one shard."""

    def __init__(self, cwd: str) -> None:
        # Relative paths (the run directory, caches, model files) mean what they mean on the driver wherever the
        # workers share its file system.
        if os.path.isdir(cwd):
            os.chdir(cwd)
        self.strategy: Strategy | None = None

    def pid(self) -> int:
        return os.getpid()

    def load(self, strategy_pickle: bytes) -> None:
        if self.strategy is not None:
            self.strategy.close()
        self.strategy = pickle.loads(strategy_pickle)

    def predict(self, items: bytes) -> Iterator[bytes]:
        """The predictions of the packed `items`, in packed batches (a generator method: Ray streams them)."""
        yield from _batches(self.strategy.predict(_unpack(items)))

    def close(self) -> None:
        """Stops what the strategies started here; local model servers stay up between stages until now."""
        from harness.llm.factory import close_reconnected

        try:
            if self.strategy is not None:
                self.strategy.close()
        finally:
            close_reconnected()


def _batches(predictions: Iterator[Prediction]) -> Iterator[bytes]:
    """`predictions` packed in batches of BATCH_ITEMS, or what BATCH_SECONDS brought."""
    batch, flushed = [], time.monotonic()
    for prediction in predictions:
        batch.append(prediction)
        if len(batch) >= BATCH_ITEMS or time.monotonic() - flushed >= BATCH_SECONDS:
            yield _pack(batch)
            batch, flushed = [], time.monotonic()
    if batch:
        yield _pack(batch)


def stage_task(cwd: str, work: StageWork, services: "Services") -> Iterator[bytes | FitRecord]:
    """A Ray task's body under `parallel_stages`: fits the stage's strategy in this worker, yields its predictions
    of `work.todo` in packed batches, then its fit record (fit and prediction seconds measured here). What the strategy
    and `services` started here (an embedder, a local model's server) is stopped when the task ends."""
    if os.path.isdir(cwd):  # relative paths (caches, model files) mean what they mean on the driver
        os.chdir(cwd)
    strategy = work.stage.strategy
    try:
        record = fit_stage(work, services)
        with measured(record):
            yield from _batches(strategy.predict(work.todo))
        yield record
    finally:
        try:
            strategy.close()
        finally:
            services.close()


def _lost(ray) -> tuple[type[Exception], ...]:
    """What a dead worker (killed, out of memory, its node gone) reads as, unlike an error the strategy raised."""
    errors = ray.exceptions
    return (errors.RayActorError, errors.WorkerCrashedError, errors.ObjectLostError, errors.NodeDiedError,
            errors.OutOfMemoryError)


@dataclass
class _Sent:
    """Items handed to a worker, and the ids of those whose predictions came back. The ids are added a batch at a
    time (C-level), and what is left is worked out only when a worker dies: per-item bookkeeping on the driver
    costs about as much as a fast strategy's prediction, and on 2 cores the driver shares them with the workers."""
    items: list
    done: set[str] = field(default_factory=set)
    attempt: int = 0

    def received(self, batch: list[Prediction]) -> None:
        self.done.update(map(attrgetter("item_id"), batch))

    def left(self) -> list:
        return [item for item in self.items if item.id not in self.done]


@dataclass(kw_only=True)
class _StageTask(_Sent):
    work: StageWork
    fitted: bool = False  # its fit record arrived

    def remaining(self) -> StageWork:
        return replace(self.work, todo=self.left())


@dataclass(kw_only=True)
class _Shard(_Sent):
    """A part of shard `index`, and the actor it was sent to."""
    index: int
    worker: Any = None  # set when the part is sent


class RayExecutor(Executor):
    """`address`: an existing cluster (`ray://...`, `HOST:PORT`, or `auto`); null starts a local one for the run,
    bound to 127.0.0.1, and stops it at the end. `resources`: what each worker asks for (Ray's actor options,
    e.g. {num_cpus: 1} or {num_gpus: 1}). `temp_dir`: a local cluster's session files and logs (null: Ray's
    default). `parallel_stages`: run the stages side by side, each one Ray task asking for
    `stage_resources[its strategy's name]` (e.g. {finetune_llm: {num_gpus: 1}}), else for `resources`."""

    def __init__(self, *, address: str | None = None, num_workers: int = 2, resources: Mapping | None = None,
                 max_retries: int = 3, temp_dir: str | None = None, parallel_stages: bool = False,
                 stage_resources: Mapping | None = None) -> None:
        self.address = address
        self.num_workers = num_workers
        self.resources = dict(resources or {"num_cpus": 1})
        self.max_retries = max_retries
        self.temp_dir = temp_dir
        self.parallel_stages = parallel_stages
        self.stage_resources = {} if stage_resources is None else stage_resources
        self.startup_seconds: float | None = None  # connecting to (or starting) the cluster, once per run
        self._ray = None
        self._started_here = False
        self._workers: list = []  # Ray actor handles, one per shard index
        self._blobs: dict[int, Any] = {}  # shard index -> the pickled strategy (a Ray object) its actor loaded

    def _check(self) -> None:
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 1:
            raise HarnessError(f"config key 'executor.num_workers' must be a whole number >= 1, got "
                               f"{self.num_workers!r}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise HarnessError(f"config key 'executor.max_retries' must be a whole number >= 0, got "
                               f"{self.max_retries!r}")
        for key in self.resources:
            if key not in RESOURCE_KEYS:
                raise choices("executor.resources key", key, RESOURCE_KEYS)
        if not isinstance(self.parallel_stages, bool):
            raise HarnessError(f"config key 'executor.parallel_stages' must be true or false, got "
                               f"{self.parallel_stages!r}")
        requests = self.stage_resources
        if not isinstance(requests, Mapping) or not all(isinstance(r, Mapping) for r in requests.values()):
            raise HarnessError(f"config key 'executor.stage_resources' must map strategy names to resource requests "
                               f"(e.g. {{finetune_llm: {{num_gpus: 1}}}}), got {requests!r}")
        for name, request in requests.items():
            for key in request:
                if key not in RESOURCE_KEYS:
                    raise choices(f"executor.stage_resources.{name} key", key, RESOURCE_KEYS)

    def start(self) -> float:
        """Connects to the cluster (or starts the local one); returns the seconds it took. Idempotent."""
        if self._ray is not None:
            return 0.0
        self._check()
        t0 = time.perf_counter()
        if self.address is None:
            # Without this Ray's node binds the machine's network address, not loopback: a cluster of one machine
            # has no reason to listen on the network. Read when ray is first imported.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        try:
            import ray
        except ModuleNotFoundError as exc:
            raise HarnessError("executor=ray needs Ray: pip install -e '.[ray]'") from exc
        if ray.is_initialized():  # a cluster this process already joined (a notebook, a test): not ours to stop
            self._ray = ray
        else:
            options = ({"address": self.address} if self.address is not None else
                       {"_node_ip_address": "127.0.0.1", "include_dashboard": False, "_temp_dir": self.temp_dir})
            try:
                ray.init(**options, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise HarnessError(f"executor.address={self.address}: cannot join the Ray cluster: "
                                   f"{str(exc).splitlines()[0]}") from exc
            self._ray, self._started_here = ray, True
        self.startup_seconds = time.perf_counter() - t0
        where = self.address or "a local cluster on 127.0.0.1"
        if self.parallel_stages:
            layout = f"stages side by side, each a task of {self.resources}"
            layout += "".join(f", {name}: {request}" for name, request in self.stage_resources.items())
        else:
            layout = f"{self.num_workers} workers of {self.resources}"
        print(f"executor ray: {where} ready in {self.startup_seconds:.1f} s, {layout}", file=sys.stderr)
        return self.startup_seconds

    # ---------------------------------------------------------------------------------- stages side by side
    def run_stages(self, work: Sequence[StageWork], services: "Services", sink: StageSink) -> None:
        """With `parallel_stages` and more than one stage left, every stage is one Ray task (`stage_task`);
        otherwise one after another, each stage's items sharded across the workers (`predict`)."""
        if not self.parallel_stages or len(work) < 2:
            if any(w.stage.strategy.family == TRAINED for w in work):
                self.start_workers()  # they boot (process, imports) while the first strategy fits here
            super().run_stages(work, services, sink)
            return
        self.start()
        unknown = sorted(set(self.stage_resources) - {w.stage.info.base for w in work})
        if unknown:  # a typo would quietly put a fine-tune on a CPU; a finished strategy (resume) is no typo
            print(f"executor ray: stage_resources names {', '.join(unknown)}, which no stage left to run has "
                  f"(strategies: {', '.join(sorted({w.stage.info.base for w in work}))})", file=sys.stderr)
        ray = self._ray
        task, shipped, cwd = ray.remote(stage_task), ray.put(services), os.getcwd()
        running: dict[Any, _StageTask] = {}  # streaming generator -> its stage

        def launch(job: _StageTask) -> None:
            options = {"num_returns": "streaming", "max_retries": 0, **self._stage_request(job.work.stage)}
            running[task.options(**options).remote(cwd, job.remaining(), shipped)] = job

        for stage in work:
            launch(_StageTask(list(stage.todo), work=stage))
        try:
            while running:
                [stream], _ = ray.wait(list(running), num_returns=1)
                job = running[stream]
                try:
                    out = ray.get(next(stream))
                except StopIteration:
                    del running[stream]
                    if not job.fitted:
                        raise HarnessError(f"{job.work.name}: its stage task ended without its fit record")
                    continue
                except _lost(ray) as exc:
                    del running[stream]
                    if not job.fitted:  # died after its last word: nothing is left to redo
                        self._retry_stage(job, exc)
                        launch(job)
                    continue
                except ray.exceptions.RayTaskError as exc:  # the strategy itself raised: not a lost worker
                    raise exc.cause if isinstance(exc.cause, HarnessError) else exc
                if isinstance(out, FitRecord):
                    job.fitted = True
                    sink.fitted(job.work.name, out)
                    continue
                batch = _unpack(out)
                job.received(batch)
                for prediction in batch:
                    sink.predicted(job.work.name, prediction)
        finally:
            for stream in running:  # interrupted, or another stage failed: stop the rest (their records stay)
                try:
                    ray.cancel(stream)
                except (ray.exceptions.RayError, ValueError) as exc:
                    log.warning("cancelling a stage task: %s", str(exc).splitlines()[0])

    def _stage_request(self, stage: "Stage") -> dict:
        """The Ray resource request of `stage`'s task: its strategy's entry of `stage_resources`, else `resources`."""
        return dict(self.stage_resources.get(stage.info.base, self.resources))

    def _retry_stage(self, job: _StageTask, exc: Exception) -> None:
        job.attempt += 1
        reason = str(exc).splitlines()[0][:200]
        name = job.work.name
        if job.attempt > self.max_retries:
            raise HarnessError(f"{name}: the worker of its stage task died {job.attempt} times "
                               f"(executor.max_retries={self.max_retries}), {len(job.left())} of its items "
                               f"unrecorded; last: {reason}; `harness resume RUN_DIR` continues with them")
        log.warning("%s: the worker of its stage task died (%s); submitting it again with its %d unrecorded items "
                    "(attempt %d of %d)", name, reason, len(job.left()), job.attempt, self.max_retries)

    # ---------------------------------------------------------------------------------------- sharded items
    def predict(self, strategy: Strategy, items: Sequence) -> Iterator[Prediction]:
        if not strategy.distributable:
            yield from strategy.predict(items)
            return
        self.start()
        ray = self._ray
        import ray.cloudpickle as cloudpickle

        blob = ray.put(cloudpickle.dumps(strategy))
        for index in range(self.num_workers):  # they start (if new) and unpickle it while the items are packed
            self._loaded(index, blob)
        running: dict[Any, _Shard] = {}  # streaming generator -> its part of a shard

        def launch(part: _Shard) -> None:
            part.worker = self._loaded(part.index, blob)
            running[part.worker.predict.remote(_pack(part.left()))] = part

        # A shard goes in parts of CHUNK_ITEMS, one call each, queued on its worker in order: its first items are
        # predicted while the rest are still being sharded and packed here.
        block = CHUNK_ITEMS * self.num_workers
        for start in range(0, len(items), block):
            for index, part in enumerate(shards(items[start:start + block], self.num_workers)):
                if part:
                    launch(_Shard(part, index=index))
        try:
            while running:
                [stream], _ = ray.wait(list(running), num_returns=1)
                part = running[stream]
                try:
                    batch = _unpack(ray.get(next(stream)))
                except StopIteration:
                    del running[stream]
                    continue
                except _lost(ray) as exc:
                    del running[stream]
                    self._retry(strategy.name, part, exc)
                    launch(part)
                    continue
                except ray.exceptions.RayTaskError as exc:  # the strategy itself raised: not a lost worker
                    raise exc.cause if isinstance(exc.cause, HarnessError) else exc
                part.received(batch)
                yield from batch
        finally:
            for index in {part.index for part in running.values()}:  # interrupted: their state is unknown
                self._replace(index)

    def start_workers(self, wait: bool = False) -> float:
        """Starts the cluster (if not yet) and every shard's worker process ahead of its first shard; with `wait`,
        returns once they answer, with the seconds the workers took."""
        self.start()
        t0 = time.perf_counter()
        workers = [self._worker(index) for index in range(self.num_workers)]
        if wait:
            self._ray.get([worker.pid.remote() for worker in workers])
        return time.perf_counter() - t0

    def _worker(self, index: int):
        """The actor for shard `index`, started on first use (a worker's process lives for the run)."""
        while len(self._workers) <= index:
            self._workers.append(None)
        if self._workers[index] is None:
            actor = self._ray.remote(ShardWorker).options(max_restarts=0, **self.resources)
            self._workers[index] = actor.remote(os.getcwd())
        return self._workers[index]

    def _loaded(self, index: int, blob):
        """The actor for shard `index`, asked to load the pickled strategy `blob` unless it already has (an actor
        runs its calls in order: what is sent after this predicts with it)."""
        worker = self._worker(index)
        if self._blobs.get(index) is not blob:
            worker.load.remote(blob)
            self._blobs[index] = blob
        return worker

    def _replace(self, index: int) -> None:
        """Stops shard `index`'s actor; the next use starts a fresh one."""
        if self._workers[index] is not None:
            self._ray.kill(self._workers[index])
        self._workers[index] = None
        self._blobs.pop(index, None)

    def _retry(self, name: str, part: _Shard, exc: Exception) -> None:
        """Counts a death of `part`'s worker; the first of that worker's parts to report it replaces the worker and
        says so (the others were queued behind it)."""
        first = self._workers[part.index] is part.worker
        if first:
            self._replace(part.index)
        part.attempt += 1
        reason = str(exc).splitlines()[0][:200]
        if part.attempt > self.max_retries:
            raise HarnessError(f"{name}: the worker of shard {part.index} died {part.attempt} times "
                               f"(executor.max_retries={self.max_retries}), {len(part.left())} of its items "
                               f"unrecorded; last: {reason}; `harness resume RUN_DIR` continues with them")
        if first:
            log.warning("%s: the worker of shard %d died (%s); a new one predicts its unrecorded items (attempt %d "
                        "of %d)", name, part.index, reason, part.attempt, self.max_retries)

    def close(self) -> None:
        if self._ray is None:
            return
        ray, workers = self._ray, [w for w in self._workers if w is not None]
        try:
            ray.get([worker.close.remote() for worker in workers], timeout=60)
        except ray.exceptions.RayError as exc:  # a worker already gone has nothing left to stop
            log.warning("closing Ray workers: %s", str(exc).splitlines()[0])
        finally:
            for worker in workers:
                ray.kill(worker)
            if self._started_here:
                ray.shutdown()  # stops the processes of a local cluster this run started; leaves others' alone
            self._ray, self._started_here, self._workers, self._blobs = None, False, [], {}
