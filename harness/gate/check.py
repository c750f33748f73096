"""The regression gate: a candidate compared item by item with a baseline, and the policy (conf/gate/) that
passes or fails it. What differs (items, classes, flips, changed config) comes from harness.gate.diff;
the JUnit XML and Markdown outputs from harness.gate.outputs.

The accuracy rule. "Fail when accuracy drops by more than X points and the drop is significant", read as
"observed drop > X and p < alpha", catches a true drop of exactly X only about half of the time: the observed
drop lands above X about as often as below. So the gate fails when the candidate is significantly worse (a
one-sided exact McNemar test of "no drop" at alpha) and the drop may exceed X (the candidate is not shown
non-inferior at margin X: its one-sided 1-alpha lower bound, harness.power.noninferiority, the one the report's
"no worse" claim uses, reaches a drop of X). Under no true change it fails at most alpha of the time (the test
alone bounds that); under a true drop of X the bound reaches X with probability about 1-alpha, so the gate fails
about as often as the test detects the drop (at most about 1-alpha); a significant drop that the data show to be
smaller than X passes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness import metrics
from harness.errors import HarnessError, choices
from harness.gate import baselines
from harness.gate import diff, work
from harness.gate.baselines import Baseline
from harness.power import noninferiority
from harness.run.directory import RunDir
from harness.run.state import run_state
from harness.stats import mcnemar_exact, paired_diff_ci

POLICY_KEYS = ("max_accuracy_drop_points", "alpha", "protected_categories", "protected_max_drop_points",
               "max_cost_per_1k_rise_pct", "max_p95_latency_rise_pct")


@dataclass(frozen=True)
class Policy:
    max_accuracy_drop_points: float | None
    alpha: float
    protected_categories: dict[str, float]  # gold label -> max drop in points
    max_cost_per_1k_rise_pct: float | None
    max_p95_latency_rise_pct: float | None

    @classmethod
    def from_config(cls, node) -> "Policy":
        from omegaconf import OmegaConf

        gate = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
        unknown = sorted(set(gate) - set(POLICY_KEYS))
        if unknown:
            raise HarnessError(f"no gate key '{unknown[0]}'; known: {', '.join(POLICY_KEYS)}")
        missing = [k for k in POLICY_KEYS if k not in gate]
        if missing:
            raise HarnessError(f"gate key '{missing[0]}' is required (see conf/gate/default.yaml)")
        if not 0 < float(gate["alpha"]) < 0.5:
            raise HarnessError(f"gate.alpha must be between 0 and 0.5, got {gate['alpha']}")
        protected = gate["protected_categories"] or {}
        if not isinstance(protected, dict):  # a list: every label gets the shared limit
            protected = {str(label): None for label in protected}
        default = gate["protected_max_drop_points"]
        return cls(max_accuracy_drop_points=gate["max_accuracy_drop_points"], alpha=float(gate["alpha"]),
                   protected_categories={str(k): float(default if v is None else v) for k, v in protected.items()},
                   max_cost_per_1k_rise_pct=gate["max_cost_per_1k_rise_pct"],
                   max_p95_latency_rise_pct=gate["max_p95_latency_rise_pct"])


@dataclass
class Check:
    """One gate check for one strategy; `status` is "pass", "fail" or "skip" (its limit is null)."""

    strategy: str
    name: str  # accuracy | class:<label> | cost_per_1k | latency_p95
    status: str
    baseline: float
    candidate: float
    change: float  # points for accuracy checks, percent for cost and latency
    message: str
    unit: str = "share"  # of baseline and candidate: share (of items right), or a harness.gate.work unit
    machine_dependent: bool = False  # whether the values depend on the machine (and its load) that ran each side


@dataclass
class Comparison:
    strategy: str
    n: int
    accuracy: tuple[float, float]  # baseline, candidate
    delta_points: tuple[float, float, float]  # candidate - baseline, 95% paired bootstrap low, high
    mcnemar_p: float  # two-sided exact
    cost_per_1k_usd: tuple[float, float]
    latency_p95_ms: tuple[float, float]
    per_class: pd.DataFrame  # label, n, baseline, candidate, delta_points, broken, fixed
    flips: pd.DataFrame  # kind (broken|fixed), item_id, text, gold, baseline_pred, candidate_pred, candidate_error
    changes: list[str]
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.status != "fail" for c in self.checks)


@dataclass
class Outcome:
    baseline: str
    candidate: Path
    heldout_hash: str
    comparisons: list[Comparison]
    not_compared: dict[str, str] = field(default_factory=dict)  # strategy -> why
    changes: list[str] = field(default_factory=list)  # config changes outside any strategy
    overrides: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons)


# ------------------------------------------------------------------------------------------------- the checks


def accuracy_check(strategy: str, base_correct, cand_correct, policy: Policy) -> Check:
    """The accuracy decision (see the module docstring) from paired per-item outcomes."""
    from scipy.stats import binomtest

    base, cand = np.asarray(base_correct, bool), np.asarray(cand_correct, bool)
    n, broken, fixed = len(base), int(np.sum(base & ~cand)), int(np.sum(~base & cand))
    change = 100.0 * (fixed - broken) / n
    limit = policy.max_accuracy_drop_points
    values = dict(strategy=strategy, name="accuracy", baseline=float(base.mean()), candidate=float(cand.mean()),
                  change=change)
    if limit is None:
        return Check(status="skip", message="disabled (gate.max_accuracy_drop_points is null)", **values)
    # McNemar's exact test is the binomial test of the flipped items: under no change each is a break with
    # probability 1/2.
    p_one_sided = binomtest(broken, broken + fixed, alternative="greater").pvalue if broken + fixed else 1.0
    # The drop's upper bound is Tango's score bound, which allows for chance in how many items flip at all (an
    # interval from the binomial test alone collapses to the observed drop when every flip is a break). It
    # replaced a Wald bound, which is too narrow when few items flip: in tests/test_gate_power.py's table only
    # the 2% flip-rate rows moved (power at a true drop of the tolerance up 2-4 points, false alarms <= 0.02).
    bound = noninferiority(base, cand, margin=limit / 100.0, alpha=policy.alpha)
    drop_high = -100.0 * bound.lower
    failed = p_one_sided < policy.alpha and not bound.non_inferior
    why = (f"{broken} broken, {fixed} fixed; one-sided McNemar p={p_one_sided:.3g} (alpha {policy.alpha}); "
           f"drop up to {drop_high:.1f} points at {1 - policy.alpha:.0%} confidence (tolerance {limit:g})")
    return Check(status="fail" if failed else "pass", message=why, **values)


def _class_checks(strategy: str, per_class: pd.DataFrame, policy: Policy) -> list[Check]:
    checks = []
    for label, limit in policy.protected_categories.items():
        row = per_class.loc[label]
        failed = -row["delta_points"] > limit
        checks.append(Check(strategy=strategy, name=f"class:{label}", status="fail" if failed else "pass",
                            baseline=row["baseline"], candidate=row["candidate"], change=row["delta_points"],
                            message=f"{int(row['broken'])} broken, {int(row['fixed'])} fixed of {int(row['n'])}; "
                                    f"protected, may drop at most {limit:g} points"))
    return checks


def _rise_check(strategy: str, name: str, measure: work.Measure, limit: float | None, key: str) -> Check:
    base, cand = float(measure.baseline), float(measure.candidate)
    if base > 0:
        change = 100.0 * (cand - base) / base
    else:
        change = 0.0 if cand <= 0 else math.inf
    values = dict(strategy=strategy, name=name, baseline=base, candidate=cand, change=change, unit=measure.unit,
                  machine_dependent=measure.machine_dependent)
    if limit is None:
        return Check(status="skip", message=f"disabled (gate.{key} is null)", **values)
    return Check(status="fail" if change > limit else "pass",
                 message=f"may rise at most {limit:g}%; compares {measure.basis}", **values)


# ------------------------------------------------------------------------------------------------- comparing


def compare(baseline: Baseline, candidate: RunDir, policy: Policy, strategies=()) -> Outcome:
    """Compares every strategy present in both (or only `strategies`), item by item."""
    manifest = candidate.read_manifest()
    diff.same_items(baseline, manifest, candidate.path)
    records = candidate.load_records()
    state = run_state(candidate, records)
    if not state.complete:
        raise HarnessError(f"{candidate.path}: the candidate run is {state.describe()}; the gate compares "
                           f"complete runs only: finish it with `harness resume {candidate.path}`")
    in_candidate = list(dict.fromkeys(records["strategy"]))
    wanted = list(strategies) or baseline.strategies
    common = [s for s in wanted if s in in_candidate and s in baseline.strategies]
    if not common:
        raise HarnessError(f"{candidate.path}: no strategy to compare; baseline has "
                           f"{', '.join(baseline.strategies)}, candidate has {', '.join(in_candidate) or '(none)'}")
    _check_protected(policy, baseline)
    not_compared = {s: "only in the baseline" for s in wanted if s not in in_candidate}
    not_compared.update({s: "only in the candidate" for s in in_candidate if s not in baseline.strategies})
    comparisons = [_compare_strategy(s, baseline, records, manifest, candidate.path, policy) for s in common]
    return Outcome(baseline=baseline.name, candidate=candidate.path, heldout_hash=baseline.heldout_hash,
                   comparisons=comparisons, not_compared=not_compared,
                   changes=diff.config_changes(diff.run_globals(baseline.config), diff.run_globals(manifest.config)))


def _check_protected(policy: Policy, baseline: Baseline) -> None:
    labels = set(baseline.records["gold"].astype(str))
    for label in policy.protected_categories:
        if label not in labels:
            raise choices("protected category (gate.protected_categories)", label, labels)


def _compare_strategy(strategy, baseline: Baseline, records, manifest, path, policy: Policy) -> Comparison:
    pairs = diff.paired(strategy, baseline, records, path)
    base_rows = baseline.records[baseline.records["strategy"] == strategy]
    cand_rows = records[records["strategy"] == strategy]
    base_scores, cand_scores = metrics.score(base_rows), metrics.score(cand_rows)
    delta, low, high = paired_diff_ci(pairs["base_correct"], pairs["cand_correct"])
    per_class = diff.per_class(pairs)
    costs = (base_scores["cost_per_1k_usd"], cand_scores["cost_per_1k_usd"])
    p95 = (base_scores["latency_p95_ms"], cand_scores["latency_p95_ms"])
    fits = (baseline.manifest.fit(strategy), manifest.fit(strategy))
    checks = [accuracy_check(strategy, pairs["base_correct"], pairs["cand_correct"], policy),
              *_class_checks(strategy, per_class, policy),
              _rise_check(strategy, "cost_per_1k", work.cost(base_rows, cand_rows, *fits),
                          policy.max_cost_per_1k_rise_pct, "max_cost_per_1k_rise_pct"),
              _rise_check(strategy, "latency_p95", work.latency_p95(base_rows, cand_rows, *fits),
                          policy.max_p95_latency_rise_pct, "max_p95_latency_rise_pct")]
    return Comparison(
        strategy=strategy, n=len(pairs),
        accuracy=(float(pairs["base_correct"].mean()), float(pairs["cand_correct"].mean())),
        delta_points=(100 * delta, 100 * low, 100 * high),
        mcnemar_p=mcnemar_exact(pairs["base_correct"], pairs["cand_correct"]),
        cost_per_1k_usd=costs, latency_p95_ms=p95, per_class=per_class, flips=diff.flips(pairs),
        changes=diff.strategy_changes(strategy, baseline.manifest, manifest), checks=checks)


# ---------------------------------------------------------------------------------------------- the gate itself


def check(baseline_ref, overrides=(), *, candidate: Path | None = None, strategies=()) -> Outcome:
    """Runs the gate. `gate.*` overrides adjust the policy; the others make the candidate configuration (see
    run_candidate), run on the baseline's held-out items, unless `candidate` names an existing run to compare.
    The policy is the project's `gate` config, with a named experiment's own `gate:` settings if it has any."""
    from harness.config import compose

    policy_overrides = [o for o in overrides if _is_gate_override(o) or _names_experiment(o)]
    config_overrides = [o for o in overrides if not _is_gate_override(o)]
    policy = Policy.from_config(compose(policy_overrides).gate)  # before any model runs: bad keys fail fast
    baseline = baselines.load(baseline_ref)
    _check_protected(policy, baseline)
    for name in strategies:
        if name not in baseline.strategies:
            raise HarnessError(f"baseline '{baseline.name}' has no strategy '{name}'; known: "
                               f"{', '.join(baseline.strategies)}")
    if candidate is None:
        candidate = run_candidate(baseline, config_overrides, strategies)
    else:
        unused = [o for o in config_overrides if not _names_experiment(o)]
        if unused:
            raise HarnessError(f"--candidate compares existing runs, so only gate.* and experiment= overrides "
                               f"apply; got '{unused[0]}'")
    outcome = compare(baseline, RunDir.open(candidate), policy, strategies)
    outcome.overrides = config_overrides
    return outcome


def run_candidate(baseline: Baseline, overrides, strategies=()) -> Path:
    """Runs the candidate with the ordinary runner once its held-out set is checked. The candidate is the
    baseline's config plus `overrides`; or, when they name an experiment, the project's current config (so a
    pull request's edited prompt files are what runs)."""
    from harness.config import compose
    from harness.run.runner import run

    cfg = compose(overrides) if any(map(_names_experiment, overrides)) else baseline.candidate_config(overrides)
    if strategies:
        missing = [name for name in strategies if name not in cfg.strategies]
        if missing:
            raise HarnessError(f"the candidate config has no strategy '{missing[0]}'; it has "
                               f"{', '.join(cfg.strategies)}")
        cfg.strategies = {name: cfg.strategies[name] for name in strategies}
    # The candidate pays for its records only: the gate writes its own outputs, no report or charts.
    return run(cfg, expected_heldout_hash=baseline.heldout_hash)


def _is_gate_override(override: str) -> bool:
    key = override.split("=", 1)[0].lstrip("+~")
    return key == "gate" or key.startswith("gate.")


def _names_experiment(override: str) -> bool:
    return override.lstrip("+").startswith("experiment=")
