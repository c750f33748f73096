"""`harness compare`: runs on the same held-out set merge into one report; differing held-out sets are refused."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.report.compare import compare, merged_names
from tests.runs import ITEMS, outcomes, write_run


def test_compare_merges_runs_and_keeps_every_strategy_distinct(tmp_path, capsys):
    first = write_run(tmp_path / "a", {
        "zero_shot": {"pred": outcomes(ITEMS, 30), "family": "prompted", "cost_usd": 0.002},
        "tfidf": {"pred": outcomes(ITEMS, 20), "family": "trained", "fit_cost_usd": 1.0}}, ITEMS)
    second = write_run(tmp_path / "b", {
        "zero_shot": {"pred": outcomes(ITEMS, 10), "family": "prompted", "cost_usd": 0.003}}, ITEMS)
    code = main(["compare", "--output-dir", str(tmp_path / "out"), str(first), str(second),
                 "pricing.monthly_volume=20000"])
    assert code == 0, capsys.readouterr().err
    [merged] = list((tmp_path / "out" / "compare").iterdir())
    manifest = json.loads((merged / "manifest.json").read_text())
    assert [run["path"] for run in manifest["runs"]] == [str(first), str(second)]
    zero_shots = [name for run in (first, second) for name, info in manifest["strategies"].items()
                  if info["details"]["run"] == str(run) and info["details"]["strategy_in_run"] == "zero_shot"]
    assert len(set(zero_shots)) == 2 and all(name.startswith("zero_shot@") for name in zero_shots)
    results = pd.read_csv(merged / "results.csv")
    assert list(results["strategy"]) == [zero_shots[0], "tfidf", zero_shots[1]]
    assert list(results["accuracy"]) == [0.85, 0.9, 0.95]
    assert list(results["family"]) == ["prompted", "trained", "prompted"]
    assert len(pd.read_csv(merged / "significance.csv")) == 3
    assert len(pd.read_csv(merged / "break_even.csv")) == 2
    assert (pd.read_csv(merged / "total_cost.csv")["monthly_volume"] == 20000).all()
    assert (merged / "report.html").exists() and (merged / "summary.pdf").exists()


def test_compare_refuses_runs_on_different_heldout_sets_naming_them(tmp_path):
    first = write_run(tmp_path / "a", {"x": {"pred": outcomes(ITEMS, 1), "family": "trained"}}, ITEMS)
    other = write_run(tmp_path / "b", {"x": {"pred": outcomes(ITEMS, 1), "family": "trained"}}, ITEMS,
                      texts={ITEMS[0][0]: "another text"})
    with pytest.raises(HarnessError) as error:
        compare([first, other], tmp_path / "out")
    message = str(error.value)
    other_hash = json.loads((other / "manifest.json").read_text())["dataset"]["heldout_hash"]
    assert str(other) in message and str(first) in message and other_hash[:12] in message
    assert not (tmp_path / "out").exists()  # nothing written


def test_compare_needs_two_distinct_runs(tmp_path):
    run = write_run(tmp_path, {"x": {"pred": outcomes(ITEMS, 1), "family": "trained"}}, ITEMS)
    with pytest.raises(HarnessError, match="at least two"):
        compare([run], tmp_path / "out")
    with pytest.raises(HarnessError, match="named twice"):
        compare([run, run], tmp_path / "out")


def test_names_that_clash_get_their_run_appended(tmp_path):
    paths = [tmp_path / "exp_a" / "2026-01-01", tmp_path / "exp_b" / "2026-01-02"]
    assert merged_names(paths, [["rag", "tfidf"], ["rag"]]) == [{"rag": "rag@2026-01-01", "tfidf": "tfidf"},
                                                                {"rag": "rag@2026-01-02"}]
    paths = [tmp_path / "exp_a" / "2026-01-01", tmp_path / "exp_b" / "2026-01-01", tmp_path / "exp_a" / "later"]
    names = merged_names(paths, [["rag", "tfidf"], ["rag"], ["knn"]])
    assert names == [{"rag": "rag@exp_a/2026-01-01", "tfidf": "tfidf"}, {"rag": "rag@exp_b/2026-01-01"},
                     {"knn": "knn"}]
    same = [tmp_path / "a" / "exp" / "2026-01-01", tmp_path / "b" / "exp" / "2026-01-01"]
    assert merged_names(same, [["rag"], ["rag"]]) == [{"rag": f"rag@{same[0]}"}, {"rag": f"rag@{same[1]}"}]


def test_bad_pricing_is_refused_before_anything_is_written(tmp_path):
    runs = [write_run(tmp_path / name, {"x": {"pred": outcomes(ITEMS, 1), "family": "trained"}}, ITEMS)
            for name in ("a", "b")]
    with pytest.raises(HarnessError, match="no pricing key 'pricing.volume'"):
        compare(runs, tmp_path / "out", ["pricing.volume=5"])
    assert not (tmp_path / "out").exists()


def test_a_measured_run_of_an_api_model_replaces_its_projection(tmp_path):
    """The local run's zero_shot is projected onto gpt-4o-mini; a run of zero_shot on gpt-4o-mini itself measured
    its accuracy there: the merged report prices that measured option and drops the projection."""
    from harness.report import analysis, pricing
    from harness.run.directory import RunDir
    from tests.test_report import projected

    local = write_run(tmp_path / "a", {
        "zero_shot": {"pred": outcomes(ITEMS, 60), "family": "prompted", "cost_usd": 2e-5},
        "tfidf": {"pred": outcomes(ITEMS, 20), "family": "trained", "fit_cost_usd": 1.0}}, ITEMS)
    RunDir.open(local).update_manifest(projection=[projected("zero_shot"), projected("zero_shot", model="gpt-x")])
    api = write_run(tmp_path / "b", {
        "zero_shot": {"pred": outcomes(ITEMS, 10), "family": "prompted", "cost_usd": 7e-5,
                      "info": {"billing": "api", "details": {"model_info": {"litellm_model": "gpt-4o-mini"}}}}}, ITEMS)
    RunDir.open(api).update_manifest(projection=[projected("zero_shot", own_model=True)])
    merged = RunDir.open(compare([local, api], tmp_path / "out"))
    manifest = merged.read_manifest()
    options = analysis.analyse(manifest, merged.load_records(), pricing.resolve(manifest)).costs.options
    local_name = next(n for n in options if n.startswith("zero_shot@") and not options[n].projected
                      and options[n].billing != "api")
    assert f"{local_name} @ gpt-4o-mini" not in options  # measured in the other run: no projection
    assert f"{local_name} @ gpt-x" in options  # never run on gpt-x: still projected
    measured = [o for o in options.values() if o.billing == "api" and not o.projected]
    assert [o.model for o in measured] == ["gpt-4o-mini"]
