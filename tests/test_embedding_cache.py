"""Embeddings kept on disk across runs: a second embedder of the same model reads what the first computed, loads
no model, and still reports the seconds each embedding took."""
from __future__ import annotations

import numpy as np

from harness.config import compose, instantiate


def _embedder(cache_dir):
    return instantiate(compose([f"embedder.cache_dir={cache_dir}"]).embedder)


def test_a_second_embedder_reads_the_first_ones_vectors_without_loading_the_model(tmp_path):
    texts = ["where is my card", "how do I top up", "my transfer failed", "where is my card"]
    first = _embedder(tmp_path)
    vectors, seconds = first.encode(texts)
    assert first.computed == 3 and first.from_disk == 0
    first.close()
    second = _embedder(tmp_path)
    again, again_seconds = second.encode(texts)
    assert second.from_disk == 3 and second.computed == 0 and second._model is None
    assert np.array_equal(vectors, again) and np.array_equal(seconds, again_seconds) and (seconds > 0).all()
    second.encode(["a text never seen"])  # a new text is embedded, by the model, and stored
    assert second.computed == 1 and second._model is not None
    second.close()


def test_another_model_never_reads_this_ones_vectors(tmp_path):
    texts = ["where is my card"]
    first = _embedder(tmp_path)
    first.encode(texts)
    first.close()
    other = _embedder(tmp_path)
    other.files = {**other.files, "vocab.txt": "0" * 64}  # another model's files (never loaded here)
    assert other.store().get(texts) == {}
