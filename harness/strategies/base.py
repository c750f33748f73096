"""The one interface that prompted and trained approaches share (scikit-learn's estimator rules)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Sequence

if TYPE_CHECKING:
    from harness.data import Dataset, Example
    from harness.services import Services


@dataclass
class Prediction:
    """One held-out item's outcome. A failed item is a Prediction with `error` set, never an exception."""

    item_id: str
    gold: str
    pred: str | None
    raw: str = ""
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0  # what the item costs to run (as if uncached)
    spent_usd: float = 0.0  # what this run actually paid (0 when served from a cache)
    cached: bool = False
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def correct(self) -> bool:
        return self.pred is not None and self.pred == self.gold

    def to_record(self, strategy: str) -> dict:
        rec = asdict(self)
        extra = rec.pop("extra")
        rec.update(strategy=strategy, correct=self.correct, extra=extra or None)
        return rec


class Strategy(ABC):
    """Stores params in `__init__` (no I/O, no validation); `fit` learns from the training split only and sets
    attributes ending in '_'; `predict` yields one Prediction per item, in any order."""

    #: how `latency_ms` was measured: "per-item" (one call per item) or "batch-amortised"
    latency_basis = "per-item"
    #: the model this strategy runs, for the results table
    model_name = ""

    def __init__(self, *, name: str, **params: Any) -> None:
        self.name = name
        self.params = params

    @abstractmethod
    def fit(self, train: "Dataset", services: "Services") -> "Strategy":
        ...

    @abstractmethod
    def predict(self, items: Sequence["Example"]) -> Iterator[Prediction]:
        ...

    def describe(self) -> dict:
        """What the manifest records about this strategy beyond its config (e.g. template hashes)."""
        return {}

    def close(self) -> None:
        """Release resources (servers, models). Called by the runner when the strategy is done."""
