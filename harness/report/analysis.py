"""Everything a decision report shows, computed once from a run's manifest and records: scores with intervals,
total cost at volume, break-even volumes, significance, per-class detail and the recommendation. The renderers
(markdown, HTML, PDF, charts) only format what is here."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness import metrics, stats
from harness.costs.plan import PricingPlan
from harness.report.costing import Costs, analyse_costs
from harness.report.pricing import DecisionRule
from harness.report.verdict import Verdict, verdict
from harness.run.manifest import Manifest
from harness.run.state import RunState


@dataclass
class Analysis:
    manifest: Manifest
    plan: PricingPlan
    results: pd.DataFrame  # one row per strategy: metrics.summarize, family, intervals, total cost at the plan
    per_class: pd.DataFrame
    pairwise: pd.DataFrame  # one row per pair of strategies (stats.pairwise): the reference, its own Holm
    verdict: Verdict  # the decision's statistics: ranking, its comparison family, non-inferiority, power
    costs: Costs  # every option's bill, the break-even volumes, the decision's pair
    best: str | None  # the strategy the recommendation names
    recommendation: list[str]
    summary: list[str]  # the money that matters, for leadership (harness.report.summary)
    latency_ms: dict[str, np.ndarray]
    records: pd.DataFrame  # the run's records, one per (strategy, item): the latest when an item was redone
    confusions: pd.DataFrame  # top confusions of `best`, with an example item
    flips: pd.DataFrame  # items `best` and the runner-up disagree on
    learning_curve: pd.DataFrame  # empty unless the run has train_per_class
    scenario: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    beyond: Any = None  # harness.report.beyond.Beyond: calibration, cascades, distillation, label audit
    state: RunState | None = None  # the run's status as displayed, and items recorded of planned

    @property
    def status(self) -> str:
        """'complete: 300 of 300 items recorded (100%)', or the manifest's word where the state is unknown."""
        return self.state.describe() if self.state is not None else self.manifest.status

    @property
    def partial(self) -> bool:
        return self.state is not None and not self.state.final

    @property
    def banner(self) -> str | None:
        """What every output says first about a run that is not complete, or not fully recorded."""
        if not self.partial:
            return None
        return (f"Partial run: {self.status}. Every figure here is provisional, measured on the items recorded "
                f"so far; `harness resume RUN_DIR` finishes it.")


def scored(manifest: Manifest, records: pd.DataFrame, *, seed: int = 0, groups: pd.Series | None = None) -> pd.DataFrame:
    """metrics.summarize plus family and intervals for macro-F1 and cost per 1,000 (resampling groups of items
    when the dataset names a group column)."""
    results = metrics.summarize(records, manifest.strategies, seed=seed, groups=groups)
    results.insert(1, "family", [manifest.family(name) for name in results["strategy"]])
    intervals = pd.DataFrame([{"strategy": name, **_intervals(group, seed, groups)}
                              for name, group in records.groupby("strategy", sort=False)])
    return results.merge(intervals, on="strategy", how="left")


def _intervals(group: pd.DataFrame, seed: int, groups: pd.Series | None) -> dict:
    g = None if groups is None else groups.reindex(group["item_id"]).to_numpy()
    low, high = stats.macro_f1_ci(group["gold"].astype(str), metrics.predictions(group), groups=g, seed=seed)
    cost_low, cost_high = stats.bootstrap_ci(1000.0 * group["cost_usd"].astype(float).to_numpy(), groups=g,
                                             seed=seed)
    return {"macro_f1_ci_low": low, "macro_f1_ci_high": high,
            "cost_per_1k_usd_ci_low": cost_low, "cost_per_1k_usd_ci_high": cost_high}


def adoptable(manifest: Manifest, name: str, costs: Costs, state: RunState | None = None) -> bool:
    """Whether a strategy is an option to adopt, and so in the decision's comparisons: not a scenario's `before`
    stage, not on a retired model, not a learning-curve point on part of the training split, and not one whose
    items mostly failed (a 401 on every call is no measurement of 0% accuracy)."""
    fit = manifest.strategies[name]
    partial = fit.stage.kind == "sweep" and fit.n_train < manifest.dataset.n_train
    return (fit.stage.candidate and not partial and not costs.bills[name].retired
            and name not in mostly_errored(manifest, state))


