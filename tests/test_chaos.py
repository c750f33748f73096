"""The chaos scenarios (tests/chaos.py, tests/chaos_inputs.py) as tests: against the fake OpenAI-compatible server in its own process,
counting requests there. bench/chaos.py prints the same figures in one table."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from tests import chaos, chaos_inputs


@pytest.mark.slow
def test_repeated_sigkill_and_resume_lose_no_record_and_repay_no_call(tmp_path):
    figures = chaos.kills_and_resumes(tmp_path, kills=6)  # bench/chaos.py kills 10 times or more
    assert figures["kills"] >= 6 and figures["exit"] == 0 and figures["status"] == "complete", figures
    assert (figures["lost_records"], figures["duplicate_rows"], figures["repeat_calls"]) == (0, 0, 0), figures
    # items in flight at a kill are asked again, at most the concurrency (2) per kill
    assert figures["requests"] <= figures["items"] + 2 * figures["kills"]
    # a kill while the workers' forkserver is starting leaves it the half second Python takes to start
    assert figures["max_exit_s"] < 2.0 and figures["tracebacks"] == 0, figures


@pytest.mark.slow
def test_two_resumes_at_once_pay_for_each_item_once(tmp_path):
    figures = chaos.concurrent_resumes(tmp_path)
    assert figures["exits"] == [0, 2] and figures["extra_paid_calls"] == 0, figures
    assert re.fullmatch(r"error: \S+: PID \d+ \(harness resume\) is writing this run; wait for it to finish or stop "
                        r"it \(kill \d+\), then try again", figures["refusal"]), figures["refusal"]
    assert figures["rows"] == figures["record_lines"] == 200


@pytest.mark.slow
def test_a_run_killed_between_its_status_and_its_report_passes_for_complete_nowhere(tmp_path):
    figures = chaos.kill_while_finishing(tmp_path)
    assert (figures["status"], figures["shown_as"], figures["report_exists"]) == (
        "finishing", "interrupted (process gone)", False)
    assert figures["refused"] == {"baseline save": 2, "regress --candidate": 2, "regress --baseline": 2,
                                  "compare": 2}
    assert (figures["resume_exit"], figures["resume_requests"], figures["status_after"]) == (0, 0, "complete")
    assert figures["report_after"] and figures["compare_after"] == 0


@pytest.mark.slow
def test_with_20_percent_faults_every_item_is_predicted_or_explicitly_errored(tmp_path):
    figures = chaos.mixed_faults(tmp_path)
    assert figures["exit"] == 0 and figures["unaccounted"] == 0 and figures["faults"] == 40, figures
    assert figures["predicted"] + figures["errored"] == figures["items"]
    # --retry-errors asks again for the errored items, and only those
    assert figures["retry_exit"] == 0 and figures["retried_requests"] == figures["errored"] > 0, figures
    assert figures["errors_after_retry"] == 0 and figures["rows_after_retry"] == figures["items"]


@pytest.mark.slow
def test_an_all_401_server_fails_the_run_naming_the_error_and_the_key_leaks_nowhere(tmp_path):
    figures = chaos.all_unauthorised(tmp_path)
    assert (figures["exit"], figures["status"], figures["records"]) == (2, "failed", 60), figures
    assert re.fullmatch(r"error: zero_shot: 60 of 60 items failed \(100%, above max_error_share 0.5\); commonest "
                        r"error \(60x\): AuthenticationError: .*; once it is fixed, `harness resume --retry-errors "
                        r"\S+` redoes the failed items", figures["message"]), figures["message"]
    assert (figures["retry_exit"], figures["retried_requests"], figures["status_after"]) == (0, 60, "complete")
    assert figures["again_exit"] == 0 and figures["manifest_unchanged"]
    assert re.fullmatch(r"\S+: already complete: 60 of 60 items recorded \(100%\); nothing to resume",
                        figures["again_line"]), figures["again_line"]
    assert figures["canary_hits"] == 0


def test_malformed_inputs_each_get_one_line_naming_the_key_file_row_or_column(tmp_path):
    results = chaos_inputs.malformed_inputs(tmp_path)
    assert len(results) >= 20
    assert [r for r in results if not (r["exit"] == 2 and r["one_line"] and r["names_it"])] == []


@pytest.mark.slow
def test_formula_and_script_payloads_are_inert_in_every_output_format(tmp_path):
    figures = chaos_inputs.hostile_text(tmp_path)
    assert figures["exits"] == [0, 0, 1]  # two runs, then the gate failing the all-wrong candidate
    assert {"csv", "md", "html", "svg", "pdf", "xml"} <= set(figures["unsafe"]), figures
    assert {kind: bad for kind, (files, bad) in figures["unsafe"].items() if bad} == {}


@pytest.mark.slow
def test_an_identical_candidate_passes_the_gate_while_the_machine_is_loaded(tmp_path):
    figures = chaos.gate_under_load(tmp_path)
    assert figures["exit"] == 0, figures["verdicts"]
    cases = {case.get("name"): case for case in ET.fromstring(figures["junit"]).iter("testcase")}
    for name in ("cost_per_1k", "latency_p95"):  # a self-hosted prompted model: tokens, not this machine's seconds
        assert cases[name].find("properties/property[@name='machine_dependent']").get("value") == "false"
