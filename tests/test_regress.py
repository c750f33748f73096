"""The regression gate: comparison and policy on constructed records, the `harness regress` command on real runs
of the classic strategies, and the pytest fixture."""
from __future__ import annotations

import dataclasses
import hashlib
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.gate import outputs as regress_report
from harness.gate.baselines import Baseline
from harness.cli import main
from harness.config import compose
from harness.errors import HarnessError
from harness.gate.check import Policy, accuracy_check, compare
from harness.run.directory import RunDir
from harness.run.manifest import DatasetInfo, Manifest
from harness.strategies.base import FitRecord, PromptArtefact
from tests.conftest import tiny_overrides
from tests.test_baselines import ONLY_TFIDF, tiny_run

pytest_plugins = ["pytester"]

LABELS = ["card", "cash", "fee", "loan"]
HASH = "ab" * 32
N = 400


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.from_config(compose([]).gate)


def records(pred=None, *, strategy="zero_shot", latency_ms=100.0, cost_usd=1e-4, error=None) -> pd.DataFrame:
    """N items, 100 per label; by default 90% right (every tenth item answered with the wrong label)."""
    gold = [LABELS[i % 4] for i in range(N)]
    if pred is None:
        pred = [g if i % 10 else LABELS[(i + 1) % 4] for i, g in enumerate(gold)]
    return pd.DataFrame({
        "strategy": strategy, "item_id": [f"i{i:04d}" for i in range(N)], "gold": gold, "pred": pred,
        "correct": [p == g for p, g in zip(pred, gold)], "latency_ms": latency_ms, "prompt_tokens": 50,
        "completion_tokens": 2, "cost_usd": cost_usd, "spent_usd": 0.0, "cached": True, "error": error,
        "raw": pred, "extra": None})


def manifest(*, heldout_hash=HASH, template="Classify: {{ text }}", billing="api", reference_ms=None) -> Manifest:
    prompt = PromptArtefact(system_prompt_file="artifacts/zero_shot/system_prompt.txt", system_prompt_sha256="0" * 64,
                            templates_sha256={"user": hashlib.sha256(template.encode()).hexdigest()},
                            output_mode="none", measured_at_concurrency=1)
    fit = FitRecord(family="prompted", model="m", latency_basis="per-item", fit_seconds=0.0, fit_cost_usd=0.0,
                    n_train=0, prompt=prompt, billing=billing, reference_ms=reference_ms)
    return Manifest(experiment="x", status="complete", started_at="2026-01-01T00:00:00+00:00",
                    dataset=DatasetInfo(name="d", source="tests", n_train=0, n_heldout=N, n_labels=4,
                                        heldout_hash=heldout_hash),
                    strategies={"zero_shot": fit},
                    config={"seed": 0, "strategies": {"zero_shot": {"user_template": template}}})


def baseline(frame: pd.DataFrame | None = None, texts=None) -> Baseline:
    frame = records() if frame is None else frame
    texts = texts or [f"text of {item}" for item in frame["item_id"]]
    return Baseline(name="base", path=Path("base"), manifest=manifest(), records=frame.assign(text=texts))


def candidate_run(path: Path, frame: pd.DataFrame, **manifest_args) -> RunDir:
    rundir = RunDir(path)
    rundir.records_dir.mkdir(parents=True)
    rundir.write_manifest(manifest(**manifest_args))
    frame.to_parquet(path / "predictions.parquet", index=False)
    return rundir


def broken_preds(indices, base: pd.DataFrame | None = None) -> list:
    pred = list((records() if base is None else base)["pred"])
    for i in indices:
        pred[i] = "loan" if pred[i] != "loan" else "card"
    return pred


# ---------------------------------------------------------------------------------------------- comparison


def test_identical_candidate_passes_with_zero_flips(tmp_path, policy):
    outcome = compare(baseline(), candidate_run(tmp_path / "c", records()), policy)
    assert outcome.passed
    (comparison,) = outcome.comparisons
    assert comparison.flips.empty
    assert [c.status for c in comparison.checks] == ["pass", "pass", "pass"]
    assert comparison.changes == []
    assert "harness regress: PASS" in regress_report.markdown(outcome)