def mostly_errored(manifest: Manifest, state: RunState | None) -> dict[str, str]:
    """strategy -> why it is no option: its items failed more often than the run's `max_error_share`."""
    if state is None:
        return {}
    limit = float(manifest.config.get("max_error_share", 0.5))
    return {s.strategy: (f"{s.strategy} is no option: {s.errors:,} of {s.recorded:,} items failed "
                         f"({s.error_share:.0%}, above max_error_share {limit:g}); commonest error "
                         f"({s.commonest_error_count}x): {str(s.commonest_error)[:200]}")
            for s in state.strategies.values() if s.error_share > limit}


def analyse(manifest: Manifest, records: pd.DataFrame, plan: PricingPlan, *, rule: DecisionRule | None = None,
            items: pd.DataFrame | None = None, notes: list[str] | None = None,
            state: RunState | None = None) -> Analysis:
    """`items`: the run's stored held-out items (item_id, text, label, group), for texts and groups; `state`:
    the run's status and coverage (harness.run.state), which a partial run's outputs lead with."""
    from harness.report.recommend import recommend

    seed, rule = manifest.seed, rule or DecisionRule()
    records = records.drop_duplicates(["strategy", "item_id"], keep="last")
    groups = _groups(manifest, items)
    texts = {} if items is None else dict(zip(items["item_id"], items["text"]))
    results = scored(manifest, records, seed=seed, groups=groups)
    costs = analyse_costs(manifest, results, plan, dict(zip(results["strategy"], results["accuracy"])))
    results = with_totals(results, costs, plan)
    correct = records.pivot(index="item_id", columns="strategy", values="correct")[list(results["strategy"])]
    pairwise = stats.pairwise(correct, seed=seed, groups=None if groups is None else groups.reindex(correct.index))
    results = with_state(results, state)
    candidates = results[[adoptable(manifest, name, costs, state) for name in results["strategy"]]]
    within = candidates[candidates["within_budget"].astype(bool)]
    decision = verdict(results, within if not within.empty else candidates, records, rule, groups,
                       manifest.dataset.group_column, seed)
    best, sentences = recommend(decision, candidates[~candidates["within_budget"].astype(bool)], costs, plan)
    if state is not None and not state.final:
        sentences = [f"Partial run ({state.describe()}): this recommendation is provisional.", *sentences]
    from harness.report.summary import summary

    best_or_top = best or _most_accurate(results)
    from harness.report.beyond import analyse as analyse_beyond

    beyond = analyse_beyond(manifest, records, results, seed=seed)
    return Analysis(
        manifest=manifest, plan=plan, results=results, per_class=metrics.per_class(records), pairwise=pairwise,
        verdict=decision, costs=costs, best=best, recommendation=sentences, summary=summary(costs, results, plan), records=records,
        latency_ms={name: g["latency_ms"].astype(float).to_numpy()
                    for name, g in records.groupby("strategy", sort=False)},
        confusions=confusions(records, best_or_top, texts),
        flips=flips(records, best_or_top, _runner_up(results, best_or_top), texts),
        learning_curve=learning_curve(results), scenario=_scenario(manifest, records),
        notes=[*manifest.notes, *(notes or []), *mostly_errored(manifest, state).values(), *beyond.notes],
        beyond=beyond, state=state)


def _groups(manifest: Manifest, items: pd.DataFrame | None) -> pd.Series | None:
    """item id -> group, when the dataset names a group column (and the run stored its items)."""
    if not manifest.dataset.group_column or items is None or items["group"].isna().all():
        return None
    return pd.Series(items["group"].to_numpy(), index=items["item_id"].to_numpy())


def with_state(results: pd.DataFrame, state: RunState | None) -> pd.DataFrame:
    """Adds the run's status and each strategy's coverage (items recorded of items planned) to its row, so a
    results.csv read on its own says whether its figures are final."""
    if state is None:
        return results
    coverage = [state.strategies[name].coverage if name in state.strategies else float("nan")
                for name in results["strategy"]]
    return results.assign(run_status=state.display, coverage=coverage)


