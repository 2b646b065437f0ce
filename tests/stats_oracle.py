"""Independent oracles for gsm8k_eval.stats: the closed-form Wilson interval and a plain numpy
percentile bootstrap (no scipy), for tests that must not recompute with the code under test."""

from __future__ import annotations

import math

import numpy as np

Z_95 = 1.959963984540054  # the two-sided 95% standard-normal quantile


def wilson(successes: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval by its closed form (no continuity correction)."""
    p = successes / total
    denom = 1.0 + z * z / total
    centre = (p + z * z / (2.0 * total)) / denom
    half = z * math.sqrt(p * (1.0 - p) / total + z * z / (4.0 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_resamples: int = 10_000, seed: int = 0, chunk: int = 1_000
) -> tuple[float, float]:
    """Percentile 95% interval of mean(b - a) over resamples of the pairs: the documented seed
    semantics (`default_rng(seed)`, index draws `integers(0, n, (chunk, n))` in turn),
    linear-interpolated quantiles."""
    diff = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    rng = np.random.default_rng(seed)
    means = np.concatenate(
        [
            diff[rng.integers(0, diff.size, (min(chunk, n_resamples - start), diff.size))].mean(1)
            for start in range(0, n_resamples, chunk)
        ]
    )
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)
