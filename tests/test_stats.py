"""Tests for gsm8k_eval.stats against known and independently computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import stats_oracle
from hypothesis import given, settings
from hypothesis import strategies as st

from gsm8k_eval.stats import (
    mcnemar_exact,
    mcnemar_p_value,
    paired_bootstrap_delta,
    sign_flip_p_value,
    wilson_interval,
    z_value,
)


def test_wilson_known_value_735_of_1319() -> None:
    ci = wilson_interval(735, 1319)
    # Closed form by hand: z = 1.959964, p = 735/1319.
    assert ci.low == pytest.approx(0.530307, abs=1e-6)
    assert ci.high == pytest.approx(0.583842, abs=1e-6)


def test_wilson_edge_cases() -> None:
    zero = wilson_interval(0, 20)  # upper = z^2 / (n + z^2)
    assert zero.low == 0.0 and zero.high == pytest.approx(0.161125, abs=1e-6)
    full = wilson_interval(20, 20)
    assert full.high == 1.0 and full.low == pytest.approx(1 - 0.161125, abs=1e-6)
    assert wilson_interval(0, 0) == wilson_interval(0, 0).__class__(0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_matches_the_closed_form(pair: tuple[int, int]) -> None:
    """scipy's interval against the formula written out (they differ by float rounding)."""
    k, n = pair
    ours = wilson_interval(k, n)
    low, high = stats_oracle.wilson(k, n)
    assert ours.low == pytest.approx(low, abs=1e-15)
    assert ours.high == pytest.approx(high, abs=1e-15)
    assert ours.low <= k / n <= ours.high


def test_z_value() -> None:
    assert z_value(0.95) == pytest.approx(1.959963984540054)
    with pytest.raises(ValueError):
        z_value(1.0)


def hand_binomial_two_sided(b: int, c: int) -> float:
    """Exact two-sided p for b vs c discordant pairs under Binomial(b + c, 1/2)."""
    n, k = b + c, min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


@pytest.mark.parametrize(("b", "c"), [(1, 6), (6, 1), (3, 3), (0, 5), (10, 2), (17, 30)])
def test_mcnemar_against_hand_binomial(b: int, c: int) -> None:
    assert mcnemar_p_value(b, c) == pytest.approx(hand_binomial_two_sided(b, c), rel=1e-9)


def test_mcnemar_hand_computed_value() -> None:
    # b=1, c=6: 2 * (C(7,0) + C(7,1)) / 2^7 = 16/128 = 0.125.
    a = [True] * 10 + [True] * 1 + [False] * 6 + [False] * 3
    b = [True] * 10 + [False] * 1 + [True] * 6 + [False] * 3
    result = mcnemar_exact(a, b)
    assert (result.b, result.c, result.discordant) == (1, 6, 7)
    assert result.p_value == pytest.approx(0.125)


def test_mcnemar_no_discordant_pairs() -> None:
    result = mcnemar_exact([True, False], [True, False])
    assert result.p_value == 1.0 and result.discordant == 0
    with pytest.raises(ValueError):
        mcnemar_exact([True], [True, False])


def test_paired_bootstrap_deterministic_and_sensible() -> None:
    rng = np.random.default_rng(123)
    a = rng.random(200) < 0.5
    b = a.copy()
    b[:30] = True  # b fixes some examples: delta > 0
    first = paired_bootstrap_delta(a, b, n_resamples=2000, seed=7)
    again = paired_bootstrap_delta(a, b, n_resamples=2000, seed=7)
    assert first == again
    assert first.delta == pytest.approx(b.mean() - a.mean())
    assert first.interval.low <= first.delta <= first.interval.high
    assert first.interval.low > 0  # every discordant pair favours b
    assert (first.n_resamples, first.seed, first.confidence) == (2000, 7, 0.95)


def test_paired_bootstrap_identical_runs_give_zero_interval() -> None:
    a = [True, False, True, True]
    result = paired_bootstrap_delta(a, a, n_resamples=500)
    assert result.delta == 0.0
    assert (result.interval.low, result.interval.high) == (0.0, 0.0)