def test_broken_candidate_fails_and_lists_the_broken_items(tmp_path, policy):
    broken = [i for i in range(N) if i % 10 and LABELS[i % 4] == "card"][:40]
    outcome = compare(baseline(), candidate_run(tmp_path / "c", records(broken_preds(broken))), policy)
    assert not outcome.passed
    (comparison,) = outcome.comparisons
    assert comparison.checks[0].name == "accuracy" and comparison.checks[0].status == "fail"
    assert comparison.delta_points[0] == pytest.approx(-10.0)
    assert comparison.flips["kind"].eq("broken").sum() == 40
    first = comparison.flips.iloc[0]
    assert (first["item_id"], first["text"], first["gold"], first["baseline_pred"], first["candidate_pred"]) == \
        ("i0004", "text of i0004", "card", "card", "loan")
    assert comparison.per_class.loc["card", "delta_points"] == pytest.approx(-40.0)
    summary = regress_report.markdown(outcome)
    assert "harness regress: FAIL" in summary and "Broken items (40)" in summary and "text of i0004" in summary
    failure = regress_report.failure_text(outcome)
    assert "FAIL zero_shot accuracy" in failure and "i0004 [card] card -> loan: text of i0004" in failure


def test_a_protected_category_fails_on_its_own(tmp_path, policy):
    broken = [i for i in range(N) if i % 10 and LABELS[i % 4] == "fee"][:6]  # 6 points of fee
    fixed = [i for i in range(N) if not i % 10 and LABELS[i % 4] == "card"][:4]
    pred = broken_preds(broken)
    for i in fixed:
        pred[i] = "card"
    run = candidate_run(tmp_path / "c", records(pred))
    assert compare(baseline(), run, policy).passed  # 6 broken vs 4 fixed overall is noise
    protected = dataclasses.replace(policy, protected_categories={"fee": 5.0, "card": 5.0})
    outcome = compare(baseline(), run, protected)
    checks = {c.name: c for c in outcome.comparisons[0].checks}
    assert checks["accuracy"].status == "pass"
    assert (checks["class:fee"].status, checks["class:fee"].change) == ("fail", pytest.approx(-6.0))
    assert checks["class:card"].status == "pass"


def test_cost_and_latency_rises_fail_and_null_limits_skip(tmp_path, policy):
    run = candidate_run(tmp_path / "c", records(latency_ms=130.0, cost_usd=1.2e-4))
    checks = {c.name: c for c in compare(baseline(), run, policy).comparisons[0].checks}
    assert (checks["cost_per_1k"].status, checks["cost_per_1k"].change) == ("fail", pytest.approx(20.0))
    assert (checks["latency_p95"].status, checks["latency_p95"].change) == ("fail", pytest.approx(30.0))
    lenient = dataclasses.replace(policy, max_cost_per_1k_rise_pct=25.0, max_p95_latency_rise_pct=None)
    outcome = compare(baseline(), run, lenient)
    assert outcome.passed
    assert [c.status for c in outcome.comparisons[0].checks] == ["pass", "pass", "skip"]


def test_a_cost_where_there_was_none_is_an_unbounded_rise(tmp_path, policy):
    run = candidate_run(tmp_path / "c", records(cost_usd=1e-4))
    check = compare(baseline(records(cost_usd=0.0)), run, policy).comparisons[0].checks[1]
    assert check.status == "fail" and np.isinf(check.change)
    assert "new cost" in regress_report.verdict_lines(compare(baseline(records(cost_usd=0.0)), run, policy))[1]


def test_candidate_on_other_items_is_refused(tmp_path, policy):
    run = candidate_run(tmp_path / "c", records(), heldout_hash="cd" * 32)
    with pytest.raises(HarnessError, match="against baseline 'base'\): held-out hash cdcdcdcdcdcd differs from abababababab"):
        compare(baseline(), run, policy)


