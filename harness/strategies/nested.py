"""Strategies made of strategies (the cascade, distillation): building a part from its config node, fitting it
with its own measured fit record, and predicting a list of items with the wall time it took."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Sequence

from harness.errors import HarnessError
from harness.strategies.base import FitRecord, Prediction, StageInfo, Strategy

if TYPE_CHECKING:
    from harness.data import Dataset
    from harness.run.services import Services


def build(node, owner: str, role: str, family: str) -> Strategy:
    """The part `role` of strategy `owner`, from its config node (a `_target_` node, e.g. conf/strategy/*.yaml),
    named `owner.role` in artefact folders; refused unless it is of `family`."""
    from harness.config import instantiate

    if node is None or "_target_" not in node:
        raise HarnessError(f"strategy {owner}: config key '{role}' must be a strategy config with a _target_ "
                           "(e.g. a conf/strategy file)")
    part = instantiate(node, name=f"{owner}.{role}")
    if part.family != family:
        raise HarnessError(f"strategy {owner}: its {role} must be a {family} strategy; "
                           f"{node['_target_']} is {part.family}")
    return part


def fitted(part: Strategy, data: "Dataset", services: "Services") -> FitRecord:
    """Fits `part` on `data` and returns its fit record (its own measured seconds and cost)."""
    t0 = time.perf_counter()
    part.fit(data, services)
    return part.fit_record(wall_seconds=time.perf_counter() - t0, hardware=services.hardware,
                           n_train=len(data.train), stage=StageInfo(base=part.name))


def predicted(part: Strategy, items: Sequence) -> tuple[dict[str, Prediction], float]:
    """`part`'s predictions of `items` by item id, and the wall seconds they took."""
    t0 = time.perf_counter()
    out = {p.item_id: p for p in part.predict(items)}
    return out, time.perf_counter() - t0
