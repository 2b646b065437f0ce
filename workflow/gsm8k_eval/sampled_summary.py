"""summary.json's `sampled` block: pass@k and maj@k of a sampled run's graded rollouts.

A sampled run (temperature > 0, docs/sampled.md) has `num_samples` rollouts per question, each
with its `sample_index`. The score stage grades every one; this module groups them by question
(in sample-index order) and, through `passk.summarize`, gives pass@1 (the mean accuracy over
samples), pass@k (Chen et al. 2021) and maj@k (majority vote of the first k samples' answers,
lm-eval self-consistency's `maj@k`) for k = 1, 2, 4, ... up to n (and n itself), each with a
percentile bootstrap interval over questions. Greedy rollouts (no `sample_index`) get no block.

Votes are over the primary method's extracted answers, compared as that method grades them
(numerically for the numeric methods, lm-eval's normalised exact match for the lm-eval ones),
so samples voting together share their correctness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gsm8k_eval.passk import Estimate, SampledSummary, summarize
from gsm8k_eval.scoring import LM_EVAL_METHODS, lm_eval_normalise, normalise

SAMPLED_KEY = "sampled"
INTERVAL_METHOD = "percentile bootstrap over questions"


def is_sampled(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether rollouts come from a sampled run (they carry `sample_index`)."""
    return any("sample_index" in row for row in rows)


def reported_ks(n: int) -> list[int]:
    """k = 1, 2, 4, ... up to n, and n itself."""
    ks = [1 << i for i in range(n.bit_length()) if 1 << i <= n]
    return ks if ks[-1] == n else [*ks, n]


def vote_key(extracted: str | None, method: str) -> str | None:
    """What maj@k counts: the extracted answer as `method` compares it with the gold."""
    if extracted is None:
        return None
    return lm_eval_normalise(extracted) if method in LM_EVAL_METHODS else normalise(extracted)


def by_question(rows: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Rollouts grouped by question id (first-appearance order), each in sample-index order;
    a `ValueError` unless every question has samples 0..n-1 for one n."""
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["id"], []).append(row)
    out = [sorted(group, key=lambda r: int(r["sample_index"])) for group in groups.values()]
    n = len(out[0]) if out else 0
    for question, group in zip(groups, out, strict=True):
        if [int(r["sample_index"]) for r in group] != list(range(n)):
            indices = [r["sample_index"] for r in group]
            raise ValueError(f"question {question}: sample indices {indices}, expected 0..{n - 1}")
    return out


def _estimate(estimate: Estimate) -> dict[str, Any]:
    return {"value": estimate.value, "interval": [estimate.interval.low, estimate.interval.high]}


def sampled_summary(rows: Sequence[Mapping[str, Any]], primary_method: str) -> SampledSummary:
    """`passk.summarize` of graded sampled rollouts (the primary method's verdicts and votes)."""
    groups = by_question(rows)
    correct = [[bool(r["correct"]) for r in group] for group in groups]
    answers = [[vote_key(r["extracted_answer"], primary_method) for r in group] for group in groups]
    return summarize(correct, answers)


def sampled_fields(rows: Sequence[Mapping[str, Any]], primary_method: str) -> dict[str, Any]:
    """summary.json's `sampled` block (empty for greedy rollouts)."""
    if not rows or not is_sampled(rows):
        return {}
    summary = sampled_summary(rows, primary_method)
    ks = reported_ks(summary.samples)
    block: dict[str, Any] = {
        "num_samples": summary.samples,
        "questions": summary.questions,
        "method": primary_method,
        "k": ks,
        "interval": INTERVAL_METHOD,
        "confidence": summary.confidence,
        "n_resamples": summary.n_resamples,
        "bootstrap_seed": summary.seed,
    }
    block.update({f"pass@{k}": _estimate(summary.pass_at_k[k - 1]) for k in ks})
    block.update({f"maj@{k}": _estimate(summary.maj_at_k[k - 1]) for k in ks})
    return {SAMPLED_KEY: block}
