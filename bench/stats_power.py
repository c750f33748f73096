"""Error rates of the statistics behind harness's two verdicts, on simulated paired outcomes, each beside its target:

- the regression gate's accuracy rule (harness.gate.check.accuracy_check, default policy: alpha 0.05, tolerance
  2 points): false alarms when nothing changed, and how often it fails a true 2-point drop on the held-out size
  `harness plan-heldout --one-sided` asks for;
- the report's "the lead is real" claim: the most accurate candidate against the runner-up, McNemar's test with
  Holm's correction over the decision's family (harness.stats.decision_family's p-values: paired_pvalue, holm).
  False alarms among equally accurate candidates, power at a true 2-point lead on the size `harness plan-heldout`
  asks for, and, for contrast, the same claim under Holm across all pairs of a run that also holds a 37-point
  learning curve;
- items correlated within groups (a payer, a conversation): the coverage of the 95% accuracy and paired-difference
  intervals with and without groups (harness.stats.bootstrap_ci, paired_diff_ci), and the lead test's false alarms.

    .venv/bin/python bench/stats_power.py [--draws 1000] [--seed 0]

A few minutes on 2 cores at the default 1,000 draws per row (Monte Carlo error about +-1.4 points at 95%).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
from scipy.stats import binom

from harness import power, stats
from harness.config import compose
from harness.gate.check import Policy, accuracy_check

ALPHA = 0.05  # the report's significance level
GATE = Policy.from_config(compose([]).gate)  # the project's policy (conf/gate/default.yaml)


def paired_cells(rng, n: int, discordance: float, difference: float, accuracy_a: float = 0.8):
    """Outcomes of a and b on n items: b-only items outnumber a-only ones by `difference` (a fraction)."""
    only_b, only_a = (discordance + difference) / 2, (discordance - difference) / 2
    cell = rng.choice(4, size=n, p=[only_a, only_b, accuracy_a - only_a, 1 - accuracy_a - only_b])
    return np.isin(cell, (0, 2)), np.isin(cell, (1, 2))  # a right: a-only or both; b right: b-only or both


# --------------------------------------------------------------------------------------------------- the gate


def gate_fail_rate(rng, draws: int, n: int, flip_rate: float, drop_points: float) -> float:
    fails = 0
    for _ in range(draws):
        cand, base = paired_cells(rng, n, flip_rate, drop_points / 100.0)  # the baseline leads by the drop
        fails += accuracy_check("sim", base, cand, GATE).status == "fail"
    return fails / draws


# ------------------------------------------------------------------------------------------------ the lead


def lead_claimed(correct: np.ndarray, groups=None) -> tuple[int, bool]:
    """The report's claim on one simulated run: the most accurate column, and whether its lead over the
    runner-up is significant after Holm's correction over its comparisons with every other column."""
    order = np.argsort(-correct.mean(axis=0), kind="stable")
    best, runner_up = order[0], order[1]
    others = [j for j in range(correct.shape[1]) if j != best]
    p = [stats.paired_pvalue(correct[:, best], correct[:, j], groups=groups) for j in others]
    return int(best), stats.holm(p)[others.index(runner_up)] < ALPHA


def all_pairs_claimed(correct: np.ndarray) -> tuple[int, bool]:
    """The same claim under Holm across every pair of columns. The exact McNemar p-values are computed in one
    array (statsmodels' formula: twice the binomial tail of the smaller discordant count, at most 1), since
    820 calls of stats.mcnemar_exact per draw would take a second."""
    x = correct.astype(float)
    only_row = x.T @ (1 - x)  # [i, j]: items column i gets right and column j does not
    i, j = np.triu_indices(x.shape[1], 1)
    b, c = only_row[i, j], only_row[j, i]
    p = np.where(b + c > 0, np.minimum(1.0, 2 * binom.cdf(np.minimum(b, c), b + c, 0.5)), 1.0)
    adjusted = np.array(stats.holm(p))
    order = np.argsort(-correct.mean(axis=0), kind="stable")
    best, runner_up = sorted(order[:2])
    return int(order[0]), adjusted[(i == best) & (j == runner_up)][0] < ALPHA


def equal_candidates(rng, n: int, k: int = 4) -> np.ndarray:
    """k candidates equally accurate (80%) that find the same items hard: each item's chance of being right is
    shared (Beta(4, 1)), so two candidates disagree on about 27% of items."""
    chance = rng.beta(4, 1, n)
    return rng.random((n, k)) < chance[:, None]


def leading_candidates(rng, n: int, discordance: float) -> np.ndarray:
    """The best (82%) and the runner-up (80%) disagreeing on `discordance` of the items, and two weaker
    candidates (about 72% and 64%) that err where the runner-up does and more."""
    runner_up, best = paired_cells(rng, n, discordance, 0.02)
    weaker = [runner_up & (rng.random(n) < keep) for keep in (0.9, 0.8)]
    return np.column_stack([best, runner_up, *weaker])


def with_sweep(rng, correct: np.ndarray, points: int = 37) -> np.ndarray:
    """A learning curve's points (accuracies 50% to 78%) added to a run's candidates."""
    n = correct.shape[0]
    curve = rng.random((n, points)) < np.linspace(0.50, 0.78, points)[None, :]
    return np.column_stack([correct, curve])


def lead_rate(rng, draws: int, make, claim=lead_claimed, truly_best: int | None = None) -> float:
    """Share of simulated runs that claim a significant lead (for the truly best column, when there is one)."""
    hits = 0
    for _ in range(draws):
        best, significant = claim(make())
        hits += significant and (truly_best is None or best == truly_best)
    return hits / draws


