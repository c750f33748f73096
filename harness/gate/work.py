"""What the gate's cost and latency checks compare, so that they fail for the candidate's own changes and not for
the machine it ran on.

- API models: cost is tokens x the provider's prices (the same on any machine); latency is measured, and so
  depends on the provider, the network and the machine.
- Self-hosted models cost measured seconds: an unchanged prompt reads dearer and slower on a busier or slower
  machine (measured: an identical rerun on a quieter machine, cost per 1,000 down 28-71%, p95 latency down
  40-70%). So where the records count tokens (a prompted strategy on a local or own server), both checks compare
  the work the model was given: tokens per item, the mean for cost and the 95th percentile for latency.
- Other self-hosted strategies (trained models) have no tokens: their seconds are scaled by the reference
  measurement each run took around its predictions (harness.run.provenance.reference_ms), i.e. compared as if
  both ran on the baseline's machine at the baseline's load. That reference is single-threaded work, so this
  remains an estimate that depends on the machine; the outputs say so.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.strategies.base import SELF_HOSTED, FitRecord

USD, MS, TOKENS = "usd_per_1k", "ms", "tokens_per_item"  # units of a check's values


@dataclass(frozen=True)
class Measure:
    baseline: float
    candidate: float
    unit: str
    machine_dependent: bool
    basis: str  # what was compared, for the check's message


def cost(base: pd.DataFrame, cand: pd.DataFrame, base_fit: FitRecord | None, cand_fit: FitRecord | None) -> Measure:
    """The cost per 1,000 items check's quantities, from each side's records of one strategy."""
    if _tokens_counted(base, cand, base_fit, cand_fit):
        return Measure(_tokens(base).mean(), _tokens(cand).mean(), TOKENS, False,
                       "self-hosted: mean tokens per item, the work behind its measured cost")
    values = [1000.0 * float(r["cost_usd"].astype(float).mean()) for r in (base, cand)]
    if not _self_hosted(base_fit, cand_fit):
        return Measure(*values, USD, False, "tokens x prices")
    return _normalised(*values, USD, base_fit, cand_fit)


def latency_p95(base: pd.DataFrame, cand: pd.DataFrame, base_fit: FitRecord | None,
                cand_fit: FitRecord | None) -> Measure:
    """The p95 latency check's quantities."""
    if _tokens_counted(base, cand, base_fit, cand_fit):
        return Measure(*(float(np.percentile(_tokens(r), 95)) for r in (base, cand)), TOKENS, False,
                       "self-hosted: 95th percentile of tokens per item, the work behind its latency")
    values = [float(np.percentile(r["latency_ms"].astype(float), 95)) for r in (base, cand)]
    if not _self_hosted(base_fit, cand_fit):
        return Measure(*values, MS, True, "measured: depends on the provider, the network and this machine")
    return _normalised(*values, MS, base_fit, cand_fit)


def _normalised(base: float, cand: float, unit: str, base_fit: FitRecord, cand_fit: FitRecord) -> Measure:
    refs = (base_fit.reference_ms, cand_fit.reference_ms)
    if not all(ref and ref > 0 for ref in refs):
        return Measure(base, cand, unit, True, "measured seconds on each run's machine (a run has no reference "
                                               "measurement to scale by)")
    scale = refs[0] / refs[1]
    return Measure(base, cand * scale, unit, True, f"self-hosted: candidate's seconds x{scale:.2f}, the ratio of the "
                                                   "runs' reference measurements; depends on the machine")


def _self_hosted(*fits: FitRecord | None) -> bool:
    return all(fit is not None and fit.billing == SELF_HOSTED for fit in fits)


def _tokens_counted(base, cand, *fits) -> bool:
    return _self_hosted(*fits) and all(len(r) and _tokens(r).sum() > 0 for r in (base, cand))


def _tokens(records: pd.DataFrame) -> np.ndarray:
    return (records["prompt_tokens"].astype(float) + records["completion_tokens"].astype(float)).to_numpy()
