"""The run directory: records streamed as they arrive, read back, resumed; the manifest; atomic writes.

Layout (the contract users, reports and the regression gate depend on):
    reports/<experiment>/<timestamp>/
        manifest.json          what ran: resolved config, held-out hash, versions, commit, prices, timings, status
        config.yaml            the resolved config (what `harness resume` re-runs)
        records/<strategy>.jsonl   one line per finished item, appended and flushed as each completes
        predictions.parquet    all records, one row per strategy x item (written when the run completes)
        results.csv, per_class.csv, report.md   derived from the records alone
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError

PREDICTION_COLUMNS = ["strategy", "item_id", "gold", "pred", "correct", "latency_ms", "prompt_tokens",
                      "completion_tokens", "cost_usd", "spent_usd", "cached", "error", "raw", "extra"]


def atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.records_dir = self.path / "records"

    @classmethod
    def create(cls, root: Path, experiment: str) -> "RunDir":
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d_%H-%M-%S")
        path = Path(root) / experiment / stamp
        suffix = 1
        while path.exists():  # two runs in the same second
            path = Path(root) / experiment / f"{stamp}_{suffix}"
            suffix += 1
        (path / "records").mkdir(parents=True)
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> "RunDir":
        run = cls(path)
        if not (run.path / "manifest.json").is_file():
            raise HarnessError(f"{run.path}: not a run directory (no manifest.json)")
        return run

    # ------------------------------------------------------------------------------------------- manifest
    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def read_manifest(self) -> dict:
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise HarnessError(f"{self.manifest_path}: cannot be read: {exc}") from exc

    def write_manifest(self, manifest: dict) -> None:
        atomic_write(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=False, default=str))

    def update_manifest(self, **changes) -> dict:
        manifest = self.read_manifest() if self.manifest_path.exists() else {}
        manifest.update(changes)
        self.write_manifest(manifest)
        return manifest

    # -------------------------------------------------------------------------------------------- records
    def records_path(self, strategy: str) -> Path:
        return self.records_dir / f"{strategy}.jsonl"

    def append(self, fh, record: dict) -> None:
        fh.write(json.dumps(record, default=str) + "\n")
        fh.flush()

    def open_records(self, strategy: str):
        self._repair(self.records_path(strategy))
        return open(self.records_path(strategy), "a", encoding="utf-8")

    def done_ids(self, strategy: str) -> set[str]:
        return {rec["item_id"] for rec in self._read_jsonl(self.records_path(strategy))}

    def _repair(self, path: Path) -> None:
        """Drop a torn last line left by an interrupt mid-write, so appends start on a clean line."""
        if not path.exists():
            return
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            path.write_bytes(data[: data.rfind(b"\n") + 1])

    @staticmethod
    def _read_jsonl(path: Path) -> list[dict]:
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn final line from an interrupted write: that item was not finished
        return out

    def load_records(self) -> pd.DataFrame:
        """All records, from predictions.parquet when the run finished, else from the streamed JSONL."""
        parquet = self.path / "predictions.parquet"
        if parquet.exists():
            return pd.read_parquet(parquet)
        return _frame([rec for path in sorted(self.records_dir.glob("*.jsonl")) for rec in self._read_jsonl(path)])

    def write_predictions(self, order: list[str]) -> pd.DataFrame:
        """Collects the JSONL records into predictions.parquet, strategies in run order."""
        rows = []
        for strategy in order:
            rows.extend(self._read_jsonl(self.records_path(strategy)))
        frame = _frame(rows)
        tmp = self.path / "predictions.parquet.tmp"
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, self.path / "predictions.parquet")
        return frame


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=PREDICTION_COLUMNS)
    frame["extra"] = frame["extra"].map(lambda e: json.dumps(e) if isinstance(e, dict) and e else None)
    return frame
