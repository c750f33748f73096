"""Chaos scenarios about what goes into a run and what comes out of it (the set-up is tests/chaos.py): malformed
inputs, each of which must be one line naming the key, file, row or column, and formula and script payloads in
labels and texts, which must be inert in every output format."""
from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

import pandas as pd

from tests.chaos import PAYLOADS, Commands, config, table
from tests.fake_openai import FakeOpenAIProcess


def hostile_text(tmp: Path, items: int = 40) -> dict:
    """Formula and script payloads as labels and inside texts, through every output: the CSVs, report.md,
    report.html, the SVG charts, summary.pdf, and the gate's JUnit XML and summary."""
    out, cmd = tmp / "out", Commands(tmp)
    data = table(tmp / "data.csv", items, labels=PAYLOADS, payload_texts=True)
    with FakeOpenAIProcess() as server:
        codes = [cmd.run("run", *config(data, out, server.url))[0]]
        server.configure(answer="no idea")  # the candidate gets every item wrong: every item is a broken flip
        codes.append(cmd.run("run", *config(data, out, server.url))[0])
    baseline, candidate = sorted(p for p in out.glob("*/chaos/*") if (p / "manifest.json").is_file())
    codes.append(cmd.run("regress", "--baseline", baseline, "--candidate", candidate)[0])
    unsafe: dict[str, list[int]] = {}  # format -> [files, unsafe cells or tags]
    for path in [p for root in (baseline, candidate) for p in root.rglob("*") if p.is_file()]:
        kind = path.suffix.lstrip(".")
        found = _unsafe(path, kind)
        if found is not None:
            files, bad = unsafe.setdefault(kind, [0, 0])
            unsafe[kind] = [files + 1, bad + found]
    return {"exits": codes, "unsafe": unsafe}


def _unsafe(path: Path, kind: str) -> int | None:
    if kind == "csv":
        with open(path, newline="") as fh:
            return sum(cell[:1] in ("=", "+", "-", "@", "\t", "\r") and not _number(cell)
                       for row in csv.reader(fh) for cell in row)
    if kind in ("html", "md", "svg", "xml"):
        return path.read_text().count("<script>alert")
    if kind == "pdf":
        data = path.read_bytes()
        return data.count(b"/JavaScript") + data.count(b"/JS ")
    return None


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def malformed_inputs(tmp: Path) -> list[dict]:
    """Each malformed input, its exit code, whether the error is one line, and whether it names what is wrong."""
    from harness.cli import main

    data = table(tmp / "data.csv", 20)
    frame = pd.read_csv(data)
    bad_files = {"empty_label.csv": frame.assign(label=frame["label"].where(frame.index != 7, "")),
                 "dup_ids.csv": frame.assign(id=frame["id"].where(frame.index != 9, "c0003")),
                 "empty_text.csv": frame.assign(text=frame["text"].where(frame.index != 11, ""))}
    for name, bad in bad_files.items():
        bad.to_csv(tmp / name, index=False)
    (tmp / "data.xlsx").write_text("not a spreadsheet")
    (tmp / "taxonomy.yaml").write_text("card_arrival: a card on its way\n")
    not_a_run = tmp / "not_a_run"
    not_a_run.mkdir()
    base = config(data, tmp / "out", "http://127.0.0.1:9/v1")
    cases = [  # (arguments, what the one line must name)
        (["run", *base, "seed=abc"], "'seed'"), (["run", *base, "seed=-1"], "'seed'"),
        (["run", *base, "seed=1.5"], "'seed'"), (["run", *base, "max_error_share=2"], "'max_error_share'"),
        (["run", *base, "experiment=nope"], "experiment 'nope'"), (["run", *base, "hardware=nope"], "hardware"),
        (["run", *base, f"dataset.path={tmp / 'missing.csv'}"], "missing.csv"),
        (["run", *base, "dataset.label_column=category"], "'category'"),
        (["run", *base, "dataset.split_column=nope"], "'nope'"),
        (["run", *base, "dataset.heldout_size=abc"], "dataset.heldout_size"),
        (["run", *base, "dataset.heldout_size=-3"], "dataset.heldout_size"),
        (["run", *base, "dataset.split_column=false", "dataset.heldout_fraction=1.5"], "dataset.heldout_fraction"),
        (["run", *base, f"dataset.path={tmp / 'empty_label.csv'}"], "row 8"),
        (["run", *base, f"dataset.path={tmp / 'dup_ids.csv'}"], "'c0003'"),
        (["run", *base, f"dataset.path={tmp / 'empty_text.csv'}"], "row 12"),
        (["run", *base, f"dataset.path={tmp / 'data.xlsx'}"], "data.xlsx"),
        (["run", *base, f"dataset.taxonomy={tmp / 'taxonomy.yaml'}"], "taxonomy.yaml"),
        (["run", *base, "dataset.task.item=[1]"], "dataset.task.item"),
        (["run", *base, "strategies.zero_shot.output_mode=nope"], "output_mode"),
        (["run", *base, "strategies.zero_shot.user_template='{{ text '"], "user_template"),
        (["run", *base, "model.price.mode=nope"], "price.mode"),
        (["run", *base, "model.api_key_env=HARNESS_CHAOS_UNSET"], "HARNESS_CHAOS_UNSET"),
        (["run", *base, "llm.timeout_s=-1"], "'llm.timeout_s'"),
        (["run", *base, "model.client.max_concurrency=0"], "'model.client.max_concurrency'"),
        (["run", *base, "+strategy@strategies.x=rga"], "strategy 'rga'"),
        (["report", str(not_a_run)], "not a run directory"),
        (["resume", str(not_a_run)], "not a run directory"),
        (["compare", str(not_a_run), str(not_a_run)], "not a run directory"),
        (["regress", "--baseline", "nope"], "baseline 'nope'"),
        (["baseline", "save", str(not_a_run), "../escape"], "baseline name"),
    ]
    results = []
    for args, names in cases:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(args)
        lines = [line for line in err.getvalue().splitlines() if line.startswith("error: ")]
        shown = " ".join(args[len(base) + 1:] if args[0] == "run" else args).replace(f"{tmp}/", "")
        results.append({"case": shown, "exit": code, "one_line": len(lines) == 1,
                        "names_it": bool(lines) and names in lines[0],
                        "line": lines[0] if lines else err.getvalue()[-200:]})
    return results
