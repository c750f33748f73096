"""What comparing two strategies on the same items can claim: the power of McNemar's test, the held-out items a
comparison needs, the smallest difference a held-out set can detect, and non-inferiority ("b is no worse than a
by more than a margin", the claim behind taking the cheaper option, and the regression gate's accuracy bound).

Power. McNemar's test sees only the discordant items, those exactly one of the two strategies gets right. With
discordance psi (their share of all items) and a true accuracy difference delta, its power at n items is, in
the normal approximation of Connor (1987; also Lachin 1992):

    power = Phi((|delta| sqrt(n) - z_alpha sqrt(psi)) / sqrt(psi - delta^2)),   z_alpha = z(1 - alpha/2) two-sided

so a comparison needs n = (z_alpha sqrt(psi) + z_power sqrt(psi - delta^2))^2 / delta^2 items, and at n items the
smallest detectable difference is the positive root of the same equation in delta. Neither statsmodels nor scipy
computes McNemar's power; tests/test_power.py checks these against simulations of the exact test. The power
functions need neither scipy nor statsmodels, so `harness plan-heldout` starts at once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from harness.errors import HarnessError
from harness.stats import design_effect, group_count

ALTERNATIVES = ("two-sided", "one-sided")


def mcnemar_power(n: int, discordance: float, difference: float, *, alpha: float = 0.05,
                  alternative: str = "two-sided") -> float:
    """The probability that McNemar's test at `alpha` detects a true accuracy `difference` (a fraction, 0.02 = two
    points) between two strategies on `n` items of which a share `discordance` is right for exactly one."""
    z_alpha = _z_alpha(alpha, alternative)
    _check_share("discordance", discordance)
    _check_difference(difference, discordance)
    if discordance == 0:  # no item tells the two apart: the test never rejects
        return 0.0
    root = math.sqrt(discordance - difference**2)
    if root == 0:  # every item is right for exactly one of them, always the same one
        return 1.0
    return NormalDist().cdf((abs(difference) * math.sqrt(n) - z_alpha * math.sqrt(discordance)) / root)


def items_needed(difference: float, discordance: float, *, alpha: float = 0.05, power: float = 0.8,
                 alternative: str = "two-sided") -> int:
    """The held-out items McNemar's test needs to detect a true accuracy `difference` (a fraction) with
    probability `power`, when a share `discordance` of items is right for exactly one of the two strategies."""
    _check_share("discordance", discordance)
    _check_difference(difference, discordance)
    if difference == 0:
        raise HarnessError("difference must be above 0: no held-out set detects a difference of nothing")
    z_power = _z_power(power)
    root = _z_alpha(alpha, alternative) * math.sqrt(discordance) + z_power * math.sqrt(discordance - difference**2)
    return math.ceil(root**2 / difference**2)


def detectable_difference(n: int, discordance: float, *, alpha: float = 0.05, power: float = 0.8,
                          alternative: str = "two-sided") -> float:
    """The smallest true accuracy difference (a fraction) that McNemar's test at `alpha` detects with
    probability `power` on `n` items with `discordance`; math.inf when no difference up to the discordance
    (the largest one possible) is detectable, e.g. when two strategies almost never disagree."""
    _check_share("discordance", discordance)
    if n < 1 or discordance == 0:
        return math.inf
    z_alpha, z_power = _z_alpha(alpha, alternative) * math.sqrt(discordance), _z_power(power)
    # delta sqrt(n) - z_alpha = z_power sqrt(psi - delta^2), squared: a quadratic in delta; its larger root
    # solves the unsquared equation when z_power >= 0.
    spread = (n + z_power**2) * discordance - z_alpha**2
    if spread < 0:
        return math.inf
    difference = (z_alpha * math.sqrt(n) + z_power * math.sqrt(spread)) / (n + z_power**2)
    return difference if difference <= discordance else math.inf


def independent_discordance(accuracy_a: float, accuracy_b: float) -> float:
    """The discordance of two strategies whose errors are independent: a planning value when nothing has run
    yet. Strategies that fail on the same hard items disagree on fewer, which makes a comparison cheaper."""
    _check_share("accuracy", accuracy_a)
    _check_share("accuracy", accuracy_b)
    return accuracy_a * (1 - accuracy_b) + (1 - accuracy_a) * accuracy_b


def plan_lines(*, accuracy: float, difference_points: float, discordance: float | None = None,
               alpha: float = 0.05, power: float = 0.8, alternative: str = "two-sided",
               items: int | None = None) -> list[str]:
    """What `harness plan-heldout` prints: the held-out items needed to tell apart two strategies `difference_points`
    apart near `accuracy` (discordance: given, or as if their errors were independent), and what `items` items
    can detect. Errors name the command's flags."""
    if not 0 < accuracy < 1:
        raise HarnessError(f"--accuracy must be a fraction between 0 and 1 (0.8 for 80%), got {accuracy:g}")
    difference = difference_points / 100.0
    other = accuracy + difference if accuracy + difference <= 1 else accuracy - difference
    if not 0 < difference_points < 100 or other < 0:
        raise HarnessError(f"--difference is in percentage points, above 0 and possible at accuracy {accuracy:g} "
                           f"(2 for two points), got {difference_points:g}")
    if items is not None and items < 1:
        raise HarnessError(f"--items must be a positive number of items, got {items}")
    # Two accuracies bound the share of items exactly one gets right: at least their difference, at most
    # what is left when as few items as possible are right for both.
    least, most = difference, accuracy + other - 2 * max(0.0, accuracy + other - 1)
    assumed = discordance is None
    if assumed:
        discordance = independent_discordance(accuracy, other)
    elif not least <= discordance <= most:
        raise HarnessError(f"--discordance {discordance:g} is impossible for strategies {accuracy:.1%} and "
                           f"{other:.1%} accurate: it lies between {least:.3g} and {most:.3g}")
    n = items_needed(difference, discordance, alpha=alpha, power=power, alternative=alternative)
    interval = 100 * NormalDist().inv_cdf(0.975) * math.sqrt(accuracy * (1 - accuracy) / n)
    lines = [f"held-out items to label: {n:,}",
             f"  to tell {accuracy:.1%} from {other:.1%} accuracy ({difference_points:g} points) {power:.0%} of the "
             f"time with McNemar's test ({alternative}, alpha {alpha:g}),",
             f"  when {discordance:.1%} of the items are right for exactly one of the two strategies"
             + (" (assumed: errors independent)" if assumed else ""),
             f"  one strategy's 95% accuracy interval at that size: about +-{interval:.1f} points"]
    if items is not None:
        detectable = detectable_difference(items, discordance, alpha=alpha, power=power, alternative=alternative)
        lines.append(f"{items:,} items detect a difference of {100 * detectable:.1f} points {power:.0%} of the time"
                     if math.isfinite(detectable) else
                     f"{items:,} items cannot detect any difference at this discordance")
    return lines


