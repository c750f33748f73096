"""The run directory: the manifest's one writer, the held-out items, and records streamed as they arrive, read
back and resumed.

Layout (the contract users, reports and the regression gate depend on):
    reports/<dataset>/<experiment>/<timestamp>/
        manifest.json          what ran (harness.run.manifest.Manifest): config, held-out hash, versions, commit,
                               prices, fit records, status
        config.yaml            the resolved config (what `harness resume` re-runs)
        heldout.parquet        the held-out items (item_id, text, label, group): what every reader shows
        writer.lock            held by the one process writing the run (harness.run.lock)
        records/<strategy>.jsonl   one line per finished item, appended and flushed as each completes; an item
                               redone (`harness resume --retry-errors`) gets a later line, and the latest wins
        predictions.parquet    all records, one row per strategy x item, in held-out order (written when the run
                               completes)
        results.csv, per_class.csv, report.*   derived from the records alone
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from itertools import islice
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.files import atomic_write, temporary_sibling
from harness.hashing import content_hash
from harness.run import lock
from harness.run.manifest import Manifest, check_same_heldout

PREDICTION_COLUMNS = ["strategy", "item_id", "gold", "pred", "correct", "latency_ms", "prompt_tokens",
                      "completion_tokens", "cost_usd", "spent_usd", "cached", "error", "raw", "extra"]
PARSE_ROWS = 20_000  # record lines parsed into a frame at a time
HELDOUT_FILE = "heldout.parquet"
HELDOUT_COLUMNS = ["item_id", "text", "label", "group"]


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.records_dir = self.path / "records"

    @classmethod
    def create(cls, root: Path, *parts: str) -> "RunDir":
        """A new run directory root/<parts...>/<UTC timestamp>/."""
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d_%H-%M-%S")
        parent = Path(root).joinpath(*parts)
        path, suffix = parent / stamp, 1
        while True:
            try:
                path.mkdir(parents=True, exist_ok=False)
                break
            except FileExistsError:  # two runs in the same second
                path, suffix = parent / f"{stamp}_{suffix}", suffix + 1
        (path / "records").mkdir()
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> "RunDir":
        run = cls(path)
        if not (run.path / "manifest.json").is_file():
            raise HarnessError(f"{run.path}: not a run directory (no manifest.json)")
        return run

    def writing(self, command: str):
        """The run's writer lock for `command` (a context manager): one writer per run directory."""
        return lock.writing(self.path, command)

    # ------------------------------------------------------------------------------------------- manifest
    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def read_manifest(self) -> Manifest:
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise HarnessError(f"{self.manifest_path}: cannot be read: {exc}") from exc
        return Manifest.from_dict(data)

    def write_manifest(self, manifest: Manifest) -> Manifest:
        atomic_write(self.manifest_path, json.dumps(manifest.to_dict(), indent=2, default=str))
        return manifest

    def update_manifest(self, **changes) -> Manifest:
        """Re-reads the manifest and writes it back with `changes` (Manifest fields)."""
        return self.write_manifest(self.read_manifest().with_changes(**changes))

    def record_fit(self, name: str, record) -> Manifest:
        """Keeps `record` as stage `name`'s fit, the stages in the plan's order (`planned`) whatever order they
        finished in (stages run side by side under executor.parallel_stages), so every reader sees one order."""
        manifest = self.read_manifest()
        strategies = {**manifest.strategies, name: record}
        order = {stage: index for index, stage in enumerate(manifest.planned)}
        ranked = sorted(strategies, key=lambda stage: order.get(stage, len(order)))  # stable: the unplanned last
        return self.write_manifest(manifest.with_changes(strategies={stage: strategies[stage] for stage in ranked}))

    # ---------------------------------------------------------------------------------------- held-out set
    def write_heldout(self, items: Sequence, heldout_hash: str) -> None:
        """The held-out items, once, beside the manifest that names their hash."""
        check_same_heldout(heldout_hash, content_hash(items), what=f"{self.path}: the held-out items to store",
                           advice="the dataset changed while the run started")
        frame = pd.DataFrame([(ex.id, ex.text, ex.label, ex.group) for ex in items], columns=HELDOUT_COLUMNS)
        tmp = temporary_sibling(self.path / HELDOUT_FILE)
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, self.path / HELDOUT_FILE)

    def heldout(self) -> pd.DataFrame:
        """The stored held-out items (item_id, text, label, group), checked against the manifest's hash."""
        path = self.path / HELDOUT_FILE
        if not path.is_file():
            raise HarnessError(f"{self.path}: no {HELDOUT_FILE} (a run made before runs stored their items)")
        frame = pd.read_parquet(path)
        items = [_Item(*row) for row in frame[HELDOUT_COLUMNS].itertuples(index=False)]
        check_same_heldout(self.read_manifest().heldout_hash, content_hash(items), what=f"{path}",
                           advice="the stored items were changed after the run")
        return frame

    def _heldout_positions(self) -> dict[str, int] | None:
        """item id -> its place in the stored held-out set; None for a run directory without one."""
        path = self.path / HELDOUT_FILE
        if not path.is_file():
            return None
        ids = pd.read_parquet(path, columns=["item_id"])["item_id"]
        return dict(zip(ids, range(len(ids))))

    def texts(self) -> dict[str, str]:
        frame = self.heldout()
        return dict(zip(frame["item_id"], frame["text"]))

    # -------------------------------------------------------------------------------------------- records
    def records_path(self, strategy: str) -> Path:
        return self.records_dir / f"{strategy}.jsonl"

    def append(self, fh, record: dict) -> None:
        fh.write(json.dumps(record, default=str) + "\n")
        fh.flush()

    def open_records(self, strategy: str):
        self._repair(self.records_path(strategy))
        return open(self.records_path(strategy), "a", encoding="utf-8")

    def done_ids(self, strategy: str, *, errored: bool = True) -> set[str]:
        """Items recorded for `strategy`; with errored=False, only those whose latest record has no error."""
        latest = {rec["item_id"]: bool(rec.get("error")) for rec in self._records(self.records_path(strategy))}
        return {item for item, failed in latest.items() if errored or not failed}

    def _repair(self, path: Path) -> None:
        """Drop a torn last line left by an interrupt mid-write, so appends start on a clean line."""
        if not path.exists():
            return
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            path.write_bytes(data[: data.rfind(b"\n") + 1])

    @staticmethod
    def _records(path: Path) -> Iterator[dict]:
        if not path.exists():
            return
        with open(path, encoding="utf-8") as lines:  # line by line: the file's text is never held whole
            for line in lines:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn final line from an interrupted write: that item was not finished

    def _read_frame(self, paths: Sequence[Path]) -> pd.DataFrame:
        """The records of `paths` as one frame (`_frame`), parsed PARSE_ROWS lines at a time: parsed lines, ten
        times the size of the frame, never hold a whole strategy of a large run."""
        records = (rec for path in paths for rec in self._records(path))
        parts = []
        while rows := list(islice(records, PARSE_ROWS)):
            parts.append(pd.DataFrame(rows, columns=PREDICTION_COLUMNS))
        return _frame(pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PREDICTION_COLUMNS))

    def load_records(self) -> pd.DataFrame:
        """All records, from predictions.parquet when the run finished, else from the streamed JSONL."""
        parquet = self.path / "predictions.parquet"
        if parquet.exists():
            return pd.read_parquet(parquet)
        return self._read_frame(sorted(self.records_dir.glob("*.jsonl")))

    def write_predictions(self, order: list[str]) -> pd.DataFrame:
        """Collects the JSONL records into predictions.parquet: strategies in run order, one row per item, each
        strategy's items in held-out order rather than the order they finished in (which concurrent calls and
        executors change), so the file and every statistic resampled from it are the same however the run ran.
        Parsed one strategy at a time: the parsed lines, far larger than the frame, never hold the whole run."""
        position = self._heldout_positions()
        frames = []
        for strategy in order:
            part = self._read_frame([self.records_path(strategy)])
            if position is not None:
                part = part.iloc[np.argsort(part["item_id"].map(position).to_numpy(dtype=float), kind="stable")]
            frames.append(part)
        frame = pd.concat(frames, ignore_index=True) if frames else self._read_frame([])
        tmp = temporary_sibling(self.path / "predictions.parquet")
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, self.path / "predictions.parquet")
        return frame


class _Item:
    """A stored held-out row in the shape content_hash reads."""

    __slots__ = ("id", "text", "label", "group")

    def __init__(self, item_id, text, label, group) -> None:
        self.id, self.text, self.label = item_id, text, label
        self.group = None if group is None or group != group else group  # NaN from parquet: no group


def _frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (strategy, item): an item's later record (a retried error) replaces its earlier one."""
    frame = frame.drop_duplicates(["strategy", "item_id"], keep="last").reset_index(drop=True)
    frame["extra"] = frame["extra"].map(lambda e: json.dumps(e) if isinstance(e, dict) and e else None)
    return frame
