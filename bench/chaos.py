"""The chaos figures, measured in one run: every scenario of tests/chaos.py and tests/chaos_inputs.py against the fake OpenAI-compatible
server (tests/fake_openai.py, in its own process, counting requests), printed as one table with the machine's
load average, which the timings depend on.

    .venv/bin/python bench/chaos.py [--kills 10]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.chaos

import harness  # noqa: E402,F401  (sets the offline environment before litellm is imported)
from tests import chaos, chaos_inputs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs before the run may complete")
    args = parser.parse_args()
    started, load_before = time.monotonic(), os.getloadavg()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="harness-chaos-") as tmp:
        def scenario(name, **options):
            folder = Path(tmp) / name
            folder.mkdir()
            return getattr(chaos if hasattr(chaos, name) else chaos_inputs, name)(folder, **options)

        k = scenario("kills_and_resumes", kills=args.kills)
        rows += [("SIGKILLs at random moments, each followed by `harness resume`", f"{k['kills']}", ">= 10"),
                 ("  records lost / duplicate rows / repeat calls for recorded items",
                  f"{k['lost_records']} / {k['duplicate_rows']} / {k['repeat_calls']}", "0 / 0 / 0"),
                 ("  requests at the server for the items (in-flight items asked again)",
                  f"{k['requests']} for {k['items']}", f"<= {k['items'] + 2 * k['kills']}"),
                 ("  slowest exit of a killed run's worker processes; tracebacks in logs",
                  f"{k['max_exit_s']:.2f} s; {k['tracebacks']}", "< 2 s; 0"),
                 ("  final status", k["status"], "complete")]
        c = scenario("concurrent_resumes")
        rows += [("two concurrent resumes: extra paid calls", f"{c['extra_paid_calls']}", "0"),
                 ("  exit codes; rows / record lines for 200 items", f"{c['exits']}; {c['rows']} / {c['record_lines']}",
                  "[0, 2]; 200 / 200")]
        f = scenario("kill_while_finishing")
        accepted = sum(code != 2 for code in f["refused"].values())
        rows += [("kill between status and report: shown as", f["shown_as"], "interrupted (process gone)"),
                 ("  accepted by baseline save, regress (either side), compare", f"{accepted} of {len(f['refused'])}",
                  "0"),
                 ("  resume: requests; status after", f"{f['resume_requests']}; {f['status_after']}", "0; complete")]
        m = scenario("mixed_faults")
        rows += [(f"{m['faults']} faults in {m['items']} requests (429, 500, hang, malformed, 422)",
                  f"{m['predicted']} predicted + {m['errored']} errored, {m['unaccounted']} unaccounted",
                  "0 unaccounted"),
                 ("  resume --retry-errors: requests; errors left",
                  f"{m['retried_requests']}; {m['errors_after_retry']}", f"{m['errored']}; 0")]
        u = scenario("all_unauthorised")
        rows += [("all-401 server: exit code; status", f"{u['exit']}; {u['status']}", "2; failed"),
                 ("  then resume --retry-errors: requests; status", f"{u['retried_requests']}; {u['status_after']}",
                  f"{u['records']}; complete"),
                 ("  resume of the complete run: manifest unchanged", str(u["manifest_unchanged"]), "True"),
                 ("canary API key hits over every output and log", f"{u['canary_hits']}", "0")]
        bad = scenario("malformed_inputs")
        handled = sum(r["exit"] == 2 and r["one_line"] and r["names_it"] for r in bad)
        rows += [("malformed inputs: one line naming key/file/row/column, exit 2", f"{handled} of {len(bad)}",
                  ">= 20, all")]
        h = scenario("hostile_text")
        rows += [("formula/script payloads left active: " + ", ".join(h["unsafe"]),
                  ", ".join(f"{bad} in {files}" for files, bad in h["unsafe"].values()), "0 everywhere")]
        g = scenario("gate_under_load")
        rows += [("identical candidate gated while 2 busy processes load the machine",
                  "PASS" if g["exit"] == 0 else f"FAIL ({g['exit']})", "PASS"),
                 ("  1-min load average then; raw p95 latency change",
                  f"{g['load_1min']:.1f}; {g['raw_p95_change_pct']:+.0f}%", "(machine-dependent)")]
    width = max(len(row[0]) for row in rows)
    print(f"load average before: {' / '.join(f'{x:.2f}' for x in load_before)} (1 / 5 / 15 min), "
          f"{os.cpu_count()} cores")
    measured_width = max(len(row[1]) for row in rows)
    print(f"{'figure':<{width}}  {'measured':<{measured_width}}  target")
    for figure, measured, target in rows:
        print(f"{figure:<{width}}  {measured:<{measured_width}}  {target}")
    print(f"load average after: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{time.monotonic() - started:.0f} s in all")


if __name__ == "__main__":
    main()
