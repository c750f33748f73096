"""Chaos scenarios: runs against the fake OpenAI-compatible server (tests/fake_openai.py, in its own process,
counting requests) killed, doubled, faulted, refused, fed malformed input and hostile text, and gated while
another process loads the machine (malformed inputs and hostile text: tests/chaos_inputs.py). Each scenario
returns its measured figures; tests/test_chaos.py asserts them and bench/chaos.py prints them in one table.

The run: zero-shot on `model=openai_compatible` pointed at the server, on a generated table whose texts end with
"Answer: <label>" (what the fake server answers), with the response cache off, so every answer the run needs is
a request the server counts. Commands run as `python -m harness.cli ...` subprocesses, each in its own session,
so that what a killed run leaves behind can be counted."""
from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from tests.fake_openai import FakeOpenAIProcess

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("card_arrival", "lost_card", "top_up", "refund", "fees")
# OWASP's formula starts and a script tag, as labels and inside texts
PAYLOADS = ('=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "<script>alert(1)</script>")
CANARY_ENV = "HARNESS_CHAOS_KEY"
ITEM = re.compile(r"Item (c\d{4})")


# ---------------------------------------------------------------------------------------------- the set-up


def table(path: Path, n_heldout: int = 200, labels=LABELS, *, payload_texts: bool = False) -> Path:
    """10 training rows per label and `n_heldout` held-out rows, each text naming its item and its answer."""
    rows = []
    for i in range(len(labels) * 10 + n_heldout):
        label = labels[i % len(labels)]
        hostile = f" {PAYLOADS[i % len(PAYLOADS)]}" if payload_texts else ""
        rows.append({"id": f"c{i:04d}", "text": f"Item c{i:04d}{hostile} about {label}.\nAnswer: {label}",
                     "label": label, "split": "train" if i < len(labels) * 10 else "test"})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def config(data: Path, out: Path, url: str, *extra: str, timeout_s: float = 5) -> list[str]:
    return ["~experiment", "+strategy@strategies.zero_shot=zero_shot", "dataset=table", f"dataset.path={data}",
            "dataset.split_column=split", "dataset.id_column=id", "model=openai_compatible", "model.name=fake",
            "model.litellm_model=openai/fake", f"model.api_base={url}", "model.client.max_concurrency=2",
            "llm.cache_dir=null", "llm.backoff_s=0.05", f"llm.timeout_s={timeout_s}", f"output_dir={out}",
            "experiment_name=chaos", *extra]


class Commands:
    """`harness` subprocesses, each with its stderr in logs/<n>.log."""

    def __init__(self, tmp: Path, env: dict | None = None) -> None:
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "HARNESS_BASELINES": str(tmp / "baselines"), **(env or {})}
        self.count = 0

    def start(self, *args: str) -> subprocess.Popen:
        self.count += 1
        log = open(self.logs / f"{self.count:03d}-{args[0]}.log", "w")
        process = subprocess.Popen([sys.executable, "-m", "harness.cli", *map(str, args)], cwd=ROOT, env=self.env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        process.log_path = Path(log.name)
        log.close()
        return process

    def run(self, *args: str, timeout: float = 300) -> tuple[int, str]:
        process = self.start(*args)
        process.wait(timeout)
        return process.returncode, process.log_path.read_text()

    def texts(self) -> str:
        return "\n".join(path.read_text() for path in sorted(self.logs.glob("*.log")))


def run_dir(out: Path) -> Path | None:
    found = sorted(p for p in out.glob("*/chaos/*") if (p / "manifest.json").is_file())
    return found[-1] if found else None


def recorded(rundir: Path) -> set[str]:
    ids = set()
    for path in (rundir / "records").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                ids.add(json.loads(line)["item_id"])
    return ids


def status(rundir: Path) -> str:
    return json.loads((rundir / "manifest.json").read_text())["status"]


def kill(process: subprocess.Popen, within_s: float = 10.0) -> float:
    """SIGKILLs the harness process alone (as the OOM killer or a CI runner would); returns the seconds until
    nothing it started is left alive (its LLM workers, their forkserver)."""
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    started = time.monotonic()
    while session_alive(process.pid) and time.monotonic() - started < within_s:
        time.sleep(0.05)
    left = time.monotonic() - started
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # whatever outlived that, so no test leaves it behind
    return left


def session_alive(session: int) -> bool:
    """Whether a process of that session (a command started by Commands) is still running."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == session and fields[0] != "Z":  # fields: state, ppid, pgrp, session
                return True
    return False


def _wait_for(condition, timeout: float, process: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process is not None and process.poll() is not None:
            return condition()
        time.sleep(0.05)
    return False


# ----------------------------------------------------------------------------------------------- scenarios


def kills_and_resumes(tmp: Path, *, kills: int = 10, items: int = 240, seed: int = 0) -> dict:
    """SIGKILL at random moments, `harness resume` after each, until the run completes."""
    rng = random.Random(seed)
    out, cmd = tmp / "out", Commands(tmp)
    with FakeOpenAIProcess(latency_s=0.25) as server:
        process = cmd.start("run", *config(table(tmp / "data.csv", items), out, server.url))
        _wait_for(lambda: run_dir(out) and len(recorded(run_dir(out))) >= 5, 120, process)
        time.sleep(rng.uniform(0, 1))
        snapshots, exit_s, done = [], [], 0
        while True:
            if process.poll() is None and len(snapshots) < kills:
                exit_s.append(kill(process))
                snapshots.append((len(server.prompts()), recorded(run_dir(out))))
            else:
                process.wait(300)
                done = process.returncode
                if done != 0 or status(run_dir(out)) == "complete":
                    break
            process = cmd.start("resume", run_dir(out))
            if len(snapshots) < kills:
                # A third of the kills during start-up, the others while calls are answered (or later: while
                # the report is written, when no item is left).
                if rng.random() < 1 / 3:
                    _wait_for(lambda: False, rng.uniform(0.5, 3.0), process)
                else:
                    asked = server.stats()["requests"]
                    _wait_for(lambda: server.stats()["requests"] > asked, 120, process)
                    _wait_for(lambda: False, rng.uniform(0.0, 2.0), process)
        prompts = server.prompts()
    rundir = run_dir(out)
    frame = pd.read_parquet(rundir / "predictions.parquet")
    asked = [match.group(1) for match in map(ITEM.search, prompts)]
    repeats = 0
    for (start, before), end in zip(snapshots, [s for s, _ in snapshots[1:]] + [len(asked)]):
        repeats += sum(item in before for item in asked[start:end])
    ever = set().union(*(ids for _, ids in snapshots))
    lines = [json.loads(line)["item_id"] for line in (rundir / "records" / "zero_shot.jsonl").read_text().splitlines()]
    return {"kills": len(snapshots), "items": items, "exit": done, "status": status(rundir),
            "lost_records": len((ever | _heldout(rundir)) - set(frame["item_id"])),
            # rows of one item in predictions.parquet, and record lines of one item (a record written twice)
            "duplicate_rows": int(frame.duplicated(["strategy", "item_id"]).sum()) + len(lines) - len(set(lines)),
            "repeat_calls": repeats, "requests": len(asked), "max_exit_s": max(exit_s),
            "tracebacks": cmd.texts().count("Traceback")}


def concurrent_resumes(tmp: Path, items: int = 200) -> dict:
    """Two `harness resume` of one interrupted run at the same moment."""
    out, cmd = tmp / "out", Commands(tmp)
    with FakeOpenAIProcess(latency_s=0.1) as server:
        process = cmd.start("run", *config(table(tmp / "data.csv", items), out, server.url))
        _wait_for(lambda: run_dir(out) and len(recorded(run_dir(out))) >= items // 4, 120, process)
        kill(process)
        rundir = run_dir(out)
        before = len(recorded(rundir))
        server.reset()
        both = [cmd.start("resume", rundir) for _ in range(2)]
        for process in both:
            process.wait(300)
        requests = server.stats()["requests"]
    logs = [process.log_path.read_text() for process in both]
    refused = [log for process, log in zip(both, logs) if process.returncode == 2]
    frame = pd.read_parquet(rundir / "predictions.parquet")
    return {"exits": sorted(process.returncode for process in both), "extra_paid_calls": requests - (items - before),
            "refusal": refused[0].strip().splitlines()[-1] if refused else "", "rows": len(frame),
            "record_lines": sum(len(p.read_text().splitlines()) for p in (rundir / "records").glob("*.jsonl"))}


FINISH_SLOWLY = """import sys, time
from harness.config import compose
from harness.run.runner import run

def finish(path):
    print("FINISHING", flush=True)
    time.sleep(600)

run(compose(sys.argv[1:]), finish=finish)
"""


def kill_while_finishing(tmp: Path, items: int = 40) -> dict:
    """Killed after the status says "finishing" and before the report exists: nothing may take that run for a
    complete one, and `harness resume` completes it without a call."""
    out, cmd = tmp / "out", Commands(tmp)
    data = table(tmp / "data.csv", items)
    with FakeOpenAIProcess() as server:
        cmd.run("run", *config(data, tmp / "complete", server.url))
        complete = run_dir(tmp / "complete")
        log = open(tmp / "logs" / "finishing.log", "w")
        process = subprocess.Popen([sys.executable, "-c", FINISH_SLOWLY, *config(data, out, server.url)], cwd=ROOT,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for(lambda: "FINISHING" in (tmp / "logs" / "finishing.log").read_text(), 120, process)
        kill(process)
        killed = run_dir(out)
        from harness.run.state import run_state

        figures = {"status": status(killed), "shown_as": run_state(killed).display,
                   "report_exists": (killed / "results.csv").exists()}
        refusals = {"baseline save": ("baseline", "save", killed, "killed"),
                    "regress --candidate": ("regress", "--baseline", complete, "--candidate", killed),
                    "regress --baseline": ("regress", "--baseline", killed, "--candidate", complete),
                    "compare": ("compare", complete, killed, "--output-dir", tmp / "compared")}
        figures["refused"] = {name: cmd.run(*args)[0] for name, args in refusals.items()}
        server.reset()
        figures["resume_exit"] = cmd.run("resume", killed)[0]
        figures["resume_requests"] = server.stats()["requests"]
    figures.update(status_after=status(killed), report_after=(killed / "results.csv").exists(),
                   compare_after=cmd.run(*refusals["compare"])[0])
    return figures


def mixed_faults(tmp: Path, items: int = 200, share: float = 0.2, seed: int = 0) -> dict:
    """429 with Retry-After, 500, a hang past the timeout, a malformed body and a final 422, mixed into 20% of
    the requests; then `harness resume --retry-errors`."""
    kinds = ("429", "500", "hang", "malformed", "422")
    faulty = random.Random(seed).sample(range(items), round(share * items))
    faults = ["ok"] * items
    for number, index in enumerate(faulty):
        faults[index] = kinds[number % len(kinds)]
    out, cmd = tmp / "out", Commands(tmp)
    with FakeOpenAIProcess(faults=faults, hang_s=3.0, retry_after_s=0.1) as server:
        code, _ = cmd.run("run", *config(table(tmp / "data.csv", items), out, server.url, timeout_s=1))
        rundir = run_dir(out)
        frame = pd.read_parquet(rundir / "predictions.parquet")
        errored = int(frame["error"].notna().sum())
        server.reset()
        retry_code, _ = cmd.run("resume", "--retry-errors", rundir)
        retried = server.stats()["requests"]
    after = pd.read_parquet(rundir / "predictions.parquet")
    return {"items": items, "faults": sum(f != "ok" for f in faults), "exit": code,
            "predicted": int(frame["pred"].notna().sum()), "errored": errored,
            "unaccounted": items - int((frame["pred"].notna() | frame["error"].notna()).sum()),
            "retry_exit": retry_code, "retried_requests": retried,
            "errors_after_retry": int(after["error"].notna().sum()),
            "rows_after_retry": len(after)}


def all_unauthorised(tmp: Path, items: int = 60) -> dict:
    """Every request answered 401 (a revoked key), the key being a canary that must appear in no output."""
    canary = f"sk-canary-{random.Random().getrandbits(64):016x}"
    out, cmd = tmp / "out", Commands(tmp, env={CANARY_ENV: canary})
    with FakeOpenAIProcess(faults=["401"] * (2 * items)) as server:
        code, log = cmd.run("run", *config(table(tmp / "data.csv", items), out, server.url,
                                           f"model.api_key_env={CANARY_ENV}"))
        rundir = run_dir(out)
        figures = {"exit": code, "message": log.strip().splitlines()[-1], "status": status(rundir),
                   "records": len(pd.read_parquet(rundir / "predictions.parquet"))}
        server.configure()
        server.reset()
        figures["retry_exit"] = cmd.run("resume", "--retry-errors", rundir)[0]
        figures["retried_requests"] = server.stats()["requests"]
    figures["status_after"] = status(rundir)
    manifest = (rundir / "manifest.json").read_bytes()
    again, log = cmd.run("resume", rundir)
    figures.update(again_exit=again, again_line=log.strip(), manifest_unchanged=manifest == (
        rundir / "manifest.json").read_bytes(), canary_hits=canary_hits(canary, [rundir, cmd.logs]))
    return figures


def canary_hits(canary: str, roots: list[Path]) -> int:
    """Occurrences of the key in every file under `roots` (run directory, logs)."""
    needle = canary.encode()
    return sum(path.read_bytes().count(needle) for root in roots for path in root.rglob("*") if path.is_file())


def gate_under_load(tmp: Path, items: int = 120, loaders: int = 2) -> dict:
    """A baseline saved on a quiet machine; the identical candidate gated while busy processes load every core."""
    out, cmd = tmp / "out", Commands(tmp)
    with FakeOpenAIProcess(latency_s=0.05) as server:
        cmd.run("run", *config(table(tmp / "data.csv", items), out, server.url))
        base_dir = run_dir(out)
        cmd.run("baseline", "save", base_dir, "chaos-base")
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
                for _ in range(loaders)]
        try:
            time.sleep(2)
            code, log = cmd.run("regress", "--baseline", "chaos-base")
            load = os.getloadavg()[0]
        finally:
            for process in busy:
                process.kill()
                process.wait()
    cand_dir = run_dir(out)
    p95 = [pd.read_parquet(d / "predictions.parquet")["latency_ms"].quantile(0.95) for d in (base_dir, cand_dir)]
    return {"exit": code, "verdicts": [line for line in log.splitlines() if line[:5] in ("PASS ", "FAIL ")],
            "load_1min": load, "raw_p95_change_pct": 100.0 * (p95[1] - p95[0]) / p95[0],
            "junit": (cand_dir / "regress" / "junit.xml").read_text()}


def _heldout(rundir: Path) -> set[str]:
    return set(pd.read_parquet(rundir / "heldout.parquet")["item_id"])