def test_candidate_missing_items_is_refused(tmp_path, policy):
    run = candidate_run(tmp_path / "c", records().iloc[:-3])
    with pytest.raises(HarnessError, match="no record for 3 of the baseline's 400 items .*harness resume"):
        compare(baseline(), run, policy)


def test_strategies_on_one_side_only_are_listed_not_compared(tmp_path, policy):
    both = pd.concat([records(), records(strategy="rag")])
    outcome = compare(baseline(both), candidate_run(tmp_path / "c", pd.concat([records(), records(strategy="few")])),
                      policy)
    assert [c.strategy for c in outcome.comparisons] == ["zero_shot"]
    assert outcome.not_compared == {"rag": "only in the baseline", "few": "only in the candidate"}
    assert "Not compared: rag (only in the baseline), few (only in the candidate)" in regress_report.markdown(outcome)


def test_the_summary_says_which_template_changed(tmp_path, policy):
    run = candidate_run(tmp_path / "c", records(), template="Label this: {{ text }}")
    outcome = compare(baseline(), run, policy)
    changes = outcome.comparisons[0].changes
    assert changes[0].startswith("prompt.templates_sha256.user: ")
    assert changes[1] == "strategies.zero_shot.user_template: 'Classify: {{ text }}' -> 'Label this: {{ text }}'"
    assert "What changed:\n- `prompt.templates_sha256.user: " in regress_report.markdown(outcome)


def test_the_summary_escapes_dataset_text(tmp_path, policy):
    texts = [f"a | b <script>alert({i})</script>\nnext line" for i in range(N)]
    outcome = compare(baseline(texts=texts), candidate_run(tmp_path / "c", records(broken_preds([1]))), policy)
    summary = regress_report.markdown(outcome)
    assert "<script>" not in summary
    assert "a \\| b &lt;script&gt;alert(1)&lt;/script&gt; next line" in summary


def test_the_summary_fits_in_a_pull_request_comment(tmp_path, policy):
    names = [f"s{i}" for i in range(6)]
    base = pd.concat([records(strategy=name) for name in names])
    cand = pd.concat([records([None] * N, strategy=name) for name in names])  # every item broken, everywhere
    texts = [f"{item} " + "long message " * 15 for item in base["item_id"]]
    summary = regress_report.markdown(compare(baseline(base, texts), candidate_run(tmp_path / "c", cand), policy))
    assert len(summary) <= regress_report.COMMENT_MAX_CHARS
    assert summary.count("Broken items (360)") == 6 and "...and" in summary and "i0001 long message" in summary


def test_errors_show_as_errors_in_the_flips(tmp_path, policy):
    frame = records(broken_preds([1])).astype({"error": object})
    frame.loc[1, ["pred", "correct", "error"]] = [None, False, "timeout after 60 s"]
    outcome = compare(baseline(), candidate_run(tmp_path / "c", frame), policy)
    assert "(error: timeout after 60 s)" in regress_report.markdown(outcome)


def test_junit_has_one_testcase_per_check_per_strategy(tmp_path, policy):
    both = pd.concat([records(), records(strategy="rag")])
    cand = pd.concat([records(broken_preds(range(1, 200, 2))), records(strategy="rag")])
    gated = dataclasses.replace(policy, protected_categories={"cash": 5.0}, max_p95_latency_rise_pct=None)
    outcome = compare(baseline(both), candidate_run(tmp_path / "c", cand), gated)
    suites = ET.fromstring(regress_report.junit_xml(outcome))
    assert [s.get("name") for s in suites] == ["regress.zero_shot", "regress.rag"]
    cases = {(c.get("classname"), c.get("name")): c for c in suites.iter("testcase")}
    assert len(cases) == 2 * 4
    failure = cases[("regress.zero_shot", "accuracy")].find("failure")
    assert failure is not None and "i0001 [cash] cash -> loan: text of i0001" in failure.text
    assert cases[("regress.zero_shot", "latency_p95")].find("skipped") is not None
    assert cases[("regress.rag", "accuracy")].find("failure") is None
    assert suites[0].get("failures") == "2" and suites[1].get("failures") == "0"


