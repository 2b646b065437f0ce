"""Small, dependency-light statistics for accuracy reporting.

* `wilson_interval`: Wilson score interval for a binomial proportion.
* `mcnemar_exact`: exact McNemar test (two-sided binomial test on the discordant pairs).
* `paired_bootstrap_delta`: percentile bootstrap CI for a paired accuracy difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, norm

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
    z = z_value(confidence)
    p = successes / total
    denom = 1.0 + z * z / total
    centre = (p + z * z / (2.0 * total)) / denom
    half = z * math.sqrt(p * (1.0 - p) / total + z * z / (4.0 * total * total)) / denom
    # Clamp rounding error: the exact interval always contains p and lies in [0, 1].
    return Interval(max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


def _as_bool_array(values: Sequence[bool]) -> np.ndarray:
    return np.asarray(values, dtype=bool)


def _check_paired(a: Sequence[bool], b: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    arr_a, arr_b = _as_bool_array(a), _as_bool_array(b)
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


def _bootstrap_means(values: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Means of `n_resamples` resamples with replacement, drawn in fixed-size chunks."""
    if n_resamples < 1:
        raise ValueError("n_resamples must be >= 1")
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, _CHUNK):
        stop = min(start + _CHUNK, n_resamples)
        idx = rng.integers(0, values.size, size=(stop - start, values.size))
        means[start:stop] = values[idx].mean(axis=1)
    return means


def paired_bootstrap_delta(
    a: Sequence[bool],
    b: Sequence[bool],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> BootstrapResult:
    """Percentile bootstrap CI of mean(b) - mean(a), resampling examples (pairs) jointly."""
    arr_a, arr_b = _check_paired(a, b)
    if arr_a.size == 0:
        raise ValueError("paired bootstrap needs at least one pair")
    diff = arr_b.astype(np.float64) - arr_a.astype(np.float64)
    means = _bootstrap_means(diff, n_resamples, seed)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return BootstrapResult(
        delta=float(diff.mean()),
        interval=Interval(float(low), float(high)),
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
    )
