"""Statistics for accuracy reporting, computed by scipy.

* `wilson_interval`: Wilson score interval for a binomial proportion (`binomtest`).
* `mcnemar_exact`: exact McNemar test (two-sided binomial test on the discordant pairs).
* `paired_bootstrap_delta`: percentile bootstrap CI for a paired accuracy difference
  (`scipy.stats.bootstrap`); the pairs' scores may be 0/1 or per-question means.
* `sign_flip_p_value`: paired sign-flip permutation test of per-question score differences
  (`scipy.stats.permutation_test`): for sampled runs, whose samples of one question are not
  independent; with 0/1 scores it is the exact McNemar test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, bootstrap, norm, permutation_test

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 0
_CHUNK = 1_000


@dataclass(frozen=True)
class Interval:
    """A closed interval [low, high]."""

    low: float
    high: float


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test on paired binary outcomes.

    `b`: pairs where A is correct and B is wrong; `c`: A wrong and B correct.
    """

    b: int
    c: int
    p_value: float

    @property
    def discordant(self) -> int:
        """Number of discordant pairs (b + c)."""
        return self.b + self.c


@dataclass(frozen=True)
class BootstrapResult:
    """Paired bootstrap estimate of mean(B) - mean(A) with a percentile interval."""

    delta: float
    interval: Interval
    confidence: float
    n_resamples: int
    seed: int


def z_value(confidence: float = DEFAULT_CONFIDENCE) -> float:
    """Two-sided standard-normal quantile for `confidence` (1.959963... for 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(successes: int, total: int, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Wilson score interval (no continuity correction); (0, 1) when `total` is 0."""
    if total < 0 or successes < 0 or successes > total:
        raise ValueError(f"need 0 <= successes <= total, got {successes}/{total}")
    if total == 0:
        return Interval(0.0, 1.0)
    z_value(confidence)  # the same error as before for a confidence outside (0, 1)
    ci = binomtest(successes, total).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(float(ci.low), float(ci.high))


def _check_paired(
    a: Sequence[float], b: Sequence[float], dtype: type = bool
) -> tuple[np.ndarray, np.ndarray]:
    arr_a, arr_b = np.asarray(a, dtype=dtype), np.asarray(b, dtype=dtype)
    if arr_a.shape != arr_b.shape or arr_a.ndim != 1:
        raise ValueError(
            f"paired outcomes need equal 1-D lengths, got {arr_a.shape}, {arr_b.shape}"
        )
    return arr_a, arr_b


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> McNemarResult:
    """Exact two-sided McNemar test of paired correctness vectors `a` and `b`.

    Under H0 the discordant pairs split 50/50; p = binomtest(c, b + c, 0.5) (1.0 if none).
    """
    arr_a, arr_b = _check_paired(a, b)
    n_b = int(np.sum(arr_a & ~arr_b))
    n_c = int(np.sum(~arr_a & arr_b))
    return McNemarResult(n_b, n_c, mcnemar_p_value(n_b, n_c))


def mcnemar_p_value(b: int, c: int) -> float:
    """Two-sided exact binomial p-value for `b` vs `c` discordant pairs."""
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be non-negative")
    if b + c == 0:
        return 1.0
    return float(binomtest(c, b + c, 0.5, alternative="two-sided").pvalue)


def paired_bootstrap_delta(
    a: Sequence[float],
    b: Sequence[float],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> BootstrapResult:
    """Percentile bootstrap CI of mean(b) - mean(a), resampling examples (pairs) jointly; the
    scores are 0/1 correctness or, for sampled runs, each question's mean over its samples.

    Resampling pairs is resampling their differences b - a (the statistic is their mean), so
    scipy bootstraps the one sample of differences. The resamples are drawn from
    `numpy.random.default_rng(seed)` in batches of 1,000, each an `integers(0, n, (1000, n))`
    draw of indices: the same seed gives the same interval. A single pair has no spread: its
    interval is the difference itself.
    """
    arr_a, arr_b = _check_paired(a, b, np.float64)
    if arr_a.size == 0:
        raise ValueError("paired bootstrap needs at least one pair")
    if n_resamples < 1:
        raise ValueError("n_resamples must be >= 1")
    z_value(confidence)  # a confidence outside (0, 1) is an error
    diff = arr_b - arr_a
    delta = float(diff.mean())
    if diff.size == 1:
        interval = Interval(delta, delta)
    else:
        ci = bootstrap(
            (diff,),
            np.mean,
            n_resamples=n_resamples,
            batch=_CHUNK,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        ).confidence_interval
        interval = Interval(float(ci.low), float(ci.high))
    return BootstrapResult(delta, interval, confidence, n_resamples, seed)


def sign_flip_p_value(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> float:
    """Two-sided p-value of "no difference" from the paired differences b - a (one per
    question: each question's mean score over its samples), by flipping their signs.

    Under the null the two sides of a pair are exchangeable, so each difference is as likely
    negated; the statistic is their sum. Zero differences are left out (their flips change
    nothing). With at most log2(`n_resamples`) non-zero differences every flip is enumerated
    (exact); otherwise `n_resamples` random flips from `numpy.random.default_rng(seed)`. With
    0/1 scores and exact enumeration this is the exact McNemar test. 1.0 with fewer than two
    non-zero differences (one: both signs are as extreme).
    """
    arr_a, arr_b = _check_paired(a, b, np.float64)
    diff = arr_b - arr_a
    diff = diff[diff != 0]
    if diff.size < 2:  # one difference: its two signs are equally extreme (scipy needs two)
        return 1.0
    result = permutation_test(
        (diff,),
        np.sum,
        permutation_type="samples",
        n_resamples=n_resamples,
        batch=_CHUNK,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(min(1.0, result.pvalue))