def test_junit_failures_list_a_bounded_number_of_items(tmp_path, policy, monkeypatch):
    monkeypatch.setattr(regress_report, "MAX_JUNIT_ITEMS", 100)
    outcome = compare(baseline(), candidate_run(tmp_path / "c", records([None] * N)), policy)
    failure = ET.fromstring(regress_report.junit_xml(outcome)).find(".//testcase[@name='accuracy']/failure")
    lines = failure.text.splitlines()
    assert len(lines) == 1 + 100 + 1 and lines[-1] == "...and 260 more"  # 360 broken items


def self_hosted(frame: pd.DataFrame, reference_ms=None) -> Baseline:
    texts = [f"text of {item}" for item in frame["item_id"]]
    return Baseline(name="base", path=Path("base"), manifest=manifest(billing="self_hosted", reference_ms=reference_ms),
                    records=frame.assign(text=texts))


def test_a_busier_machine_fails_no_self_hosted_prompt_that_sends_the_same_tokens(tmp_path, policy):
    """Local cost is measured seconds: the identical prompt on a loaded machine took 60% longer. The checks
    compare the tokens each item sent and got (the work), and say that they do not depend on the machine."""
    slower = candidate_run(tmp_path / "c", records(latency_ms=160.0, cost_usd=1.6e-4), billing="self_hosted")
    outcome = compare(self_hosted(records()), slower, policy)
    checks = {c.name: c for c in outcome.comparisons[0].checks}
    assert outcome.passed
    for name in ("cost_per_1k", "latency_p95"):
        assert (checks[name].unit, checks[name].baseline, checks[name].change) == ("tokens_per_item", 52.0, 0.0)
        assert not checks[name].machine_dependent and "tokens per item" in checks[name].message
    longer = records(latency_ms=100.0).assign(prompt_tokens=80)  # a longer prompt: more work on any machine
    outcome = compare(self_hosted(records()), candidate_run(tmp_path / "d", longer, billing="self_hosted"), policy)
    checks = {c.name: c for c in outcome.comparisons[0].checks}
    assert checks["cost_per_1k"].status == "fail" and checks["cost_per_1k"].change == pytest.approx(100 * 30 / 52)
    assert "FAIL zero_shot cost_per_1k: 52.0 tokens/item -> 82.0 tokens/item (+57.7%)" in \
        regress_report.verdict_lines(outcome)[1]


def test_seconds_without_tokens_are_scaled_by_each_runs_reference_measurement(tmp_path, policy):
    """A trained model (no tokens) measured on a machine half as fast: its reference took twice as long too, so
    the candidate's seconds are halved before comparing; the check is still marked machine-dependent."""
    untokened = records().assign(prompt_tokens=0, completion_tokens=0)
    slow = untokened.assign(latency_ms=200.0, cost_usd=2e-4)
    run = candidate_run(tmp_path / "c", slow, billing="self_hosted", reference_ms=18.0)
    outcome = compare(self_hosted(untokened, reference_ms=9.0), run, policy)
    checks = {c.name: c for c in outcome.comparisons[0].checks}
    assert outcome.passed
    assert checks["latency_p95"].candidate == pytest.approx(100.0) and checks["latency_p95"].machine_dependent
    assert "x0.50, the ratio of the runs' reference measurements" in checks["cost_per_1k"].message
    unscaled = compare(self_hosted(untokened), candidate_run(tmp_path / "d", slow, billing="self_hosted"), policy)
    assert not unscaled.passed  # no reference to scale by: seconds as measured, and the outputs say so
    assert "no reference measurement" in unscaled.comparisons[0].checks[-1].message


