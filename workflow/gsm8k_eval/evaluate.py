"""Old import names of the evaluate stage, kept for tests and users (issue 23 §5 split it).

The stage lives in `gsm8k_eval.evaluation` (options, workload, shards, rows, record, run) and
grading in `gsm8k_eval.grading` (the `score` stage). `evaluate()` here runs both in-process:
generation, then grading, as the pipeline's `evaluate` and `score` rules do.
"""

from __future__ import annotations

from pathlib import Path

from gsm8k_eval import schema
from gsm8k_eval.evaluation.options import (  # noqa: F401 (re-exported)
    EvaluateOptions,
    ShardRun,
    ShardStats,
    Workload,
)
from gsm8k_eval.evaluation.run import generate
from gsm8k_eval.evaluation.shards import (  # noqa: F401 (re-exported)
    DIGEST_CACHE,
    check_shard_fingerprint,
    shard_stats_paths,
)
from gsm8k_eval.evaluation.workload import render_prompts  # noqa: F401 (re-exported)


def evaluate(options: EvaluateOptions, primary_method: str | None = None) -> Path:
    """Generate (or resume) one evaluation, then grade it: rollouts.jsonl and summary.json."""
    from gsm8k_eval.grading import score

    generate(options)
    method = primary_method or schema.default("scoring.primary")
    return score(options.output_dir, method)
