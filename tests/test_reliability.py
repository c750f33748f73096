"""Reliability you can quote: one writer per run directory, statuses that mean what they say, failed calls that
are not results, safe CSVs and model files, one-line errors naming the key, and LLM workers that die quietly
with a killed run. The end-to-end versions, against the fake server in its own process, are tests/test_chaos.py."""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.config import compose, instantiate
from harness.errors import HarnessError
from harness.files import write_csv
from harness.run import lock
from harness.run.directory import RunDir
from harness.run.state import GONE, run_state
from tests.chaos import kill
from tests.conftest import tiny_overrides
from tests.fake_openai import FakeOpenAI
from tests.runs import ITEMS, outcomes, write_run

ROOT = Path(__file__).resolve().parents[1]
HOLD = """import sys, time
from harness.run import lock
with lock.writing(sys.argv[1], sys.argv[2]):
    print("HOLDING", flush=True)
    time.sleep(120)
"""


def hold(path: Path, command: str = "run") -> subprocess.Popen:
    """Another process writing the run: it holds the lock until killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(path), command], cwd=ROOT, stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "HOLDING"
    return process


def constructed(tmp_path, *, status="complete", n=200, errors=0, name="zero_shot") -> Path:
    """A constructed run of one prompted strategy: `n` of the 200 planned items recorded, `errors` of them
    failed (401 the commonest error, then a 429)."""
    preds = outcomes(ITEMS, 20)[:n]
    run = write_run(tmp_path / "runs", {name: {"family": "prompted", "pred": preds}}, ITEMS, status=status)
    if errors:
        frame = pd.read_parquet(run / "predictions.parquet")
        failed = ["after 1 attempt(s): AuthenticationError: 401"] * (errors - 1) + ["after 5 attempt(s): 429"]
        frame.loc[: errors - 1, ["pred", "correct"]] = [None, False]
        frame.loc[: errors - 1, "error"] = failed
        frame.to_parquet(run / "predictions.parquet", index=False)
    return run


# ------------------------------------------------------------------------------------- one writer per run


def test_a_second_writer_is_refused_with_one_line_naming_the_holder(tmp_path, capsys):
    run = constructed(tmp_path)
    holder = hold(run, "resume")
    try:
        with pytest.raises(HarnessError, match="is writing this run"), lock.writing(run, "run"):
            pass
        assert main(["report", str(run)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"error: {run.resolve()}: PID {holder.pid} (harness resume) is writing this run; wait for it "
                       f"to finish or stop it (kill {holder.pid}), then try again")
        assert not (run / "results.csv").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_writers_lock_is_taken_over_and_the_run_reads_process_gone(tmp_path, caplog):
    run = constructed(tmp_path, status="running", n=100)
    holder = hold(run)
    assert run_state(run).display == "running" and run_state(run).holder_pid == holder.pid
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    state = run_state(run)
    assert (state.display, state.holder_pid, state.recorded, state.planned) == (GONE, None, 100, 200)
    assert state.describe() == "interrupted (process gone): 100 of 200 items recorded (50%)"
    with caplog.at_level(logging.WARNING, logger="harness.run.lock"), lock.writing(run, "resume"):
        assert lock.holder(run).is_self
    assert f"its last writer (PID {holder.pid}, harness run) was killed; taking over" in caplog.text
    assert (run / lock.LOCK_FILE).read_text() == ""  # released cleanly: nothing for the next writer to take over


def test_a_run_finishing_in_this_process_reads_complete_and_a_report_on_a_dead_run_does_not(tmp_path):
    run = constructed(tmp_path, status="finishing")
    with lock.writing(run, "run"):  # the runner, building its own report
        assert run_state(run).complete
    with lock.writing(run, "report"):  # `harness report` on a run whose process died while finishing
        assert run_state(run).display == GONE
    assert run_state(constructed(tmp_path, status="failed")).display == "failed"


def test_error_shares_and_the_commonest_error(tmp_path):
    state = run_state(constructed(tmp_path, errors=120))
    (strategy,) = state.strategies.values()
    assert (strategy.errors, strategy.recorded, strategy.error_share) == (120, 200, 0.6)
    # the attempt count is not part of the error: one cause, however often it was retried
    assert (strategy.commonest_error, strategy.commonest_error_count) == ("AuthenticationError: 401", 119)


def test_compare_refuses_a_partial_run(tmp_path):
    from harness.report.compare import compare

    complete, partial = constructed(tmp_path), constructed(tmp_path, status="running", n=100)
    with pytest.raises(HarnessError, match=rf"compare: {re.escape(str(partial))} is interrupted \(process gone\): "
                                           r"100 of 200 items recorded \(50%\); compare merges complete runs only"):
        compare([complete, partial], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_gate_and_baseline_save_refuse_a_candidate_that_is_not_complete(tmp_path):
    from harness.gate import baselines
    from harness.gate.check import Policy, compare

    finishing = constructed(tmp_path, status="finishing")
    policy = Policy.from_config(compose([]).gate)
    with pytest.raises(HarnessError, match="the candidate run is interrupted \\(process gone\\): 200 of 200 items"):
        compare(baselines.from_run(constructed(tmp_path)), RunDir.open(finishing), policy)
    with pytest.raises(HarnessError, match="run status is 'interrupted \\(process gone\\)' \\(200 of 200 items "
                                           "recorded\\), not 'complete'"):
        baselines.from_run(finishing)


def test_every_output_of_a_partial_run_says_so_first(tmp_path, capsys):
    run = constructed(tmp_path, status="running", n=100)  # its process is gone: no one holds the lock
    assert main(["report", str(run)]) == 0
    assert "is interrupted (process gone) (items recorded: zero_shot 50%)" in capsys.readouterr().err
    results = pd.read_csv(run / "results.csv")
    assert set(results["run_status"]) == {GONE} and results["coverage"].tolist() == [0.5]
    line = "interrupted (process gone): 100 of 200 items recorded (50%)"
    md = (run / "report.md").read_text()
    assert f"Run status: {line}." in md and f"> **Partial run: {line}." in md
    assert f"Partial run ({line}): this recommendation is provisional." in md.split("## Recommendation")[1]
    html = (run / "report.html").read_text()
    assert '<p id="partial" class="banner">Partial run: interrupted (process gone)' in html
    from harness.report import analysis, pdf, pricing
    from harness.run.state import run_state

    rundir = RunDir.open(run)
    a = analysis.analyse(rundir.read_manifest(), rundir.load_records(), pricing.resolve(rundir.read_manifest()),
                         state=run_state(rundir))
    page_text = [t.get_text() for sub in pdf.page(a).subfigs for t in sub.texts]
    assert any(text.startswith("Partial run: interrupted") for text in page_text)
    assert f"Run {line}" in page_text


def test_a_complete_run_has_no_banner_and_full_coverage(tmp_path):
    from harness.report import build

    run = constructed(tmp_path)
    assert build(run)["coverage"].tolist() == [1.0]
    assert "Partial run" not in (run / "report.md").read_text()
    assert 'id="partial"' not in (run / "report.html").read_text()


def test_the_report_never_recommends_a_strategy_whose_items_mostly_failed(tmp_path):
    from harness.report import build

    preds = outcomes(ITEMS, 20)
    broken = [None] * 150 + preds[150:]  # 150 of 200 failed: the rest all right, so it would rank first
    run = write_run(tmp_path / "runs", {"broken": {"family": "prompted", "pred": broken, "error": None},
                                        "steady": {"family": "trained", "pred": outcomes(ITEMS, 60)}}, ITEMS)
    frame = pd.read_parquet(run / "predictions.parquet")
    failed = (frame["strategy"] == "broken") & frame["pred"].isna()
    frame.loc[failed, "error"] = "after 1 attempt(s): AuthenticationError: 401"
    frame.to_parquet(run / "predictions.parquet", index=False)
    build(run)
    md = (run / "report.md").read_text()
    assert ("broken is no option: 150 of 200 items failed (75%, above max_error_share 0.5); commonest error "
            "(150x): AuthenticationError: 401") in md
    recommendation = md.split("## Recommendation")[1].split("Charts, per-class")[0]
    assert "steady" in recommendation and "Adopt broken" not in recommendation


# ------------------------------------------------------------------------------------------ records, resume


def test_duplicated_record_lines_keep_the_last_and_never_reach_the_parquet(tmp_path):
    rundir = RunDir.create(tmp_path, "x")
    lines = [{"strategy": "s", "item_id": "a", "error": "429"}, {"strategy": "s", "item_id": "b", "pred": "x"},
             {"strategy": "s", "item_id": "a", "pred": "y"}, {"strategy": "s", "item_id": "b", "pred": "x"},
             {"strategy": "s", "item_id": "c", "error": "500"}]
    (rundir.records_dir / "s.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    frame = rundir.write_predictions(["s"])
    assert list(zip(frame["item_id"], frame["pred"].fillna(""))) == [("a", "y"), ("b", "x"), ("c", "")]
    assert rundir.done_ids("s") == {"a", "b", "c"}
    assert rundir.done_ids("s", errored=False) == {"a", "b"}  # what --retry-errors keeps


def tiny_classic(tiny_csv, tmp_path) -> Path:
    from tests.conftest import run

    return run(compose(["experiment=classic", *tiny_overrides(tiny_csv, tmp_path), "~strategies.embed_logreg",
                        "~strategies.embed_knn"]))


def test_resume_of_a_complete_run_says_so_and_changes_nothing(tiny_csv, tmp_path, capsys):
    path = tiny_classic(tiny_csv, tmp_path)
    before = {name: (path / name).read_bytes() for name in ("manifest.json", "results.csv")}
    assert main(["resume", str(path)]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"{path}: already complete: 32 of 32 items recorded (100%); nothing to resume"
    assert {name: (path / name).read_bytes() for name in before} == before


def prompted(tiny_csv, tmp_path, url: str, *extra: str):
    return compose(["~experiment", "+strategy@strategies.zero_shot=zero_shot", *tiny_overrides(tiny_csv, tmp_path),
                    "model=openai_compatible", "model.name=fake", "model.litellm_model=openai/fake",
                    f"model.api_base={url}", "llm.cache_dir=null", "llm.backoff_s=0.01", *extra])


def test_a_run_whose_calls_mostly_fail_fails_and_retry_errors_redoes_only_those(tiny_csv, tmp_path):
    from harness.run.runner import run

    with FakeOpenAI(faults=["401"] * 24) as server:  # 24 of 32 calls refused
        with pytest.raises(HarnessError) as failed:
            run(prompted(tiny_csv, tmp_path, server.url))
        message = str(failed.value)
        path = next(Path(tmp_path, "reports").glob("*/*/*"))
        assert message.startswith("zero_shot: 24 of 32 items failed (75%, above max_error_share 0.5); commonest "
                                  "error (24x): AuthenticationError: ")
        assert message.endswith(f"`harness resume --retry-errors {path}` redoes the failed items")
        assert "\n" not in message
        manifest = RunDir.open(path).read_manifest()
        assert manifest.status == "failed" and len(pd.read_parquet(path / "predictions.parquet")) == 32
        server.reset()
        assert main(["resume", "--retry-errors", str(path)]) == 0
        assert server.stats()["requests"] == 24  # the failed items, and only those
    frame = pd.read_parquet(path / "predictions.parquet")
    assert len(frame) == 32 and frame["error"].isna().all()
    assert RunDir.open(path).read_manifest().status == "complete"


def test_the_error_threshold_is_a_root_key(tiny_csv, tmp_path):
    from harness.run.runner import run

    with FakeOpenAI(faults=["401"] * 24) as server:
        path = run(prompted(tiny_csv, tmp_path, server.url, "max_error_share=0.8"))  # 75% is tolerated now
    assert RunDir.open(path).read_manifest().status == "complete"


# --------------------------------------------------------------------------------------- safe inputs, outputs


def test_every_text_column_of_a_csv_is_neutralised_whatever_its_dtype(tmp_path):
    frame = pd.DataFrame({"label": pd.Series(["=cmd|'/c calc'!A1", "+1+1", "ok"], dtype="str"),
                          "kind": pd.Categorical(["@SUM(A1)", "-2+3", "ok"]),
                          "note": pd.Series(["\tx", None, "fine"], dtype=object), "delta": [-1.5, 2.0, 0.0]})
    write_csv(frame, tmp_path / "t.csv")
    back = pd.read_csv(tmp_path / "t.csv", dtype=str, keep_default_na=False)
    assert list(back["label"]) == ["'=cmd|'/c calc'!A1", "'+1+1", "ok"]
    assert list(back["kind"]) == ["'@SUM(A1)", "'-2+3", "ok"]
    assert list(back["note"]) == ["'\tx", "", "fine"]
    assert list(back["delta"]) == ["-1.5", "2.0", "0.0"]  # numbers stay numbers


@pytest.fixture(scope="module")
def minilm_copy(tmp_path_factory):
    """The MiniLM directory copied file by file (the weights linked, not copied)."""
    from harness import modelfiles

    source = modelfiles.resolve(compose([]).embedder.path)
    target = tmp_path_factory.mktemp("minilm") / "model"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.safetensors"))
    (target / "model.safetensors").symlink_to(source / "model.safetensors")
    return target


def test_a_tampered_tokenizer_or_an_added_file_is_refused(minilm_copy, tmp_path):
    from harness import modelfiles

    cfg = compose([])
    files = dict(cfg.embedder.files)
    assert modelfiles.verify_dir(minilm_copy, files, key="embedder.files") == minilm_copy
    tampered = shutil.copytree(minilm_copy, tmp_path / "tampered", symlinks=True)
    tokenizer = json.loads((tampered / "tokenizer.json").read_text())
    tokenizer["model"]["vocab"]["[UNK]"] = 1  # one changed id: every text tokenised otherwise
    (tampered / "tokenizer.json").write_text(json.dumps(tokenizer))
    embedder = instantiate(cfg.embedder, path=str(tampered))
    with pytest.raises(HarnessError, match=r"model file .*/tokenizer.json has sha256 \w+, expected be50c362\w+ "
                                           r"\(embedder.files\); refusing to load it"):
        embedder.model
    (tmp_path / "added").mkdir()
    added = shutil.copytree(minilm_copy, tmp_path / "added" / "model", symlinks=True)
    (added / "added_tokens.json").write_text("{}")
    with pytest.raises(HarnessError, match="file 'added_tokens.json' is not pinned in embedder.files"):
        modelfiles.verify_dir(added, files, key="embedder.files")


@pytest.mark.parametrize("override, shown", [("seed=abc", "'abc'"), ("seed=-1", "-1"), ("seed=4294967296",
                                                                                         "4294967296")])
def test_a_bad_seed_is_one_line_naming_the_key(override, shown):
    with pytest.raises(HarnessError) as bad:
        compose([override])
    assert str(bad.value) == f"config key 'seed' must be a whole number from 0 to 4294967295, got {shown}"


def test_bad_client_settings_name_their_key():
    from harness.llm.factory import connect

    model = {"name": "m", "provider": "api", "litellm_model": "openai/m", "client": {"max_concurrency": 0}}
    with pytest.raises(HarnessError, match=r"^config key 'model.client.max_concurrency' must be a whole number "
                                           r">= 1, got 0$"):
        connect(model, {"timeout_s": 5}, hardware=None, run_dir=Path("."))
    with pytest.raises(HarnessError, match=r"^config key 'llm.timeout_s' must be a number > 0, got 'soon'$"):
        connect({**model, "client": {}}, {"timeout_s": "soon"}, hardware=None, run_dir=Path("."))


# --------------------------------------------------------------------------------------------- LLM workers

CALLS = """import sys
from harness.llm.base import ChatRequest, Pricing
from harness.llm.client import LLMClient

