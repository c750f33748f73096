"""Where a stage's held-out items are predicted (the `executor` config group): in the run's own process
(`LocalExecutor`, the default), or sharded across the workers of a Ray cluster (harness.run.ray_executor). Either
way the predictions come back to the runner, which alone writes the run directory, so resume, the records and the
report do not depend on which executor ran."""
from __future__ import annotations

import hashlib
from typing import Iterator, Sequence

from harness.strategies.base import Prediction, Strategy


class LocalExecutor:
    """Predicts every item in this process, as the strategy yields them."""

    def predict(self, strategy: Strategy, items: Sequence) -> Iterator[Prediction]:
        return strategy.predict(items)

    def close(self) -> None:
        """Nothing to stop."""


def shard_of(item_id: str, n_shards: int) -> int:
    """The shard an item belongs to: a hash of its id, so the same items go together whatever their order, on
    every run and resume (Python's own hash() of a string changes with each process)."""
    return int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big") % n_shards


def shards(items: Sequence, n_shards: int) -> list[list]:
    """`items` split into `n_shards` lists by `shard_of`, each in the items' order; empty shards dropped."""
    out: list[list] = [[] for _ in range(n_shards)]
    for item in items:
        out[shard_of(item.id, n_shards)].append(item)
    return [part for part in out if part]