def test_paired_bootstrap_matches_normal_approximation() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(1000) < 0.55
    b = np.where(rng.random(1000) < 0.1, ~a, a)
    result = paired_bootstrap_delta(a, b, n_resamples=4000, seed=1)
    diff = b.astype(float) - a.astype(float)
    se = diff.std(ddof=0) / math.sqrt(diff.size)
    assert result.interval.low == pytest.approx(diff.mean() - 1.96 * se, abs=0.004)
    assert result.interval.high == pytest.approx(diff.mean() + 1.96 * se, abs=0.004)


@pytest.mark.parametrize(("n", "seed"), [(2, 0), (7, 1), (50, 0), (1319, 0), (1319, 7)])
def test_paired_bootstrap_equals_the_numpy_oracle(n: int, seed: int) -> None:
    """The report's setting (10,000 resamples) gives the oracle's interval bit for bit: the
    seed semantics are the documented ones."""
    rng = np.random.default_rng(n)
    a, b = rng.random(n) < 0.5, rng.random(n) < 0.6
    result = paired_bootstrap_delta(a, b, seed=seed)
    assert (result.interval.low, result.interval.high) == stats_oracle.paired_bootstrap(
        a, b, seed=seed
    )
    other = paired_bootstrap_delta(a, b, seed=seed, n_resamples=999)  # quantiles: float rounding
    expected = stats_oracle.paired_bootstrap(a, b, seed=seed, n_resamples=999)
    assert (other.interval.low, other.interval.high) == pytest.approx(expected, abs=1e-12)


def test_paired_bootstrap_of_one_pair_is_its_difference() -> None:
    result = paired_bootstrap_delta([False], [True])
    assert (result.delta, result.interval.low, result.interval.high) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError):
        paired_bootstrap_delta([], [])


# ---------------------------------------------------------------- sign-flip test (sampled runs)


def hand_sign_flip(diffs: list[float]) -> float:
    """Two-sided p of sum(diffs) over all 2^m sign patterns of the non-zero differences."""
    nonzero = [d for d in diffs if d]
    observed = abs(sum(nonzero))
    m = len(nonzero)
    hits = sum(
        abs(sum(d if (mask >> i) & 1 else -d for i, d in enumerate(nonzero))) >= observed - 1e-12
        for mask in range(2**m)
    )
    return hits / 2**m


def test_sign_flip_on_zero_one_scores_is_the_exact_mcnemar_test() -> None:
    a = [True] * 10 + [True] * 1 + [False] * 6 + [False] * 3
    b = [True] * 10 + [False] * 1 + [True] * 6 + [False] * 3
    assert sign_flip_p_value(a, b) == pytest.approx(mcnemar_exact(a, b).p_value, rel=1e-12)
    assert sign_flip_p_value(a, a) == 1.0
    one = [True] * 9 + [False]  # one discordant pair: McNemar's p is 1, and so is this
    assert sign_flip_p_value(one, [True] * 10) == 1.0 == mcnemar_exact(one, [True] * 10).p_value


def test_sign_flip_on_question_means_against_full_enumeration() -> None:
    """Per-question accuracies over 4 samples (differences of quarters), 9 questions differ."""
    rng = np.random.default_rng(3)
    a = rng.integers(0, 5, 30) / 4
    b = a.copy()
    b[:9] = np.clip(a[:9] + rng.choice([-0.5, -0.25, 0.25, 0.75], 9), 0, 1)
    diffs = (b - a).tolist()
    assert sign_flip_p_value(a, b) == pytest.approx(hand_sign_flip(diffs), rel=1e-12)


def test_sign_flip_random_flips_approach_mcnemar_with_many_pairs() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(400) < 0.5
    b = np.where(rng.random(400) < 0.15, ~a, a) | (rng.random(400) < 0.04)
    p = sign_flip_p_value(a, b, seed=1)
    assert p == sign_flip_p_value(a, b, seed=1)
    assert p == pytest.approx(mcnemar_exact(a, b).p_value, abs=0.01)