def _z_alpha(alpha: float, alternative: str) -> float:
    if alternative not in ALTERNATIVES:
        raise HarnessError(f"no alternative '{alternative}'; known: {', '.join(ALTERNATIVES)}")
    if not 0 < alpha < 0.5:
        raise HarnessError(f"alpha must be between 0 and 0.5, got {alpha}")
    return NormalDist().inv_cdf(1 - alpha / 2 if alternative == "two-sided" else 1 - alpha)


def _z_power(power: float) -> float:
    # Below 0.5 the squared equation's larger root is not the detectable difference; nobody plans for that.
    if not 0.5 <= power < 1:
        raise HarnessError(f"power must be at least 0.5 and below 1, got {power}")
    return NormalDist().inv_cdf(power)


def _check_share(name: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise HarnessError(f"{name} must be a share of items between 0 and 1, got {value}")


def _check_difference(difference: float, discordance: float) -> None:
    if abs(difference) > discordance:
        raise HarnessError(f"difference {difference:g} exceeds discordance {discordance:g}: accuracies can differ "
                           "only on the items exactly one strategy gets right")


# ------------------------------------------------------------------------------------------ non-inferiority


@dataclass(frozen=True)
class NonInferiority:
    """Whether b is no worse than a by `margin` or more (accuracies as fractions, 0.01 = one point)."""

    estimate: float  # accuracy of b minus accuracy of a
    lower: float  # one-sided (1 - alpha) lower confidence bound of the estimate
    p_value: float  # one-sided, of H0 "b is worse than a by margin or more"
    margin: float
    alpha: float

    @property
    def non_inferior(self) -> bool:
        """H0 rejected: b is worse by less than `margin` (equivalently, `lower` > -margin)."""
        return self.p_value < self.alpha


def noninferiority(a_correct, b_correct, *, margin: float, alpha: float = 0.05, groups=None) -> NonInferiority:
    """Tango's (1998) score test of "b is worse than a by `margin` or more" on paired outcomes, and the lower
    bound that inverts it. The score test keeps its level where the Wald interval fails (no discordant items
    make the Wald bound the point estimate itself, so 20 items with no flips would "prove" anything); it is
    also the test Nam (1997) derived for matched-pairs equivalence. With `groups` the counts are divided by
    the design effect of b - a (Rao & Scott 1992) and the statistic is referred to Student's t with groups - 1
    degrees of freedom, as harness.stats.paired_pvalue does."""
    from scipy.optimize import brentq
    from scipy.stats import norm, t

    if not 0 <= margin < 1:
        raise HarnessError(f"non-inferiority margin must be a fraction in [0, 1) (0.01 = one point), got {margin}")
    _z_alpha(alpha, "one-sided")  # checks alpha
    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    if len(a) == 0:
        return NonInferiority(float("nan"), float("nan"), float("nan"), margin, alpha)
    estimate = float(np.mean(b.astype(float) - a))
    deff = 1.0 if groups is None else design_effect(b.astype(float) - a, groups)
    only_b, only_a, n = np.sum(~a & b) / deff, np.sum(a & ~b) / deff, len(a) / deff
    reference = norm if groups is None else t(group_count(groups) - 1)
    z = reference.ppf(1 - alpha)
    if only_a == n:  # every item a-only: the difference is -1 and nothing lies below
        lower = -1.0
    else:
        lower = brentq(lambda d: _tango_z(d, only_b, only_a, n) - z, -1 + 1e-12, estimate, xtol=1e-10)
    return NonInferiority(estimate=estimate, lower=float(lower),
                          p_value=float(reference.sf(_tango_z(-margin, only_b, only_a, n))), margin=margin,
                          alpha=alpha)


def _tango_z(delta0: float, only_b: float, only_a: float, n: float) -> float:
    """Tango's score statistic for "difference = delta0": the observed difference over its standard error at
    the maximum-likelihood cell probabilities restricted to delta0 (Tango's closed form)."""
    numerator = only_b - only_a - n * delta0
    if numerator == 0:
        return 0.0
    quad_a, quad_b = 2 * n, -only_b - only_a + (2 * n - only_b + only_a) * delta0
    quad_c = -only_a * delta0 * (1 - delta0)
    p_only_a = (math.sqrt(quad_b**2 - 4 * quad_a * quad_c) - quad_b) / (2 * quad_a)
    return numerator / math.sqrt(max(n * (2 * p_only_a + delta0 * (1 - delta0)), 1e-300))
