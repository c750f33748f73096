"""The persistent response cache: one SQLite file, safe for several processes at once, keyed by a sha256 of
everything that changes a model's answer. Only successful completions are stored."""
from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from harness.llm.base import Completion

FILE_NAME = "responses.sqlite3"
_SCHEMA = """CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY, text TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    latency_ms REAL NOT NULL, cost_usd REAL NOT NULL, created_at REAL NOT NULL, logprobs TEXT)"""


def cache_key(*, identity: str, messages: list[dict[str, Any]], temperature: float, max_tokens: int,
              extra: dict[str, Any], sample: int = 0) -> str:
    """sha256 of the answer-changing inputs. `identity` names the model and where it is served
    (LLMClient.identity; never an API key). Non-JSON values in `extra` (e.g. a schema class) count by their
    text. Repeated samples of one prompt get keys of their own; the first (sample 0) keeps the key a single
    call has always had, so existing caches stay valid."""
    inputs = {"model": identity, "messages": messages, "temperature": float(temperature),
              "max_tokens": int(max_tokens), "extra": extra}
    if sample:
        inputs["sample"] = int(sample)
    payload = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ResponseCache:
    """Opened lazily, so constructing a client touches no disk."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / FILE_NAME
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # WAL lets readers and one writer in other processes work at once; NORMAL sync keeps a commit
            # cheap (a crash can lose the last answers, never corrupt the file).
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            try:  # a cache file from before token log-probabilities were kept
                self._db.execute("ALTER TABLE responses ADD COLUMN logprobs TEXT")
            except sqlite3.OperationalError:
                pass  # the column is there
        return self._db

    def get(self, key: str) -> Completion | None:
        """The stored answer flagged as cached, with nothing spent this time; None when absent."""
        row = self._connect().execute(
            "SELECT text, prompt_tokens, completion_tokens, latency_ms, cost_usd, logprobs FROM responses "
            "WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        text, prompt_tokens, completion_tokens, latency_ms, cost_usd, logprobs = row
        return Completion(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          latency_ms=latency_ms, cost_usd=cost_usd, spent_usd=0.0, cached=True, attempts=0,
                          logprobs=None if logprobs is None else json.loads(logprobs))

    def put(self, key: str, completion: Completion) -> None:
        if completion.error is not None:
            return
        self._connect().execute(
            "INSERT OR REPLACE INTO responses (key, text, prompt_tokens, completion_tokens, latency_ms, cost_usd, "
            "created_at, logprobs) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key, completion.text, completion.prompt_tokens, completion.completion_tokens, completion.latency_ms,
             completion.cost_usd, time.time(),
             None if completion.logprobs is None else json.dumps(completion.logprobs)))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
