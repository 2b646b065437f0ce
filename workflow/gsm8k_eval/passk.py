"""Summary statistics of n samples per question: mean accuracy, pass@k, maj@k (issue 24).

Used by the score stage (`sampled_summary.py`) and the report (`report/sampled.py`).

* `pass_at_k`: the unbiased estimator of Chen et al. (2021), 1 - C(n - c, k) / C(n, k), computed
  as their numerically stable product 1 - prod_{i = n - c + 1}^{n} (1 - k / i).
* `majority_index`: majority vote over the first k extracted answers. `None` (no valid answer)
  never wins unless every one of the k is `None`; among answers with the highest count the one
  whose first occurrence is earliest wins. maj@k is correct iff the winning sample is.
* `summarize`: each statistic averaged over questions with a percentile bootstrap interval over
  questions (questions resampled with replacement; one resampling, with a fixed seed, shared
  by every statistic and k). All values are floats; nothing is formatted here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gsm8k_eval.stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED, Interval

_CHUNK = 1_000


@dataclass(frozen=True)
class Estimate:
    """A mean over questions and its bootstrap interval."""

    value: float
    interval: Interval


@dataclass(frozen=True)
class SampledSummary:
    """Statistics of `samples` samples for each of `questions` questions.

    `pass_at_k[k - 1]` and `maj_at_k[k - 1]` hold pass@k and maj@k for k = 1..samples.
    """

    questions: int
    samples: int
    mean_accuracy: Estimate
    pass_at_k: tuple[Estimate, ...]
    maj_at_k: tuple[Estimate, ...]
    confidence: float
    n_resamples: int
    seed: int


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k of the n samples (c correct) drawn without
    replacement is correct: 1 - C(n - c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def pass_at_k_curve(n: int, c: int) -> np.ndarray:
    """pass@k for k = 1..n, float64 [n]."""
    return np.array([pass_at_k(n, c, k) for k in range(1, n + 1)], dtype=np.float64)


def majority_index(answers: Sequence[str | None], k: int) -> int | None:
    """Index of the winning sample of a vote over `answers[:k]`, `None` if all are `None`.

    The winner is the earliest sample carrying the most frequent non-`None` answer; ties in
    count go to the answer that occurs first. Pass normalised answers (scoring.normalise) so
    equal values vote together.
    """
    if not 1 <= k <= len(answers):
        raise ValueError(f"need 1 <= k <= {len(answers)}, got k={k}")
    first: dict[str, int] = {}
    counts: Counter[str] = Counter()
    for index, answer in enumerate(answers[:k]):
        if answer is not None:
            first.setdefault(answer, index)
            counts[answer] += 1
    if not counts:
        return None
    return min(first.values(), key=lambda i: (-counts[answers[i]], i))


def _check_question(correct: Sequence[bool], answers: Sequence[str | None]) -> None:
    if len(correct) != len(answers):
        raise ValueError(f"{len(correct)} correctness flags but {len(answers)} answers")
    verdict: dict[str, bool] = {}
    for flag, answer in zip(correct, answers, strict=True):
        if answer is not None and verdict.setdefault(answer, bool(flag)) != bool(flag):
            raise ValueError(f"answer {answer!r} is both correct and wrong within one question")


def maj_at_k_curve(correct: Sequence[bool], answers: Sequence[str | None]) -> np.ndarray:
    """maj@k (1.0 correct, 0.0 wrong) for k = 1..n of one question, float64 [n].

    Every sample sharing an answer must share its correctness (ValueError otherwise).
    """
    _check_question(correct, answers)
    winners = (majority_index(answers, k) for k in range(1, len(answers) + 1))
    return np.array([w is not None and bool(correct[w]) for w in winners], dtype=np.float64)


def bootstrap_intervals(
    values: np.ndarray, confidence: float, n_resamples: int, seed: int
) -> list[Interval]:
    """Percentile bootstrap intervals of the column means of `values` [Q, m], resampling rows.

    One set of resamples (numpy default_rng(seed), multinomial row weights) for all columns.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError("n_resamples must be >= 1")
    rows = values.shape[0]
    rng = np.random.default_rng(seed)
    means = np.empty((n_resamples, values.shape[1]), dtype=np.float64)
    for start in range(0, n_resamples, _CHUNK):
        stop = min(start + _CHUNK, n_resamples)
        weights = rng.multinomial(rows, np.full(rows, 1.0 / rows), size=stop - start)
        means[start:stop] = weights @ values / rows
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
    centre = values.mean(axis=0)
    # The percentile interval of a mean always brackets it up to rounding; clamp that away.
    return [
        Interval(float(min(lo, c)), float(max(hi, c)))
        for lo, hi, c in zip(low, high, centre, strict=True)
    ]


def _sample_count(correct: Sequence[Sequence[bool]]) -> int:
    if not correct:
        raise ValueError("need at least one question")
    sizes = {len(row) for row in correct}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"every question needs the same n >= 1 samples, got sizes {sorted(sizes)}")
    return sizes.pop()


def summarize(
    correct: Sequence[Sequence[bool]],
    answers: Sequence[Sequence[str | None]],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> SampledSummary:
    """Mean accuracy, pass@k and maj@k over questions, each with a bootstrap interval.

    `correct[q][i]` / `answers[q][i]`: correctness and normalised extracted answer of sample i
    of question q, in sample-index order (maj@k votes over the first k samples).
    """
    n = _sample_count(correct)
    if len(answers) != len(correct):
        raise ValueError(f"{len(correct)} questions of flags but {len(answers)} of answers")
    hits = np.array([[bool(f) for f in row] for row in correct], dtype=np.float64)
    per_question = np.concatenate(
        [
            hits.mean(axis=1, keepdims=True),
            np.stack([pass_at_k_curve(n, int(c)) for c in hits.sum(axis=1)]),
            np.stack([maj_at_k_curve(f, a) for f, a in zip(correct, answers, strict=True)]),
        ],
        axis=1,
    )
    intervals = bootstrap_intervals(per_question, confidence, n_resamples, seed)
    estimates = [
        Estimate(float(v), i) for v, i in zip(per_question.mean(axis=0), intervals, strict=True)
    ]
    return SampledSummary(
        questions=len(correct),
        samples=n,
        mean_accuracy=estimates[0],
        pass_at_k=tuple(estimates[1 : n + 1]),
        maj_at_k=tuple(estimates[n + 1 :]),
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
    )
