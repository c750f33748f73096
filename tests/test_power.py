"""Power, sample size and non-inferiority (harness.power) against hand computations, a numerical maximum-likelihood
reference, published values and simulations of the exact tests."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest, norm, t

from harness import power
from harness.errors import HarnessError


def paired(only_a: int, only_b: int, both: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-item outcomes of strategies a and b from the four cells of the paired table."""
    a = np.array([True] * only_a + [False] * only_b + [True] * both + [False] * neither)
    b = np.array([False] * only_a + [True] * only_b + [True] * both + [False] * neither)
    return a, b


def simulated_power(n: int, discordance: float, difference: float, *, alpha: float = 0.05, draws: int = 3000,
                    seed: int = 0) -> float:
    """Share of simulated held-out sets on which the two-sided exact McNemar test (the binomial test of the
    discordant items, as tests/test_stats.py checks stats.mcnemar_exact to be) rejects."""
    rng = np.random.default_rng(seed)
    only_b, only_a = (discordance + difference) / 2, (discordance - difference) / 2
    counts = rng.multinomial(n, [only_b, only_a, 1 - discordance], size=draws)
    rejected = [binomtest(int(k), int(k + m)).pvalue < alpha if k + m else False for k, m, _ in counts]
    return float(np.mean(rejected))


def test_items_needed_by_hand_from_connors_formula():
    # psi 0.10, delta 0.02, two-sided alpha 0.05, power 0.80:
    # (1.959964 * sqrt(0.10) + 0.841621 * sqrt(0.10 - 0.0004))^2 / 0.0004 = (0.619795 + 0.265614)^2 / 0.0004
    assert power.items_needed(0.02, 0.10) == 1960
    # one-sided: (1.644854 * 0.316228 + 0.265614)^2 / 0.0004 = 1543.7
    assert power.items_needed(0.02, 0.10, alternative="one-sided") == 1544
    assert power.items_needed(-0.02, 0.10) == 1960  # the sign says which strategy leads, not how hard it is


def test_power_and_detectable_difference_invert_each_other():
    assert power.mcnemar_power(1960, 0.10, 0.02) == pytest.approx(0.80, abs=0.001)
    detectable = power.detectable_difference(3080, 0.10)
    assert detectable == pytest.approx(0.01596, abs=1e-5)
    assert power.mcnemar_power(3080, 0.10, detectable) == pytest.approx(0.80, abs=1e-9)
    assert power.detectable_difference(300, 0.20) > power.detectable_difference(3000, 0.20)
    # two strategies that disagree on 1% of 100 items: no difference up to that 1% is detectable
    assert power.detectable_difference(100, 0.01) == math.inf
    assert power.detectable_difference(100, 0.0) == math.inf and power.mcnemar_power(100, 0.0, 0.0) == 0.0


@pytest.mark.parametrize("n,discordance,difference", [(1960, 0.10, 0.02), (770, 0.30, 0.06)])
def test_formula_agrees_with_a_simulation_of_the_exact_test(n, discordance, difference):
    # The exact test is a little conservative, so it detects slightly less often than the normal formula says.
    simulated = simulated_power(n, discordance, difference)
    assert simulated == pytest.approx(power.mcnemar_power(n, discordance, difference), abs=0.035)


def test_detectable_difference_is_detected_80_percent_of_the_time():
    detectable = power.detectable_difference(300, 0.25)
    assert simulated_power(300, 0.25, detectable, seed=1) == pytest.approx(0.80, abs=0.035)


def test_independent_discordance():
    # 80% and 82% accurate, erring independently: 0.8 * 0.18 + 0.2 * 0.82
    assert power.independent_discordance(0.80, 0.82) == pytest.approx(0.308)


@pytest.mark.parametrize("call,message", [
    (lambda: power.items_needed(0.05, 0.02), "exceeds discordance"),
    (lambda: power.items_needed(0.0, 0.1), "difference must be above 0"),
    (lambda: power.items_needed(0.02, 1.5), "discordance must be a share"),
    (lambda: power.items_needed(0.02, 0.1, power=0.3), "power must be at least 0.5"),
    (lambda: power.items_needed(0.02, 0.1, alternative="less"), "no alternative 'less'; known: two-sided"),
    (lambda: power.mcnemar_power(100, 0.1, 0.02, alpha=0.7), "alpha must be between 0 and 0.5"),
])
def test_bad_arguments_name_what_is_wrong(call, message):
    with pytest.raises(HarnessError, match=message):
        call()


# ------------------------------------------------------------------------------------------ non-inferiority


def restricted_mle_only_a(only_b: int, only_a: int, both: int, neither: int, delta0: float) -> float:
    """The probability of an a-only item maximising the multinomial likelihood under "b - a = delta0",
    found numerically: the reference for Tango's closed form."""
    from scipy.optimize import minimize

    counts = np.array([both, only_b, only_a, neither])

    def negative_log_likelihood(x):
        p_both, p_only_a = x
        cells = np.array([p_both, p_only_a + delta0, p_only_a, 1 - p_both - 2 * p_only_a - delta0])
        return 1e10 if np.any(cells <= 0) else -float(np.sum(counts * np.log(cells)))

    n = counts.sum()
    start = [both / n, max(only_a / n, 0.05)]
    return minimize(negative_log_likelihood, start, method="Nelder-Mead",
                    options={"xatol": 1e-12, "fatol": 1e-12, "maxiter": 20000}).x[1]


