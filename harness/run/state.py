"""What every reader says about a run: its status as displayed (the manifest's word checked against the run's
lock, so a killed run reads "interrupted (process gone)", never "running" forever), how many of its planned
items are recorded, and how many of each strategy's items failed and with which error most often."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.run import lock
from harness.run.directory import RunDir
from harness.run.manifest import COMPLETE, FINISHING, RUNNING, Manifest

GONE = "interrupted (process gone)"
_ATTEMPTS = re.compile(r"^after \d+ attempt\(s\): ")  # the same failure after 2 or 5 attempts is one error


@dataclass(frozen=True)
class StrategyState:
    strategy: str
    planned: int
    recorded: int
    errors: int
    commonest_error: str | None  # the most frequent error message (without its attempt count)
    commonest_error_count: int

    @property
    def error_share(self) -> float:
        return self.errors / self.recorded if self.recorded else 0.0

    @property
    def coverage(self) -> float:
        return self.recorded / self.planned if self.planned else 1.0


@dataclass(frozen=True)
class RunState:
    status: str  # the manifest's status
    display: str  # what readers show: complete, running, interrupted (process gone), failed, interrupted
    holder_pid: int | None  # the live process writing the run, if any
    strategies: dict[str, StrategyState]

    @property
    def complete(self) -> bool:
        return self.display == COMPLETE

    @property
    def final(self) -> bool:
        """Complete with every planned item recorded: figures that will not change."""
        return self.complete and self.coverage >= 1.0

    @property
    def planned(self) -> int:
        return sum(s.planned for s in self.strategies.values())

    @property
    def recorded(self) -> int:
        return sum(s.recorded for s in self.strategies.values())

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.strategies.values())

    @property
    def coverage(self) -> float:
        return self.recorded / self.planned if self.planned else 1.0

    def describe(self) -> str:
        """One line: 'interrupted (process gone): 100 of 240 items recorded (42%)'."""
        return f"{self.display}: {self.recorded:,} of {self.planned:,} items recorded ({self.coverage:.0%})"


def run_state(run: RunDir | Path, records: pd.DataFrame | None = None) -> RunState:
    """The run's state; `records` (the run's records, as RunDir.load_records gives them) saves reading them
    again when the caller has them."""
    rundir = run if isinstance(run, RunDir) else RunDir.open(Path(run))
    manifest = rundir.read_manifest()
    records = rundir.load_records() if records is None else records
    writer = lock.holder(rundir.path)
    return RunState(status=manifest.status, display=displayed_status(manifest.status, writer),
                    holder_pid=writer.pid if writer else None, strategies=strategy_states(manifest, records))


def displayed_status(status: str, writer: lock.Holder | None) -> str:
    """The manifest says running or finishing while its writer works; without a live runner holding the lock,
    that process is gone. A run finishing in this very process (its runner building the report) is complete:
    those outputs are its last step."""
    if status not in (RUNNING, FINISHING):
        return status
    runner_alive = writer is not None and (writer.command is None or writer.command in lock.RUNNERS)
    if not runner_alive:
        return GONE
    return COMPLETE if status == FINISHING and writer.is_self else RUNNING


def strategy_states(manifest: Manifest, records: pd.DataFrame) -> dict[str, StrategyState]:
    """Per planned strategy (then any other that has records): items planned, recorded and errored."""
    latest = records.drop_duplicates(["strategy", "item_id"], keep="last")
    planned = dict(manifest.planned) or {name: manifest.dataset.n_heldout for name in manifest.strategies}
    names = list(dict.fromkeys([*planned, *latest["strategy"]]))
    by_strategy = dict(tuple(latest.groupby("strategy", sort=False)))
    return {name: _strategy_state(name, planned.get(name, 0), by_strategy.get(name)) for name in names}


def _strategy_state(name: str, planned: int, records: pd.DataFrame | None) -> StrategyState:
    if records is None or records.empty:
        return StrategyState(name, planned, 0, 0, None, 0)
    errors = records["error"].dropna().astype(str)
    errors = errors[errors != ""].map(lambda text: " ".join(_ATTEMPTS.sub("", text).split()))
    counts = errors.value_counts()
    return StrategyState(name, planned, len(records), len(errors), counts.index[0] if len(counts) else None,
                         int(counts.iloc[0]) if len(counts) else 0)
