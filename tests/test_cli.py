"""The command line: one-line errors that name the key and list the choices, and exit codes."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from harness.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err.strip()


@pytest.mark.parametrize("argv, message", [
    (["experiment=nope"], r"error: no experiment 'nope'; known: (\w+, )*classic, (\w+, )*default"),
    (["dataset=nope"], r"error: no dataset 'nope'; known: banking77, banking77_half, banking77_sample, table"),
    (["+strategy@strategies.x=rga"], r"error: no strategy 'rga'; known: (\w+, )*embed_knn, embed_logreg, "),
    (["dataset=table"], r"error: config key 'dataset.path' is required"),
    (["dataset=table", "dataset.path=missing.csv"], r"error: missing.csv: no such file"),
    (["experiment=classic", "dataset.heldout_size=5000"],
     r"error: dataset.heldout_size=5000 is larger than the 3080 held-out items of banking77"),
    (["~experiment"], r"error: config key 'strategies' is empty"),
    (["seed=[1"], r"error: .*seed=\[1"),
])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, argv, message):
    code, err = run_cli(capsys, "run", *argv, f"output_dir={tmp_path}")
    assert code == 2
    assert re.match(message, err), err
    assert "\n" not in err
    assert not list(tmp_path.glob("*/*/*/results.csv"))  # nothing half-written that looks finished


def test_missing_column_lists_the_columns(capsys, tmp_path, tiny_csv):
    code, err = run_cli(capsys, "run", "dataset=table", f"dataset.path={tiny_csv}", "dataset.label_column=category",
                        f"output_dir={tmp_path}")
    assert code == 2 and "no column 'category'; columns: id, text, label, split" in err


def test_unknown_strategy_inside_an_experiment_file(capsys, tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    import shutil

    from harness.config import conf_dir

    shutil.copytree(conf_dir(), conf, symlinks=False)
    (conf / "experiment" / "typo.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /strategy@strategies.a: tfidf_logreg\n  - /strategy@strategies.b: rga\n")
    monkeypatch.setenv("HARNESS_CONF", str(conf))
    code, err = run_cli(capsys, "run", "experiment=typo", f"output_dir={tmp_path}")
    assert code == 2 and re.match(r"error: no strategy 'rga'; known: (\w+, )*embed_knn, embed_logreg", err)


def test_report_on_a_directory_that_is_not_a_run(capsys, tmp_path):
    code, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 2 and err == f"error: {tmp_path}: not a run directory (no manifest.json)"


def test_list_and_help(capsys):
    assert main(["list", "strategy"]) == 0
    assert "tfidf_logreg" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "harness resume" in capsys.readouterr().out


def test_run_on_user_table_end_to_end(capsys, tmp_path, tiny_csv):
    code = main(["run", "experiment=classic", "dataset=table", f"dataset.path={tiny_csv}",
                 "dataset.split_column=split", f"output_dir={tmp_path}",
                 "~strategies.embed_logreg", "~strategies.embed_knn"])
    assert code == 0
    results = pd.read_csv(next(tmp_path.glob("tiny/classic/*/results.csv")))
    assert list(results["strategy"]) == ["tfidf_logreg"] and results["n"].item() == 32


def test_sigterm_stops_a_command_like_ctrl_c(capsys, monkeypatch):
    """`kill` reaches the same clean stop as Ctrl-C (the runner then records "interrupted"), and the process's
    own SIGTERM handling is restored afterwards."""
    import os
    import signal
    import time

    from harness import cli

    def killed(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler interrupts this
        return 0

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(cli, "_list", killed)
    started = time.monotonic()
    assert main(["list"]) == 130
    assert time.monotonic() - started < 5
    assert "interrupted; finished items are recorded" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before


def test_plan_heldout_answers_from_assumptions_alone(capsys):
    import subprocess
    import sys

    assert main(["plan-heldout", "--accuracy", "0.8", "--difference", "2", "--discordance", "0.1",
                 "--items", "3080"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "held-out items to label: 1,960"  # Connor's formula, as tests/test_power.py computes it
    assert out[-1] == "3,080 items detect a difference of 1.6 points 80% of the time"
    assert main(["plan-heldout", "--accuracy", "0.8"]) == 0
    assert "30.8% of the items are right for exactly one" in capsys.readouterr().out  # errors independent
    code, err = run_cli(capsys, "plan-heldout", "--accuracy", "80")
    assert code == 2 and err == "error: --accuracy must be a fraction between 0 and 1 (0.8 for 80%), got 80"
    code, err = run_cli(capsys, "plan-heldout", "--accuracy", "0.8", "--discordance", "0.6")
    assert code == 2 and err.endswith("82.0% accurate: it lies between 0.02 and 0.38")
    probe = ("import sys; from harness.cli import main; rc = main(['plan-heldout', '--accuracy', '0.9']); "
             "heavy = [m for m in ('scipy', 'statsmodels', 'pandas', 'litellm', 'torch') if m in sys.modules]; "
             "assert not heavy, heavy; sys.exit(rc)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0
