"""What summary.json holds: an evaluation's generation.json (times, tokens, provenance) with the
grading added (`rollout_fields`: accuracy by method and its interval; the primary method).

The shard time fields (`shard_fields`) live with the generation record
(`gsm8k_eval.evaluation.record`), which the score stage does not import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# generation.json keys that only the score stage reads (never copied into summary.json); the
# stop sequences are copied: the report and the lm-eval export show the ones actually used.
GENERATION_ONLY_KEYS: tuple[str, ...] = ()
# summary.json keys that come before the grading fields (as they always have).
HEAD_KEYS = ("checkpoint", "batch_size", "framework")


def rollout_fields(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary fields computed from the rollouts alone (accuracy and its interval)."""
    from gsm8k_eval.scoring import METHODS
    from gsm8k_eval.stats import wilson_interval

    total = len(rows)
    correct = sum(bool(row["correct"]) for row in rows)
    interval = wilson_interval(correct, total)
    return {
        "accuracy": correct / total if total else 0.0,
        "correct": correct,
        "total": total,
        "wilson_95": [interval.low, interval.high],
        "accuracy_by_method": {
            method: (
                sum(bool(r["correct_by_method"][method]) for r in rows) / total if total else 0.0
            )
            for method in METHODS
        },
    }


def summary_from(
    record: Mapping[str, Any], rows: list[dict[str, Any]], primary_method: str
) -> dict[str, Any]:
    """summary.json: the generation record's fields with the grading of `rows` after its head
    (a sampled run's also gets pass@k and maj@k: `sampled_summary.sampled_fields`)."""
    from gsm8k_eval.sampled_summary import sampled_fields

    kept = {k: v for k, v in record.items() if k not in GENERATION_ONLY_KEYS}
    head = {k: kept.pop(k) for k in HEAD_KEYS if k in kept}
    graded = {**rollout_fields(rows), "primary_method": primary_method}
    return {**head, **graded, **sampled_fields(rows, primary_method), **kept}