# ------------------------------------------------------------------------------------------------ groups


def clustered_accuracy(rng, n_groups: int, size: int, accuracy: float, icc: float):
    """Correctness whose groups differ in accuracy: Beta group accuracies with mean `accuracy` and
    intra-class correlation `icc`."""
    total = 1 / icc - 1
    group_accuracy = rng.beta(accuracy * total, (1 - accuracy) * total, n_groups)
    groups = np.repeat(np.arange(n_groups), size)
    return rng.random(n_groups * size) < group_accuracy[groups], groups


def clustered_pair(rng, n_groups: int, size: int, difference: float, spread: float, discordance: float = 0.2):
    """Outcomes of a and b where b's advantage differs by group: uniform on difference +- spread."""
    groups = np.repeat(np.arange(n_groups), size)
    advantage = rng.uniform(difference - spread, difference + spread, n_groups)[groups]
    u = rng.random(len(groups))
    only_b = u < (discordance + advantage) / 2
    only_a = (u >= (discordance + advantage) / 2) & (u < discordance)
    both = (u >= discordance) & (u < discordance + 0.7)
    return only_a | both, only_b | both, groups


def coverage(rng, draws: int, make, interval, truth: float) -> tuple[float, float]:
    """Share of 95% intervals holding the truth: (without groups, with groups)."""
    plain = grouped = 0
    for _ in range(draws):
        *values, groups = make()
        low, high = interval(*values)[-2:]
        plain += low <= truth <= high
        low, high = interval(*values, groups=groups)[-2:]
        grouped += low <= truth <= high
    return plain / draws, grouped / draws


def pair_false_alarms(rng, draws: int, make) -> tuple[float, float]:
    plain = grouped = 0
    for _ in range(draws):
        a, b, groups = make()
        plain += stats.paired_pvalue(a, b) < ALPHA
        grouped += stats.paired_pvalue(a, b, groups=groups) < ALPHA
    return plain / draws, grouped / draws


# ------------------------------------------------------------------------------------------------- the table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=1000, help="simulated runs per row (default: 1000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng, draws = np.random.default_rng(args.seed), args.draws
    started, load = time.perf_counter(), os.getloadavg()[0]
    rows = []

    def row(check: str, setting: str, measured: str, target: str) -> None:
        rows.append((check, setting, measured, target))
        print(f"  {check}: {setting}: {measured}", flush=True)

    gate_n = power.items_needed(0.02, 0.10, alternative="one-sided")
    for n in (770, 3080):
        row("gate, no change: false alarms", f"n {n:,}, 10% of items flip",
            f"{gate_fail_rate(rng, draws, n, 0.10, 0):.3f}", "<= 0.05")
    row("gate, true 2-point drop: fails", f"n {gate_n:,} (plan-heldout --one-sided), 10% flip",
        f"{gate_fail_rate(rng, draws, gate_n, 0.10, 2.0):.3f}", "about 0.80")

    for k, n in ((2, 300), (4, 300), (4, 3080)):
        row(f"lead, {k} equal candidates: false claims", f"n {n:,}, 27% discordant",
            f"{lead_rate(rng, draws, lambda: equal_candidates(rng, n, k)):.3f}", "<= 0.05")
    lead_n = power.items_needed(0.02, 0.10)
    row("lead, true 2 points: claimed", f"n {lead_n:,} (plan-heldout), 10% discordant, decision family",
        f"{lead_rate(rng, draws, lambda: leading_candidates(rng, lead_n, 0.10), truly_best=0):.3f}", "about 0.80")
    swept = lead_rate(rng, draws, lambda: with_sweep(rng, leading_candidates(rng, lead_n, 0.10)),
                      claim=all_pairs_claimed, truly_best=0)
    row("lead, true 2 points: claimed", "same, Holm over all 820 pairs of a run with a 37-point sweep",
        f"{swept:.3f}", "none: what Holm over all pairs did")

    groups_note = "60 groups of 10, ICC 0.3"
    plain, grouped = coverage(rng, draws, lambda: clustered_accuracy(rng, 60, 10, 0.8, 0.3), stats.bootstrap_ci, 0.8)
    row("accuracy 95% interval: coverage", groups_note, f"without groups {plain:.3f}, with {grouped:.3f}",
        "with groups 0.93-0.97")
    pair_note = "60 groups of 20, b's 2-point lead varies +-15 by group"
    plain, grouped = coverage(rng, draws, lambda: clustered_pair(rng, 60, 20, 0.02, 0.15), stats.paired_diff_ci, 0.02)
    row("paired difference 95% interval: coverage", pair_note, f"without groups {plain:.3f}, with {grouped:.3f}",
        "with groups 0.93-0.97")
    plain, grouped = pair_false_alarms(rng, draws, lambda: clustered_pair(rng, 60, 20, 0.0, 0.15))
    row("lead test, no true difference: false alarms", "60 groups of 20, the lead varies +-15 by group",
        f"without groups {plain:.3f}, with {grouped:.3f}", "with groups <= 0.05")

    print(f"\n{draws:,} draws per row, seed {args.seed}; {time.perf_counter() - started:.0f} s "
          f"(load average {load:.2f} at the start, {os.cpu_count()} cores)\n")
    print("| check | setting | measured | target |\n|---|---|---|---|")
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