def with_totals(results: pd.DataFrame, costs: Costs, plan: PricingPlan) -> pd.DataFrame:
    """Adds each strategy's total cost over the horizon at the plan's volume (its bill, every component), its
    monthly average, whether that is within the budget, and whether its model has retired."""
    bills = [costs.bills[name] for name in results["strategy"]]
    budget = plan.monthly_budget_usd
    monthly = [b.total_usd / plan.horizon_months for b in bills]
    return results.assign(total_usd=[b.total_usd for b in bills], monthly_usd=monthly,
                          within_budget=[budget is None or m <= budget for m in monthly],
                          retired=[b.retired for b in bills])


def confusions(records: pd.DataFrame, strategy: str | None, texts: dict[str, str], n: int = 10) -> pd.DataFrame:
    """The n most frequent (gold, predicted) mistakes of `strategy`, each with one example item."""
    columns = ["gold", "pred", "count", "example_id", "example_text"]
    wrong = records[(records["strategy"] == strategy) & ~records["correct"].astype(bool)]
    if wrong.empty:
        return pd.DataFrame(columns=columns)
    wrong = wrong.assign(pred=metrics.predictions(wrong))
    top = (wrong.groupby(["gold", "pred"], sort=False)
           .agg(count=("item_id", "size"), example_id=("item_id", "first"))
           .reset_index().sort_values("count", ascending=False, kind="stable").head(n))
    top["example_text"] = top["example_id"].map(lambda i: texts.get(i, ""))
    return top[columns].reset_index(drop=True)


def flips(records: pd.DataFrame, best: str | None, other: str | None, texts: dict[str, str],
          n: int = 10) -> pd.DataFrame:
    """Up to n items each way where exactly one of `best` and `other` is right."""
    columns = ["item_id", "text", "gold", "right", "pred_best", "pred_other"]
    if best is None or other is None:
        return pd.DataFrame(columns=columns)
    pair = (records[records["strategy"].isin([best, other])].assign(pred=metrics.predictions)
            .pivot(index="item_id", columns="strategy", values=["gold", "pred", "correct"]).dropna())
    rows = []
    for winner, loser in ((best, other), (other, best)):
        won = pair[pair[("correct", winner)].astype(bool) & ~pair[("correct", loser)].astype(bool)].head(n)
        rows += [{"item_id": item, "text": texts.get(item, ""), "gold": r[("gold", best)], "right": winner,
                  "pred_best": r[("pred", best)], "pred_other": r[("pred", other)]} for item, r in won.iterrows()]
    return pd.DataFrame(rows, columns=columns)


def learning_curve(results: pd.DataFrame) -> pd.DataFrame:
    """Accuracy by training items per class, one curve per base strategy (mean, min and max over seeds).
    Empty unless some strategy was run at two or more sizes; then every strategy with a size is shown (few-shot's
    exemplars per class sit on the same axis)."""
    swept = results[results["train_per_class"].notna()]
    swept = swept.assign(base=swept["strategy"].str.split("[").str[0])
    sizes = swept.groupby("base")["train_per_class"].nunique()
    if sizes.empty or sizes.max() < 2:
        return pd.DataFrame(columns=["strategy", "train_per_class", "accuracy", "accuracy_min", "accuracy_max",
                                     "n_seeds"])
    swept = swept.assign(strategy=swept["base"], train_per_class=swept["train_per_class"].astype(float))
    return (swept.groupby(["strategy", "train_per_class"], sort=False)
            .agg(accuracy=("accuracy", "mean"), accuracy_min=("accuracy", "min"), accuracy_max=("accuracy", "max"),
                 n_seeds=("accuracy", "size"))
            .reset_index().sort_values(["strategy", "train_per_class"], kind="stable").reset_index(drop=True))


def _most_accurate(results: pd.DataFrame) -> str | None:
    if results.empty:
        return None
    return results.sort_values(["accuracy", "total_usd"], ascending=[False, True], kind="stable")["strategy"].iloc[0]


def _runner_up(results: pd.DataFrame, best: str | None) -> str | None:
    return _most_accurate(results[results["strategy"] != best])


def _scenario(manifest: Manifest, records: pd.DataFrame) -> pd.DataFrame | None:
    if not any(fit.stage.kind == "scenario" for fit in manifest.strategies.values()):
        return None
    from harness.report.scenario import table

    return table(records, manifest)
