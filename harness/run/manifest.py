"""The manifest: what a run is and did, as one typed record. The run directory (harness.run.directory) is its
only writer; the report, `compare` and the gate read it through these fields."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

from harness.errors import HarnessError
from harness.strategies.base import FitRecord

RUNNING, FINISHING, COMPLETE, INTERRUPTED, FAILED = "running", "finishing", "complete", "interrupted", "failed"
STATUSES = (RUNNING, FINISHING, COMPLETE, INTERRUPTED, FAILED)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    source: str
    n_train: int
    n_heldout: int
    n_labels: int
    heldout_hash: str
    task: dict = field(default_factory=dict)  # harness.data.Task.describe()
    group_column: str | None = None


@dataclass(frozen=True)
class SplitAudit:
    """One split's label audit (harness.audit): its items, the suspected label errors, and the suspects kept here
    (most suspect first: item_id, text, given_label, suggested_label, given_probability)."""

    n_items: int
    n_issues: int
    error_rate: float  # n_issues / n_items: the estimated share of wrong labels
    suspects: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class LabelAudit:
    strategy: str  # the `_target_` whose probabilities judged the labels
    model: str
    folds: int
    file: str  # every suspect of both splits, relative to the run directory
    train: SplitAudit
    heldout: SplitAudit

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LabelAudit":
        return cls(**{**data, "train": SplitAudit(**data["train"]), "heldout": SplitAudit(**data["heldout"])})


@dataclass
class Manifest:
    experiment: str
    status: str
    started_at: str
    dataset: DatasetInfo
    config: dict = field(default_factory=dict)  # the resolved config
    finished_at: str | None = None
    price_sources: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    git: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    planned: dict[str, int] = field(default_factory=dict)  # stage -> held-out items it must record
    strategies: dict[str, FitRecord] = field(default_factory=dict)
    projection: list[dict] = field(default_factory=list)  # harness.costs.projection rows
    runs: list[dict] = field(default_factory=list)  # `compare`: the merged runs
    notes: list[str] = field(default_factory=list)  # what every reader should be told (e.g. no task description)
    audit: LabelAudit | None = None  # the label audit, when the config asks for one (`audit:`)

    # ------------------------------------------------------------------------------------------ reading
    @property
    def seed(self) -> int:
        return int(self.config.get("seed") or 0)

    @property
    def heldout_hash(self) -> str:
        return self.dataset.heldout_hash

    def fit(self, strategy: str) -> FitRecord | None:
        return self.strategies.get(strategy)

    def family(self, strategy: str) -> str:
        record = self.strategies.get(strategy)
        if record is None:
            raise HarnessError(f"the manifest has no fit record for strategy '{strategy}'; known: "
                               f"{', '.join(self.strategies) or '(none)'}")
        return record.family

    # ------------------------------------------------------------------------------------ serialising
    def to_dict(self) -> dict:
        data = asdict(self)
        data["strategies"] = {name: record.to_dict() for name, record in self.strategies.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Manifest":
        data = dict(data)
        missing = [key for key in ("experiment", "status", "started_at", "dataset") if key not in data]
        if missing:
            raise HarnessError(f"manifest.json has no '{missing[0]}'; it was not written by this version of harness")
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        dataset = dict(values["dataset"])
        values["dataset"] = DatasetInfo(**{k: v for k, v in dataset.items() if k in {f.name for f in
                                                                                     fields(DatasetInfo)}})
        values["strategies"] = {name: FitRecord.from_dict(record)
                                for name, record in (values.get("strategies") or {}).items()}
        if values.get("audit"):
            values["audit"] = LabelAudit.from_dict(values["audit"])
        return cls(**values)

    def with_changes(self, **changes) -> "Manifest":
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise TypeError(f"Manifest has no field '{unknown[0]}'")
        return replace(self, **changes)


def check_same_heldout(expected: str, actual: str, *, what: str, advice: str) -> None:
    """The one comparison of held-out hashes: refuses `what` when its items are not the expected ones."""
    if expected != actual:
        raise HarnessError(f"{what}: held-out hash {str(actual)[:12]} differs from {str(expected)[:12]}; {advice}")
