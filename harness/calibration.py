"""Confidence judged against correctness: expected calibration error (ECE) with a bootstrap interval, the bins of a
reliability diagram, and selective prediction (the accuracy of the items a strategy answers when it answers only
at or above a confidence threshold, and the largest share it can answer at a target accuracy).

A strategy's confidence in an item is `extra["confidence"]` of its record: a trained strategy's top class
probability, a prompted strategy's probability of the label it answered (token log-probabilities,
`label_probability`) or the agreement of its repeated samples. Pure numpy on per-item arrays, shared by the
report and the cascade."""
from __future__ import annotations

import json
import math
from typing import Sequence

import numpy as np
import pandas as pd

from harness.stats import resample_indices

BINS = 10  # equal-width confidence bins: 300 held-out items leave about 30 a bin where scores spread out
# The default target of accuracy at coverage (config key calibration.target_accuracy). 0.95 rather than a stricter
# 0.98: on the 300-item sample a 98% target is decided by two or three mistakes among the answered items.
TARGET_ACCURACY = 0.95
CURVE_COLUMNS = ["threshold", "coverage", "accuracy", "n_answered"]


def reliability(confidence, correct, bins: int = BINS) -> pd.DataFrame:
    """One row per non-empty bin of [0, 1] (a confidence of 1 falls in the last): its bounds, items, mean
    confidence and accuracy."""
    confidence, correct = _arrays(confidence, correct)
    index = _bin_index(confidence, bins)
    counts = np.bincount(index, minlength=bins)
    sums = np.bincount(index, weights=confidence, minlength=bins)
    hits = np.bincount(index, weights=correct, minlength=bins)
    used = counts > 0
    edges = np.linspace(0.0, 1.0, bins + 1)
    return pd.DataFrame({"bin_low": edges[:-1][used], "bin_high": edges[1:][used], "n": counts[used],
                         "confidence": sums[used] / counts[used], "accuracy": hits[used] / counts[used]})


def ece(confidence, correct, bins: int = BINS) -> float:
    """Expected calibration error: the item-weighted mean over bins of |accuracy - mean confidence|."""
    confidence, correct = _arrays(confidence, correct)
    if not len(confidence):
        return math.nan
    return float(_ece_from_index(_bin_index(confidence, bins), confidence, correct, bins))


def ece_interval(confidence, correct, bins: int = BINS, *, seed: int = 0, n_resamples: int = 1000,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the ECE over resampled items."""
    confidence, correct = _arrays(confidence, correct)
    if not len(confidence):
        return math.nan, math.nan
    index = _bin_index(confidence, bins)
    values = [_ece_from_index(index[d], confidence[d], correct[d], bins)  # drawn in batches: not 800 MB at once
              for batch in resample_indices(len(confidence), n_resamples, seed) for d in batch]
    tail = 100 * (1 - level) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def coverage_curve(confidence, correct) -> pd.DataFrame:
    """Selective prediction: for every distinct confidence as the threshold (highest first), the share of items at
    or above it (coverage) and their accuracy. Items tied at a threshold are answered together."""
    confidence, correct = _arrays(confidence, correct)
    order = np.argsort(-confidence, kind="stable")
    ranked, hits = confidence[order], np.cumsum(correct[order])
    last = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])  # the last item of each tied group
    answered = last + 1
    return pd.DataFrame({"threshold": ranked[last], "coverage": answered / len(confidence),
                         "accuracy": hits[last] / answered, "n_answered": answered}, columns=CURVE_COLUMNS)


def at_target(curve: pd.DataFrame, target: float) -> pd.Series | None:
    """The curve's point of largest coverage whose accuracy reaches `target`; None when no threshold does."""
    meeting = curve[curve["accuracy"] >= target - 1e-12]
    return None if meeting.empty else meeting.loc[meeting["coverage"].idxmax()]


def thinned(points: pd.DataFrame, threshold: float, n: int) -> pd.DataFrame:
    """At most `n` rows of a curve (about: the row of `threshold` is added), evenly spaced, both ends kept."""
    keep = set(np.linspace(0, len(points) - 1, min(n, len(points))).round().astype(int).tolist())
    keep |= set(np.flatnonzero(points["threshold"].to_numpy() == threshold).tolist())
    return points.iloc[sorted(keep)]


def label_probability(tokens: Sequence, label: str | None, labels: Sequence[str]) -> float | None:
    """A prompted answer's probability from its generated tokens' log-probabilities (`Completion.logprobs`: per
    token [text, logprob, {alternative: logprob}]).

    Servers report each token's probability before any output constraint (llama.cpp applies its label grammar
    after), so a first token that is an unlikely start of free text but a likely label would read as a guess. Each
    token that spells the label is therefore renormalised over the returned alternatives that keep the answer on
    the way to some label: the probability among the labels, as the grammar chooses. Alternatives beyond the top k
    the server returned are missing from that sum, so the figure leans high. No label answered: 0. The label not
    spelled out in the tokens (a fuzzy match): None."""
    if label is None:
        return 0.0
    text = "".join(token for token, _, _ in tokens)
    start = text.find(label)
    if start < 0:
        return None
    probability, offset = 1.0, 0
    for token, logprob, alternatives in tokens:
        end = offset + len(token)
        if end > start and offset < start + len(label):  # this token spells part of the label
            lead, spelled = text[offset:start], text[start:max(offset, start)]
            mass = sum(math.exp(lp) for alt, lp in {**alternatives, token: logprob}.items()
                       if alt.startswith(lead) and _on_the_way(spelled + alt[len(lead):], labels))
            probability *= math.exp(logprob) / max(mass, math.exp(logprob))
        offset = end
    return probability


def _on_the_way(candidate: str, labels: Sequence[str]) -> bool:
    """The answer so far is a label's beginning, or a whole label and what closes the answer."""
    return any(label.startswith(candidate) or candidate.startswith(label) for label in labels)


def confidences(extras: Sequence, preds: Sequence) -> np.ndarray | None:
    """Per record, its `extra["confidence"]`; a record with no prediction (an error, no label) counts as 0, since it
    answers nothing. None when a record that has a prediction carries no confidence: the strategy cannot score."""
    out = np.zeros(len(preds))
    for i, (extra, pred) in enumerate(zip(extras, preds)):
        if pred is None or (isinstance(pred, float) and math.isnan(pred)):
            continue
        extra = json.loads(extra) if isinstance(extra, str) else extra
        value = extra.get("confidence") if isinstance(extra, dict) else None
        if value is None:
            return None
        out[i] = float(value)
    return out


def _arrays(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    return np.clip(np.asarray(confidence, dtype=float), 0.0, 1.0), np.asarray(correct, dtype=float)


def _bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum((confidence * bins).astype(int), bins - 1)


def _ece_from_index(index: np.ndarray, confidence: np.ndarray, correct: np.ndarray, bins: int) -> float:
    gap = np.bincount(index, weights=correct - confidence, minlength=bins)
    return float(np.abs(gap).sum() / len(confidence))