def test_junit_says_which_checks_depend_on_the_machine(tmp_path, policy):
    outcome = compare(baseline(), candidate_run(tmp_path / "c", records()), policy)  # an API model
    cases = {c.get("name"): c for c in ET.fromstring(regress_report.junit_xml(outcome)).iter("testcase")}
    machine = {name: case.find("properties/property[@name='machine_dependent']").get("value")
               for name, case in cases.items()}
    assert machine == {"accuracy": "false", "cost_per_1k": "false", "latency_p95": "true"}
    assert "latency_p95 (machine-dependent)" in regress_report.markdown(outcome)


# -------------------------------------------------------------------------------------------- the policy


def test_accuracy_rule_edges(policy):
    def status(broken, fixed, n):
        base = np.r_[np.ones(broken, bool), np.zeros(fixed, bool), np.ones(n - broken - fixed, bool)]
        cand = np.r_[np.zeros(broken, bool), np.ones(fixed, bool), np.ones(n - broken - fixed, bool)]
        return accuracy_check("s", base, cand, policy).status

    assert status(0, 0, 50) == "pass"
    assert status(5, 0, 32) == "fail"  # p = 1/32 and a drop of 16 points
    assert status(4, 0, 32) == "pass"  # p = 1/16: not significant, however large the observed drop
    assert status(700, 500, 100_000) == "pass"  # significant, but surely under the 2-point tolerance
    assert status(700, 500, 5_000) == "fail"  # 4 points
    assert accuracy_check("s", [True], [False], dataclasses.replace(policy, max_accuracy_drop_points=None)) \
        .status == "skip"


def test_policy_forms_and_errors():
    gate = compose(["gate.protected_categories=[fee,card]", "gate.protected_max_drop_points=3"]).gate
    assert Policy.from_config(gate).protected_categories == {"fee": 3.0, "card": 3.0}
    gate = compose(["gate.protected_categories={fee: 1, card: null}"]).gate
    assert Policy.from_config(gate).protected_categories == {"fee": 1.0, "card": 5.0}
    with pytest.raises(HarnessError, match="no gate key 'max_drop'; known: max_accuracy_drop_points, alpha"):
        Policy.from_config({**compose([]).gate, "max_drop": 1})
    with pytest.raises(HarnessError, match="gate.alpha must be between 0 and 0.5"):
        Policy.from_config(compose(["gate.alpha=0.7"]).gate)


def test_unknown_protected_category_lists_the_labels(tmp_path, policy):
    gated = dataclasses.replace(policy, protected_categories={"fees": 5.0})
    with pytest.raises(HarnessError, match=r"no protected category \(gate.protected_categories\) 'fees'; known: "
                                           r"card, cash, fee, loan"):
        compare(baseline(), candidate_run(tmp_path / "c", records()), gated)


# ------------------------------------------------------------------------------- the command on real runs

QUIET_TIMINGS = ["gate.max_cost_per_1k_rise_pct=null", "gate.max_p95_latency_rise_pct=null"]  # CPU timing noise
DUMMY_HEAD = ["strategies.tfidf_logreg.head._target_=sklearn.dummy.DummyClassifier",
              "~strategies.tfidf_logreg.head.C", "~strategies.tfidf_logreg.head.max_iter"]


