"""The one interface that prompted and trained approaches share (scikit-learn's estimator rules), and the typed
records a strategy leaves: one `Prediction` per held-out item and one `FitRecord` per fit."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Mapping, Sequence

if TYPE_CHECKING:
    from harness.data import Dataset, Example
    from harness.run.services import Services

PROMPTED, TRAINED = "prompted", "trained"
CASCADE, DISTILL = "cascade", "distill"  # families of their own (harness.strategies.cascade, .distill)
# How inference is billed: "api" (a provider's per-token prices) or "self_hosted" (a machine you run).
API, SELF_HOSTED = "api", "self_hosted"


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


@dataclass(frozen=True)
class PromptArtefact:
    """What a prompted strategy sent: its templates' and rendered system prompt's hashes (the gate's "what
    changed"), the rendered system prompt saved in the run directory (the API projection counts its tokens)."""

    system_prompt_file: str  # relative to the run directory
    system_prompt_sha256: str
    templates_sha256: dict[str, str]
    output_mode: str
    measured_at_concurrency: int


@dataclass(frozen=True)
class StageInfo:
    """Where a fit sits in the run's plan: a plain strategy, a learning-curve point or a scenario phase.
    `candidate` is False for what is never an option to adopt (a scenario's `before` phase)."""

    kind: str = "plain"  # plain | sweep | scenario
    base: str = ""  # the strategy's name in the experiment's config
    phase: str | None = None  # scenario: before | after
    train_per_class: float | None = None  # sweep: training items per class (the whole split as its mean)
    sweep_seed: int | None = None
    candidate: bool = True


@dataclass
class FitRecord:
    """What one fit did, as the runner stores it in the manifest and every reader reads it."""

    family: str
    model: str
    latency_basis: str
    fit_seconds: float
    fit_cost_usd: float
    n_train: int  # the training items the fit learned from
    billing: str = SELF_HOSTED
    serving: str = "cpu"  # the machine class a self-hosted deployment needs: "cpu", or "gpu" (an LLM adapter)
    fit_basis: str = "measured seconds x hardware $/h"
    predict_seconds: float = 0.0
    # harness.run.provenance.reference_ms around the predictions: the gate scales measured seconds of
    # self-hosted strategies by it, so a slower or busier machine does not read as a slower candidate
    reference_ms: float | None = None
    artefacts: dict[str, str] = field(default_factory=dict)  # file relative to the run directory -> sha256
    prompt: PromptArtefact | None = None
    stage: StageInfo = field(default_factory=StageInfo)
    details: dict[str, Any] = field(default_factory=dict)  # strategy-specific facts (Strategy.describe())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "FitRecord":
        data = dict(data)
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("prompt"):
            values["prompt"] = PromptArtefact(**values["prompt"])
        values["stage"] = StageInfo(**(values.get("stage") or {}))
        for key in ("fit_seconds", "fit_cost_usd", "predict_seconds"):
            values[key] = _number(values.get(key))
        return cls(**values)


def _number(value) -> float:
    return float("nan") if value is None else float(value)


class Strategy(ABC):
    """Stores params in `__init__` (no I/O, no validation); `fit` learns from the training split only and sets
    attributes ending in '_'; `predict` yields one Prediction per item, in any order."""

    #: prompted, trained, or a family of its own: what the cost model and the report treat it as
    family: ClassVar[str]
    #: how inference is billed (API, SELF_HOSTED); prompted strategies take it from their endpoint
    billing: str = SELF_HOSTED
    #: the machine class serving it needs when self-hosted: "cpu" or "gpu"
    serving: str = "cpu"
    #: how `latency_ms` was measured: "per-item" (one call per item) or "batch-amortised"
    latency_basis = "per-item"
    #: the model this strategy runs, for the results table
    model_name = ""
    #: whether it sends prompts (then the dataset's task words are what the model reads)
    prompts: ClassVar[bool] = False

    def __init__(self, *, name: str, **params: Any) -> None:
        if not isinstance(getattr(type(self), "family", None), str):
            raise TypeError(f"strategy class {type(self).__qualname__} must declare its family as a class "
                            f"attribute: '{PROMPTED}', '{TRAINED}' or a family of its own")
        self.name = name
        self.params = params

    @abstractmethod
    def fit(self, train: "Dataset", services: "Services") -> "Strategy":
        ...

    @abstractmethod
    def predict(self, items: Sequence["Example"]) -> Iterator[Prediction]:
        ...

    def fit_record(self, *, wall_seconds: float, hardware, n_train: int, stage: StageInfo) -> FitRecord:
        """The typed record of the fit just done. Strategies that measured their fit more precisely than the
        runner's wall clock (or priced it otherwise) set `fit_seconds_` / `fit_cost_usd_` / `fit_basis_`."""
        seconds = float(getattr(self, "fit_seconds_", wall_seconds))
        cost = getattr(self, "fit_cost_usd_", None)
        return FitRecord(
            family=self.family, model=self.model_name, latency_basis=self.latency_basis, fit_seconds=seconds,
            fit_cost_usd=float(hardware.cost_usd(seconds) if cost is None else cost),
            n_train=int(getattr(self, "n_train_", n_train)), billing=self.billing, serving=self.serving,
            fit_basis=getattr(self, "fit_basis_", FitRecord.fit_basis), artefacts=self.artefacts(),
            prompt=self.prompt_artefact(), stage=stage, details=self.describe())

    @property
    def distributable(self) -> bool:
        """Whether an executor may predict this fitted strategy's items in other processes or machines (pickled
        there, harness.run.ray_executor). Not when an API bills it: the provider's rate limits bound it, not
        cores, so more workers would only add 429s."""
        return self.billing != API

    def describe(self) -> dict:
        """Strategy-specific facts the manifest keeps beyond the typed fields (e.g. training settings)."""
        return {}

    def artefacts(self) -> dict[str, str]:
        """Files this fit produced, relative to the run directory, with their sha256."""
        return {}

    def prompt_artefact(self) -> PromptArtefact | None:
        return None

    def close(self) -> None:
        """Release resources (servers, models). Called by the runner when the strategy is done."""
