"""Sentence embeddings and nearest-neighbour search, shared by embed_* strategies, RAG and dynamic few-shot."""
from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from harness import modelfiles

STORE_FILE = "embeddings.sqlite3"


class EmbeddingStore:
    """Embeddings on disk across runs: one SQLite file, rows keyed by sha256 of the model's identity (its files'
    hashes) and the text, each with the vector and the seconds its embedding took when it was computed. Safe for
    several processes at once (WAL), opened on first use."""

    def __init__(self, directory: str | Path, identity: str) -> None:
        self.path = Path(directory) / STORE_FILE
        self.identity = identity
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL, "
                             "seconds REAL NOT NULL)")
        return self._db

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_db": None}  # a connection does not cross processes; the copy opens its own

    def key(self, text: str) -> str:
        return hashlib.sha256(f"{self.identity}\n{text}".encode()).hexdigest()

    def get(self, texts: Sequence[str]) -> dict[str, tuple[np.ndarray, float]]:
        found, keys = {}, {self.key(t): t for t in texts}
        names = list(keys)
        for start in range(0, len(names), 500):  # SQLite's bound-parameter limit
            chunk = names[start:start + 500]
            rows = self._connect().execute(f"SELECT key, vector, seconds FROM vectors WHERE key IN "
                                           f"({','.join('?' * len(chunk))})", chunk)
            for key, blob, seconds in rows:
                found[keys[key]] = (np.frombuffer(blob, dtype=np.float32), float(seconds))
        return found

    def put(self, rows: list[tuple[str, np.ndarray, float]]) -> None:
        db = self._connect()
        with db:
            db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                           [(self.key(t), v.astype(np.float32).tobytes(), s) for t, v, s in rows])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class Embedder:
    """A sentence-transformers model with a cache: each distinct text is embedded once per run, and, with
    `cache_dir`, once across runs (a rerun of an experiment does not re-embed its training split). The time each
    embedding took is remembered with it, so a strategy served from a cache still reports (and is charged) the
    true cost of its embeddings. The model itself loads only when some text is not cached."""

    def __init__(self, *, path: str, files: dict[str, str] | None = None, batch_size: int = 64,
                 name: str = "all-MiniLM-L6-v2", cache_dir: str | None = ".cache/embeddings") -> None:
        self.path = path
        self.files = files  # every file of the directory -> its sha256 (harness.modelfiles.verify_dir)
        self.batch_size = batch_size
        self.name = name
        self.cache_dir = cache_dir
        self._model = None
        self._store: EmbeddingStore | None = None
        self._vectors: dict[str, np.ndarray] = {}
        self._seconds: dict[str, float] = {}
        self.from_disk = 0  # texts served from the on-disk cache
        self.computed = 0  # texts embedded by the model

    def __getstate__(self) -> dict:
        """A copy for another process (a Ray worker): without the model (it loads there when a text is not
        cached), the cache connection, and this process's vectors (the worker embeds only its own items)."""
        return {**self.__dict__, "_model": None, "_vectors": {}, "_seconds": {}, "from_disk": 0, "computed": 0}

    def store(self) -> EmbeddingStore | None:
        if self._store is None and self.cache_dir is not None:
            root = modelfiles.resolve(self.path)
            # The pinned hashes name the model exactly; an unpinned directory is hashed as it is.
            files = self.files if self.files is not None else modelfiles.hash_dir(root)
            identity = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
            self._store = EmbeddingStore(self.cache_dir, identity)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    @property
    def model(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            root = modelfiles.verify_dir(modelfiles.resolve(self.path), self.files, key="embedder.files")
            self._model = SentenceTransformer(str(root), device="cpu", local_files_only=True)
        return self._model

    def encode(self, texts: Sequence[str], *, desc: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Unit-norm vectors (n, d) and the measured seconds each text's embedding took (n,). A progress bar
        shows only with `desc` (fit-time work), never inside the runner's own bar of predicted items."""
        import time

        todo = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        store = self.store() if todo else None
        if store is not None:
            hits = store.get(todo)
            for text, (vector, seconds) in hits.items():
                self._vectors[text], self._seconds[text] = vector, seconds
            self.from_disk += len(hits)
            todo = [t for t in todo if t not in hits]
        batches = range(0, len(todo), self.batch_size)
        for start in tqdm(batches, desc=desc, unit="batch", leave=False,
                          disable=desc is None or len(todo) < 4 * self.batch_size):
            batch = todo[start:start + self.batch_size]
            t0 = time.perf_counter()
            vecs = self.model.encode(batch, batch_size=self.batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
            per_text = (time.perf_counter() - t0) / len(batch)
            for text, vec in zip(batch, vecs):
                self._vectors[text] = vec.astype(np.float32)
                self._seconds[text] = per_text
            if store is not None:
                store.put([(text, self._vectors[text], per_text) for text in batch])
            self.computed += len(batch)
        vectors = np.stack([self._vectors[t] for t in texts]) if texts else np.zeros((0, 0), np.float32)
        return vectors, np.array([self._seconds[t] for t in texts])


def nearest(queries: np.ndarray, index: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k cosine neighbours of unit-norm `queries` in unit-norm `index`: (indices, similarities), best first."""
    k = min(k, len(index))
    sims = queries @ index.T
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top_sims = np.take_along_axis(sims, top, axis=1)
    order = np.argsort(-top_sims, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_sims, order, axis=1)
