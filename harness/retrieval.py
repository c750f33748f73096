"""Sentence embeddings and nearest-neighbour search, shared by embed_* strategies, RAG and dynamic few-shot."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from harness import modelfiles


class Embedder:
    """A sentence-transformers model with a per-run cache: each distinct text is embedded once, and the time
    it took is remembered, so a strategy served from the cache still reports the true cost of its embeddings."""

    def __init__(self, *, path: str, weights_file: str = "model.safetensors", sha256: str | None = None,
                 batch_size: int = 64, name: str = "all-MiniLM-L6-v2") -> None:
        self.path = path
        self.weights_file = weights_file
        self.sha256 = sha256
        self.batch_size = batch_size
        self.name = name
        self._model = None
        self._vectors: dict[str, np.ndarray] = {}
        self._seconds: dict[str, float] = {}

    @property
    def model(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            root = modelfiles.resolve(self.path)
            modelfiles.verify(root / self.weights_file, self.sha256)
            self._model = SentenceTransformer(str(root), device="cpu", local_files_only=True)
        return self._model

    def encode(self, texts: Sequence[str], *, desc: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Unit-norm vectors (n, d) and the measured seconds each text's embedding took (n,). A progress bar
        shows only with `desc` (fit-time work), never inside the runner's own bar of predicted items."""
        import time

        todo = list(dict.fromkeys(t for t in texts if t not in self._vectors))
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
