"""The regression gate inside a team's own test suite: the `harness_gate` fixture asserts that a candidate
configuration (a changed prompt, model or retrieval setting) is no worse than a committed baseline.

    def test_support_prompt_is_no_worse(harness_gate):
        harness_gate("support-v3", "experiment=support")

Installed with the package as the pytest plugin `harness` (entry point `pytest11`; disable with
`-p no:harness`). A failing gate fails the test with the failed checks and the broken items; a bad baseline or
override is an error. The summary and JUnit files land in the test's tmp_path, under regress/.
"""
from __future__ import annotations

import pytest


@pytest.fixture
def harness_gate(tmp_path):
    """gate(baseline, *overrides, candidate=None, strategies=()) -> harness.gate.check.Outcome; fails the test when
    the gate fails. Arguments as `harness regress`: a baseline name or path, Hydra overrides (gate.* ones adjust
    the policy), an existing run to compare instead of running, the strategies to compare."""
    def gate(baseline, *overrides: str, candidate=None, strategies=()):
        from harness.gate import check, outputs

        overrides = list(overrides)
        if candidate is None and not any(o.startswith("output_dir=") for o in overrides):
            overrides.append(f"output_dir={tmp_path / 'reports'}")  # candidate runs stay out of the project
        outcome = check.check(baseline, overrides, candidate=candidate, strategies=strategies)
        outputs.write(outcome, junit=tmp_path / "regress" / "junit.xml",
                             summary=tmp_path / "regress" / "summary.md")
        if not outcome.passed:
            pytest.fail(outputs.failure_text(outcome), pytrace=False)
        return outcome

    return gate