client = LLMClient(model="openai/fake", api_base=sys.argv[1], cache_dir=None, max_concurrency=16, workers=2,
                   pricing=Pricing(input_usd_per_token=0.0, output_usd_per_token=0.0))
requests = (ChatRequest(key=str(i), messages=[{"role": "user", "content": f"item {i}"}]) for i in range(100000))
for number, _ in enumerate(client.run(requests)):
    if number == 50:
        print("CALLING", flush=True)
"""


def test_llm_workers_die_at_once_and_quietly_with_a_killed_run(tmp_path):
    """SIGKILL of the run's process while answers keep arriving: its workers are gone within a second and no
    traceback (a BrokenPipeError from a worker sending an answer to a dead parent) reaches the run's log."""
    with FakeOpenAI(latency_s=0.02) as server:
        for attempt in range(3):
            log = tmp_path / f"calls-{attempt}.log"
            with open(log, "w") as out:
                process = subprocess.Popen([sys.executable, "-c", CALLS, server.url], cwd=ROOT, stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.monotonic() + 60
            while "CALLING" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            gone_after_s = kill(process, within_s=10)
            time.sleep(0.2)  # anything a dying worker still had to say is in the log now
            assert gone_after_s < 1.0, f"workers outlived the run by {gone_after_s:.1f} s"
            assert "Traceback" not in log.read_text(), log.read_text()[-2000:]


def test_a_run_killed_while_starting_its_workers_leaves_no_forkserver_behind(tmp_path):
    """Killed the moment the forkserver exists, before it can ask to die with its parent: it used to go on
    importing litellm for 12-20 s (measured on a loaded 2-core machine); now it sees its parent gone and leaves."""
    with FakeOpenAI() as server:
        process = subprocess.Popen([sys.executable, "-c", CALLS, server.url], cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        while not _forkserver_in(process.pid) and process.poll() is None:
            time.sleep(0.005)
        gone_after_s = kill(process, within_s=30)
    assert gone_after_s < 2.0, f"the forkserver outlived the run by {gone_after_s:.1f} s"


def _forkserver_in(session: int) -> bool:
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.getsid(int(proc.name)) == session and b"forkserver" in (proc / "cmdline").read_bytes():
                return True
        except (OSError, ValueError):  # gone meanwhile
            pass
    return False