@pytest.fixture(scope="module")
def saved(tiny_csv, tmp_path_factory):
    """A real tfidf_logreg run on the tiny dataset, saved as baseline 'tiny' in its own baselines directory."""
    root = tmp_path_factory.mktemp("gate")
    run = tiny_run(tiny_csv, root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_BASELINES", str(root / "baselines"))
        assert main(["baseline", "save", str(run), "tiny"]) == 0
    return root / "baselines", run


@pytest.fixture
def gate_cli(saved, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_BASELINES", str(saved[0]))

    def call(*args: str) -> tuple[int, str, str]:
        code = main(["regress", "--baseline", "tiny", "--junit", str(tmp_path / "junit.xml"),
                     "--summary", str(tmp_path / "summary.md"), *args])
        out, err = capsys.readouterr()
        return code, out, err
    return call


def test_regress_rerunning_an_unchanged_config_passes(gate_cli, tmp_path):
    code, out, _ = gate_cli(f"output_dir={tmp_path}", *QUIET_TIMINGS)
    assert code == 0, out
    assert "PASS tfidf_logreg accuracy: 100.0% -> 100.0% (+0.0 points); 0 broken, 0 fixed" in out
    assert "Nothing changed in this strategy's config" in (tmp_path / "summary.md").read_text()
    suite = ET.parse(tmp_path / "junit.xml").getroot()[0]
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "0", "2")


def test_regress_a_broken_config_fails_with_exit_1(gate_cli, tmp_path):
    code, out, _ = gate_cli(f"output_dir={tmp_path}", *QUIET_TIMINGS, *DUMMY_HEAD)
    assert code == 1
    assert "FAIL tfidf_logreg accuracy" in out
    summary = (tmp_path / "summary.md").read_text()
    assert "Broken items (28)" in summary and "I have a new card and I want to activate it" in summary
    assert "strategies.tfidf_logreg.head._target_: 'sklearn.linear_model.LogisticRegression' -> " in summary
    failure = ET.parse(tmp_path / "junit.xml").getroot().find(".//testcase[@name='accuracy']/failure")
    assert failure is not None and "I have a new card and I want to activate it" in failure.text


def test_regress_naming_an_experiment_runs_the_projects_current_config(gate_cli, tiny_csv, tmp_path):
    code, out, _ = gate_cli("experiment=classic", *tiny_overrides(tiny_csv, tmp_path), *ONLY_TFIDF,
                            *QUIET_TIMINGS, "strategies.tfidf_logreg.head.C=5")
    assert code == 0, out
    summary = (tmp_path / "summary.md").read_text()
    assert "strategies.tfidf_logreg.head.C: 20.0 -> 5" in summary
    assert "Changed outside the strategies" not in summary  # same dataset, seed and hardware as the baseline


def test_regress_refuses_a_candidate_on_other_items(gate_cli, tmp_path):
    code, _, err = gate_cli(f"output_dir={tmp_path}", "dataset.heldout_size=16")
    assert code == 2
    assert "the candidate's held-out set: held-out hash" in err and "the gate only compares the same items" in err
    assert not (tmp_path / "tiny").exists()  # refused before running anything


def test_regress_candidate_mode_compares_existing_runs(gate_cli, saved, tmp_path):
    broken = shutil.copytree(saved[1], tmp_path / "broken")
    frame = pd.read_parquet(broken / "predictions.parquet")
    frame.loc[:4, ["pred", "correct"]] = [None, False]  # no label
    frame.to_parquet(broken / "predictions.parquet", index=False)
    assert gate_cli("--candidate", str(saved[1]))[0] == 0
    code, out, _ = gate_cli("--candidate", str(broken))
    assert code == 1 and "5 broken, 0 fixed" in out
    code, _, err = gate_cli("--candidate", str(broken), "seed=1")
    assert code == 2 and "only gate.* and experiment= overrides apply; got 'seed=1'" in err
    assert gate_cli("--candidate", str(saved[1]), "experiment=classic")[0] == 0  # its gate settings


def test_regress_input_errors_exit_2(gate_cli):
    code, _, err = gate_cli("--strategy", "zero_shot")
    assert code == 2 and "baseline 'tiny' has no strategy 'zero_shot'; known: tfidf_logreg" in err
    code, _, err = gate_cli("gate.protected_categories=[fees]")
    assert code == 2 and "no protected category" in err
    code, _, err = gate_cli("gate.nope=1")
    assert code == 2 and "nope" in err


# ------------------------------------------------------------------------------------------ pytest fixture


def test_the_pytest_fixture_passes_and_fails_like_the_gate(pytester, saved, tmp_path):
    broken = shutil.copytree(saved[1], tmp_path / "broken")
    frame = pd.read_parquet(broken / "predictions.parquet")
    frame.loc[:5, ["pred", "correct"]] = [None, False]
    frame.to_parquet(broken / "predictions.parquet", index=False)
    pytester.makepyfile(f"""
        def test_same(harness_gate):
            outcome = harness_gate({str(saved[1])!r}, candidate={str(saved[1])!r})
            assert outcome.passed

        def test_broken(harness_gate):
            harness_gate({str(saved[1])!r}, candidate={str(broken)!r})
    """)
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*FAIL tfidf_logreg accuracy: 100.0% -> 81.2%*", "*t0096 * -> (no label): *"])


# ------------------------------------------- end to end: a prompted strategy through the fake OpenAI server

PROMPTED = ["~strategies.tfidf_logreg",  # tiny_run keeps only tfidf_logreg of the classic experiment
            "+strategy@strategies.zero_shot=zero_shot", "model=openai_compatible", "model.litellm_model=openai/fake"]


@pytest.fixture(scope="module")
def prompted(tiny_csv, tmp_path_factory):
    """A fake model that knows every item (it answers right whenever the prompt shows the item's text), a real
    zero_shot run through it saved as baseline 'zs', and the server, whose request count tests read."""
    from tests.fake_openai import NO_IDEA, FakeOpenAI

    frame = pd.read_csv(tiny_csv, dtype=str)
    gold = dict(zip(frame["text"], frame["label"]))

    def answer(messages):
        return next((label for text, label in gold.items() if text in messages[-1]["content"]), NO_IDEA)

    root = tmp_path_factory.mktemp("prompted")
    with FakeOpenAI(answer=answer) as server:
        run_path = tiny_run(tiny_csv, root, *PROMPTED, f"model.api_base={server.url}",
                            f"llm.cache_dir={root / 'cache'}")
        assert server.stats()["requests"] == 32
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("HARNESS_BASELINES", str(root / "baselines"))
            assert main(["baseline", "save", str(run_path), "zs"]) == 0
        yield server, root / "baselines"


@pytest.fixture
def prompted_gate(prompted, tmp_path, monkeypatch, capsys):
    server, store = prompted
    monkeypatch.setenv("HARNESS_BASELINES", str(store))

    def call(*overrides: str) -> tuple[int, int, str]:
        """Exit code, model calls made, stdout."""
        server.reset()
        code = main(["regress", "--baseline", "zs", "--junit", str(tmp_path / "junit.xml"),
                     "--summary", str(tmp_path / "summary.md"), f"output_dir={tmp_path}", *overrides])
        return code, server.stats()["requests"], capsys.readouterr().out
    return call


@pytest.mark.slow
def test_prompted_unchanged_candidate_passes_with_zero_flips_and_no_model_calls(prompted_gate, tmp_path):
    code, calls, out = prompted_gate()
    assert (code, calls) == (0, 0), out  # every answer comes from the response cache the baseline run filled
    assert "PASS zero_shot accuracy: 100.0% -> 100.0% (+0.0 points); 0 broken, 0 fixed" in out
    assert "PASS zero_shot latency_p95" in out and "PASS zero_shot cost_per_1k" in out
    assert "Nothing changed in this strategy's config or template hashes." in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_prompted_broken_template_fails_with_a_junit_failure_and_the_broken_items(prompted_gate, tmp_path,
                                                                                  tiny_csv):
    # The model only knows an item from its text as written; this template shouts it.
    code, calls, out = prompted_gate("strategies.zero_shot.user_template='Message: {{ text | upper }}'")
    assert (code, calls) == (1, 32)
    assert "FAIL zero_shot accuracy: 100.0% -> 0.0%" in out
    failure = ET.parse(tmp_path / "junit.xml").getroot().find(".//testcase[@name='accuracy']/failure")
    heldout = pd.read_csv(tiny_csv, dtype=str).query("split == 'test'")
    assert failure is not None and all(f"{i} [" in failure.text for i in heldout["id"])
    summary = (tmp_path / "summary.md").read_text()
    assert "Broken items (32)" in summary and min(heldout["text"], key=len) in summary
    assert "- `prompt.templates_sha256.user: " in summary
