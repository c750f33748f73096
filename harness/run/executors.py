"""Where a run's stages are fitted and their held-out items predicted (the `executor` config group): in the run's
own process (`LocalExecutor`, the default), or on a Ray cluster (harness.run.ray_executor): one stage's items
sharded across workers, or whole stages as tasks side by side. Either way what a stage produces comes back to the
runner's `StageSink`, which alone writes the run directory, so resume, the records and the report do not depend on
which executor ran.

`fit_stage` and `measured` are the one account of a stage's fit record (its measured fit, then the seconds and
the machine's reference speed around its predictions), used wherever the stage runs."""
from __future__ import annotations

import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Protocol, Sequence

from harness.strategies.base import FitRecord, Prediction, Strategy

if TYPE_CHECKING:
    from harness.run.plan import Stage
    from harness.run.services import Services


@dataclass
class StageWork:
    """A stage with items to predict: those not recorded yet, and the fit record an earlier attempt left (a
    resumed run), whose prediction seconds the new record carries on from."""

    stage: "Stage"
    todo: list  # held-out items, in held-out order
    recorded: int = 0  # items recorded before (the progress bar's start)
    previous: FitRecord | None = None

    @property
    def name(self) -> str:
        return self.stage.name


class StageSink(Protocol):
    """What an executor hands back while stages run, in the run's process: each prediction as it arrives, and a
    stage's fit record when the stage ends (also when its predictions were cut short, where the executor still
    has it)."""

    def predicted(self, stage: str, prediction: Prediction) -> None: ...

    def fitted(self, stage: str, record: FitRecord) -> None: ...


def fit_stage(work: StageWork, services: "Services") -> FitRecord:
    """Fits the stage's strategy on its training view; returns the fit's record, timed in this process."""
    stage = work.stage
    t0 = time.perf_counter()
    stage.strategy.fit(stage.train, services)
    record = stage.strategy.fit_record(wall_seconds=time.perf_counter() - t0, hardware=services.hardware,
                                       n_train=len(stage.train.train), stage=stage.info)
    record.predict_seconds = work.previous.predict_seconds if work.previous else 0.0
    return record


@contextmanager
def measured(record: FitRecord) -> Iterator[FitRecord]:
    """Adds the seconds spent inside to `record.predict_seconds` and sets `record.reference_ms` to this machine's
    speed around them (harness.run.provenance), however the block ends."""
    from harness.run.provenance import reference_ms

    before_ms = reference_ms()
    t0 = time.perf_counter()
    try:
        yield record
    finally:
        record.predict_seconds += time.perf_counter() - t0
        record.reference_ms = (before_ms + reference_ms()) / 2


def run_stage(work: StageWork, services: "Services", sink: StageSink,
              predict: Callable[[Strategy, Sequence], Iterator[Prediction]]) -> None:
    """One stage in this process: fit, then `predict(strategy, items)` of its unrecorded items; the sink gets
    every prediction and, however the stage ends once fitted, the fit record."""
    strategy = work.stage.strategy
    try:
        record = fit_stage(work, services)
        try:
            with measured(record):
                for prediction in predict(strategy, work.todo):
                    sink.predicted(work.name, prediction)
        finally:
            sink.fitted(work.name, record)
    finally:
        strategy.close()


class Executor:
    """Runs the stages one after another, fitting each here and predicting its items with `predict`."""

    def run_stages(self, work: Sequence[StageWork], services: "Services", sink: StageSink) -> None:
        for stage in work:
            run_stage(stage, services, sink, self.predict)

    def predict(self, strategy: Strategy, items: Sequence) -> Iterator[Prediction]:
        raise NotImplementedError

    def close(self) -> None:
        """Stops what the executor started."""


class LocalExecutor(Executor):
    """Fits and predicts every stage in this process, one after another, as the strategy yields them."""

    def predict(self, strategy: Strategy, items: Sequence) -> Iterator[Prediction]:
        return strategy.predict(items)


def shard_of(item_id: str, n_shards: int) -> int:
    """The shard an item belongs to: a hash of its id, so the same items go together whatever their order, on
    every run and resume (Python's own hash() of a string changes with each process). CRC-32 spreads ids evenly
    and costs a fifth of SHA-256, which mattered: the driver hashes every item while its workers hold the cores."""
    return zlib.crc32(item_id.encode()) % n_shards


def shards(items: Sequence, n_shards: int) -> list[list]:
    """`items` split into `n_shards` lists by `shard_of`, each in the items' order (the list at index i is shard i,
    empty or not)."""
    out: list[list] = [[] for _ in range(n_shards)]
    for item in items:
        out[shard_of(item.id, n_shards)].append(item)
    return out
