"""The accuracy gate's error rates on simulated paired outcomes, using the configured policy (conf/gate/default.yaml)
and the decision function itself.

Each item of a held-out set of `n` is, independently: broken (baseline right, candidate wrong), fixed (the reverse),
or unchanged. `flip_rate` is the share of items that flip either way; a true drop of d points makes broken items
d/100 more frequent than fixed ones. Run this file as a script to print the power table quoted in docs/regress.md.
"""
from __future__ import annotations

import numpy as np
import pytest

from harness.config import compose
from harness.gate.check import Policy, accuracy_check

BASE_ACCURACY = 0.8
DRAWS = 2000


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.from_config(compose([]).gate)


def fail_rate(policy: Policy, *, n: int, flip_rate: float, drop_points: float, draws: int = DRAWS,
              seed: int = 0) -> float:
    """Share of simulated candidates the gate fails."""
    drop = drop_points / 100.0
    p_broken, p_fixed = (flip_rate + drop) / 2, (flip_rate - drop) / 2
    # categories: 0 broken, 1 fixed, 2 both right, 3 both wrong
    probabilities = [p_broken, p_fixed, BASE_ACCURACY - p_broken, 1 - BASE_ACCURACY - p_fixed]
    rng = np.random.default_rng(seed)
    fails = 0
    for _ in range(draws):
        category = rng.choice(4, size=n, p=probabilities)
        base, cand = np.isin(category, (0, 2)), np.isin(category, (1, 2))
        fails += accuracy_check("sim", base, cand, policy).status == "fail"
    return fails / draws


@pytest.mark.parametrize("n,flip_rate", [(60, 0.3), (200, 0.10), (770, 0.05), (770, 0.20), (3080, 0.10)])
def test_false_alarm_rate_under_no_change_is_at_most_alpha(policy, n, flip_rate):
    rate = fail_rate(policy, n=n, flip_rate=flip_rate, drop_points=0.0)
    assert rate <= policy.alpha == 0.05


@pytest.mark.parametrize("n,flip_rate,at_least", [(770, 0.05, 0.75), (1540, 0.10, 0.75), (3080, 0.10, 0.95)])
def test_a_true_drop_of_the_configured_size_fails_most_of_the_time(policy, n, flip_rate, at_least):
    rate = fail_rate(policy, n=n, flip_rate=flip_rate, drop_points=policy.max_accuracy_drop_points)
    assert rate >= at_least


def test_a_significant_drop_well_inside_the_tolerance_passes(policy):
    # A 0.5-point drop on 20,000 items is detectable but smaller than the 2-point tolerance, and the data say so.
    assert fail_rate(policy, n=20000, flip_rate=0.05, drop_points=0.5, draws=200) <= 0.05


def test_a_large_drop_on_a_small_set_fails(policy):
    assert fail_rate(policy, n=100, flip_rate=0.2, drop_points=15.0, draws=500) >= 0.9


if __name__ == "__main__":
    gate = Policy.from_config(compose([]).gate)
    print(f"alpha {gate.alpha}, tolerance {gate.max_accuracy_drop_points} points; {DRAWS} draws per cell")
    print("n      flip rate  false alarms  power at a true drop of the tolerance")
    for size in (200, 770, 1540, 3080):
        for rate in (0.02, 0.05, 0.10, 0.20):
            null = fail_rate(gate, n=size, flip_rate=rate, drop_points=0.0)
            power = fail_rate(gate, n=size, flip_rate=rate, drop_points=gate.max_accuracy_drop_points, seed=1)
            print(f"{size:<6} {rate:<10.2f} {null:<13.3f} {power:.3f}")
