"""Calibration and selective prediction on constructed scores whose answers are known by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from harness.calibration import at_target, confidences, coverage_curve, ece, ece_interval, label_probability, \
    reliability


def test_ece_of_perfectly_calibrated_bins_is_zero_and_of_an_overconfident_one_is_its_gap():
    # bin [0.7, 0.8): ten items at 0.75, of which 7.5 cannot be right; use 0.7 with 7 of 10 right instead
    confidence = [0.7] * 10 + [0.95] * 20
    correct = [1] * 7 + [0] * 3 + [1] * 19 + [0] * 1
    assert ece(confidence, correct) == pytest.approx(0.0)
    # everything said with 0.9, half right: the gap is 0.4 everywhere
    assert ece([0.9] * 8, [1, 0] * 4) == pytest.approx(0.4)
    # two bins, weighted by their items: 10 items at 0.9 all wrong (gap 0.9), 30 at 0.5 half right (gap 0)
    assert ece([0.9] * 10 + [0.5] * 30, [0] * 10 + [1, 0] * 15) == pytest.approx(0.9 * 10 / 40)


def test_a_confidence_of_one_falls_in_the_last_bin_and_bins_report_their_accuracy():
    table = reliability([1.0, 0.95, 0.05], [1, 0, 0], bins=10)
    assert table["n"].tolist() == [1, 2]
    assert table["bin_low"].tolist() == [0.0, pytest.approx(0.9)]
    assert table["accuracy"].tolist() == [0.0, 0.5]
    assert table["confidence"].tolist() == [pytest.approx(0.05), pytest.approx(0.975)]


def test_the_ece_interval_brackets_the_estimate_and_collapses_when_every_resample_agrees():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 400)
    correct = rng.uniform(size=400) < confidence * 0.8  # overconfident by a fifth
    low, high = ece_interval(confidence, correct, seed=1)
    assert low < ece(confidence, correct) < high
    assert ece_interval([1.0] * 8, [1] * 8) == (0.0, 0.0)  # every resample is perfectly calibrated


def test_the_coverage_curve_answers_the_most_confident_first_and_ties_together():
    curve = coverage_curve([0.9, 0.8, 0.8, 0.6, 0.3], [1, 1, 0, 1, 0])
    assert curve["threshold"].tolist() == [0.9, 0.8, 0.6, 0.3]
    assert curve["coverage"].tolist() == [0.2, 0.6, 0.8, 1.0]
    assert curve["accuracy"].tolist() == [1.0, pytest.approx(2 / 3), 0.75, 0.6]
    point = at_target(curve, 0.75)
    assert (point["coverage"], point["threshold"]) == (0.8, 0.6)  # the largest share, not the first to meet it
    assert at_target(curve, 1.0)["coverage"] == 0.2
    assert at_target(coverage_curve([0.9, 0.8], [0, 0]), 0.5) is None


def test_records_without_a_prediction_count_as_no_confidence_and_unscored_strategies_are_none():
    assert confidences(['{"confidence": 0.7}', None, {"confidence": 0.2}], ["a", None, "b"]).tolist() == [0.7, 0.0, 0.2]
    assert confidences(['{"parse": "exact"}'], ["a"]) is None


def test_a_grammar_constrained_answer_is_renormalised_over_tokens_that_lead_to_a_label():
    labels = ["card_arrival", "card_linking", "top_up"]
    # the server says "The" was likelier than "card" (free text), but the grammar allows only label starts
    tokens = [["card", math.log(0.1), {"The": math.log(0.6), "card": math.log(0.1), "top": math.log(0.1)}],
              ["_arr", math.log(0.6), {"_arr": math.log(0.6), "_link": math.log(0.2), "ing": math.log(0.1)}],
              ["ival", 0.0, {"ival": 0.0}]]
    assert label_probability(tokens, "card_arrival", labels) == pytest.approx(0.5 * 0.75)
    # a JSON wrapper around the label: its tokens are formatting the constraint forces, not a choice
    wrapped = [['{"label": "', math.log(0.9), {}],
               ["top_up", math.log(0.4), {"top_up": math.log(0.4), "card": math.log(0.4)}], ['"}', 0.0, {}]]
    assert label_probability(wrapped, "top_up", labels) == pytest.approx(0.5)
    assert label_probability(tokens, None, labels) == 0.0
    assert label_probability(tokens, "top_up", labels) is None  # a fuzzy match: the label is not what was spelled
