"""Tests for gsm8k_eval.passk against hand-computed values and an exact-fraction oracle."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import numpy as np
import pytest

from gsm8k_eval.passk import (
    bootstrap_intervals,
    maj_at_k_curve,
    majority_index,
    pass_at_k,
    pass_at_k_curve,
    summarize,
)
from gsm8k_eval.stats import z_value


def test_pass_at_k_hand_values() -> None:
    # n = 5, c = 2: 1 - C(3, k) / C(5, k)
    assert pass_at_k_curve(5, 2).tolist() == pytest.approx([0.4, 0.7, 0.9, 1.0, 1.0], abs=1e-15)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5, abs=1e-15)  # 1 - 3/6


def test_pass_at_k_edges() -> None:
    for n in (1, 4, 16):
        assert pass_at_k_curve(n, 0).tolist() == [0.0] * n  # all wrong
        assert pass_at_k_curve(n, n).tolist() == [1.0] * n  # all right
        for c in range(1, n + 1):
            assert pass_at_k(n, c, n) == 1.0  # k = n: any correct sample counts
    for bad in [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)]:
        with pytest.raises(ValueError):
            pass_at_k(*bad)


def test_pass_at_k_matches_exact_fractions() -> None:
    for n in range(1, 41):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - Fraction(comb(n - c, k), comb(n, k))
                assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12)
            assert pass_at_k(n, c, 1) == pytest.approx(c / n, abs=1e-15)  # pass@1 = accuracy


def test_majority_vote_ties_and_invalid() -> None:
    answers = ["18", "7", "18", None, "7"]
    assert [majority_index(answers, k) for k in range(1, 6)] == [0, 0, 0, 0, 0]
    assert majority_index(["7", "18", "18", "7"], 4) == 0  # 2-2 tie: earliest first occurrence
    assert majority_index(["7", "18", "18", "7"], 3) == 1  # 18 leads 2-1
    assert majority_index([None, None, "3"], 3) == 2  # None never wins ...
    assert majority_index([None, None, None], 3) is None  # ... unless all are None
    assert majority_index([None, "4", "3", "3"], 4) == 2
    with pytest.raises(ValueError):
        majority_index(["1"], 2)


def test_maj_at_k_takes_the_winners_correctness() -> None:
    correct = [False, True, True, False, False]
    answers = ["5", "18", "18", None, "5"]
    # k=1: 5; k=2: 5 (tie, first); k=3: 18 leads; k=4: 18; k=5: 2-2 tie -> 5 (first)
    assert maj_at_k_curve(correct, answers).tolist() == [0.0, 0.0, 1.0, 1.0, 0.0]
    assert maj_at_k_curve([False] * 3, [None] * 3).tolist() == [0.0] * 3
    with pytest.raises(ValueError):
        maj_at_k_curve([True, False], ["18", "18"])  # one answer cannot be both


def test_summarize_hand_computed_two_questions() -> None:
    correct = [[True, False, True, False], [False, False, False, False]]
    answers = [["18", "5", "18", "5"], [None, "1", "2", "2"]]
    s = summarize(correct, answers, n_resamples=500)
    assert (s.questions, s.samples) == (2, 4)
    assert s.mean_accuracy.value == pytest.approx(0.25)
    # Q1 (n 4, c 2): 0.5, 5/6, 1, 1; Q2: 0
    assert [e.value for e in s.pass_at_k] == pytest.approx([0.25, 5 / 12, 0.5, 0.5])
    # Q1 votes 18 (ties to the first) for every k; Q2: None, 1, 1 (tie), 2 -> all wrong
    assert [e.value for e in s.maj_at_k] == pytest.approx([0.5, 0.5, 0.5, 0.5])
    assert s.pass_at_k[0].value == pytest.approx(s.mean_accuracy.value)  # k = 1
    for e in (s.mean_accuracy, *s.pass_at_k, *s.maj_at_k):
        assert 0.0 <= e.interval.low <= e.value <= e.interval.high <= 1.0
        assert isinstance(e.value, float) and isinstance(e.interval.low, float)


def test_summarize_n_equals_one_and_all_right() -> None:
    s = summarize([[True], [False], [True]], [["1"], ["2"], ["3"]], n_resamples=200)
    assert s.samples == 1
    assert s.pass_at_k[0].value == s.maj_at_k[0].value == pytest.approx(2 / 3)
    right = summarize([[True, True]] * 3, [["1", "1"]] * 3, n_resamples=200)
    assert [e.value for e in right.pass_at_k] == [1.0, 1.0]
    assert (right.maj_at_k[1].interval.low, right.maj_at_k[1].interval.high) == (1.0, 1.0)


def test_summarize_rejects_ragged_or_mismatched_input() -> None:
    with pytest.raises(ValueError):
        summarize([[True, False], [True]], [["1", "2"], ["1"]])
    with pytest.raises(ValueError):
        summarize([[True]], [["1"], ["2"]])
    with pytest.raises(ValueError):
        summarize([], [])


def test_bootstrap_interval_close_to_normal_approximation() -> None:
    values = (np.random.default_rng(0).random((400, 2)) < [0.3, 0.8]).astype(np.float64)
    got = bootstrap_intervals(values, 0.95, 4000, seed=1)
    for column, interval in zip(values.T, got, strict=True):
        half = z_value(0.95) * column.std() / np.sqrt(column.size)
        assert interval.low == pytest.approx(column.mean() - half, abs=0.006)
        assert interval.high == pytest.approx(column.mean() + half, abs=0.006)
    assert bootstrap_intervals(values, 0.95, 4000, seed=1) == got  # fixed seed, same interval
    assert bootstrap_intervals(values, 0.95, 4000, seed=2) != got