def tango_by_hand(only_b: int, only_a: int, both: int, neither: int, delta0: float) -> float:
    n = only_b + only_a + both + neither
    p_only_a = restricted_mle_only_a(only_b, only_a, both, neither, delta0)
    return (only_b - only_a - n * delta0) / math.sqrt(n * (2 * p_only_a + delta0 * (1 - delta0)))


def test_score_statistic_matches_the_numerical_maximum_likelihood():
    for delta0 in (-0.05, -0.01, 0.02):
        assert power._tango_z(delta0, 12, 20, 100) == pytest.approx(tango_by_hand(12, 20, 50, 18, delta0), rel=1e-6)


def test_score_test_at_no_margin_is_mcnemars_z():
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = paired(only_a=9, only_b=20, both=50, neither=21)
    result = power.noninferiority(a, b, margin=0.0)
    chi2 = mcnemar([[50, 9], [20, 21]], exact=False, correction=False).statistic
    assert power._tango_z(0.0, 20, 9, 100) == pytest.approx(math.sqrt(chi2))
    assert result.p_value == pytest.approx(norm.sf(math.sqrt(chi2)))


def test_lower_bound_inverts_the_test_and_matches_published_values():
    # Bentur et al. (2009), airway hyper-responsiveness before and after transplantation: 1 before-only,
    # 7 after-only of 21 patients. Tango's 95% interval of (before - after): -0.517 to -0.026
    # (Fagerland, Lydersen & Laake, Statistical Analysis of Contingency Tables, 2017, ch. 8).
    before, after = paired(only_a=1, only_b=7, both=1, neither=12)
    low = power.noninferiority(after, before, margin=0.0, alpha=0.025).lower
    high = -power.noninferiority(before, after, margin=0.0, alpha=0.025).lower
    assert (low, high) == (pytest.approx(-0.5172, abs=5e-4), pytest.approx(-0.0260, abs=5e-4))
    assert power._tango_z(low, 1, 7, 21) == pytest.approx(1.959964, abs=1e-6)


def test_non_inferiority_decision_and_its_bound_agree():
    a, b = paired(only_a=20, only_b=12, both=750, neither=218)  # b is 0.8 points worse on 1,000 items
    result = power.noninferiority(a, b, margin=0.03)
    assert result.estimate == pytest.approx(-0.008)
    assert result.non_inferior and result.lower > -0.03 and result.p_value < 0.05
    tight = power.noninferiority(a, b, margin=0.01)
    assert not tight.non_inferior and tight.lower < -0.01 and tight.lower == pytest.approx(result.lower)
    assert tight.p_value == pytest.approx(norm.sf(power._tango_z(-0.01, 12, 20, 1000)))


def test_no_flips_on_few_items_prove_nothing():
    # The Wald bound would be 0 here (no discordant item, no variance); the score bound allows for chance.
    a, b = paired(only_a=0, only_b=0, both=15, neither=5)
    result = power.noninferiority(a, b, margin=0.01)
    assert not result.non_inferior
    # with no flips the bound has a closed form: -z^2 / (n + z^2)
    assert result.lower == pytest.approx(-1.644854**2 / (20 + 1.644854**2), rel=1e-6)


def test_groups_shrink_the_effective_sample():
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(40), 25)
    favours_b = np.repeat(rng.random(40) < 0.5, 25)  # whole groups flip one way
    flip = rng.random(1000) < 0.2
    a = np.where(flip, ~favours_b, rng.random(1000) < 0.8)
    b = np.where(flip, favours_b, a)
    plain = power.noninferiority(a, b, margin=0.02)
    clustered = power.noninferiority(a, b, margin=0.02, groups=groups)
    assert clustered.estimate == plain.estimate and clustered.lower < plain.lower
    from harness.stats import design_effect

    deff = design_effect(b.astype(float) - a, groups)
    only_b, only_a = np.sum(~a & b) / deff, np.sum(a & ~b) / deff
    assert clustered.p_value == pytest.approx(t.sf(power._tango_z(-0.02, only_b, only_a, 1000 / deff), 39))
    singletons = power.noninferiority(a, b, margin=0.02, groups=np.arange(1000))  # t with 999 df: about normal
    assert (singletons.lower, singletons.p_value) == (pytest.approx(plain.lower, rel=1e-3),
                                                      pytest.approx(plain.p_value, rel=1e-3))


def test_margin_outside_a_fraction_is_refused():
    a, b = paired(1, 1, 1, 1)
    with pytest.raises(HarnessError, match="margin must be a fraction"):
        power.noninferiority(a, b, margin=1.0)
