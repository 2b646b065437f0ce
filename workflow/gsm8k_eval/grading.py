"""The score stage: grade an evaluation's generations.jsonl into rollouts.jsonl and summary.json.

Cheap and separate from generation, so changing `scoring.*` or the grading code never
regenerates a token. The same function grades the evaluate stage's and the PyTorch reference
stage's generations (one grading function). rollouts.jsonl and summary.json keep their public
fields (see `rollout_row` and `summary.summary_from`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gsm8k_eval.evaluation.options import GENERATION_RECORD, GENERATIONS
from gsm8k_eval.evaluation.requests import SAMPLE_FIELDS
from gsm8k_eval.io import read_json, read_jsonl, write_json, write_jsonl
from gsm8k_eval.scoring import gold_answer, score_response, truncate_response
from gsm8k_eval.summary import summary_from

ROLLOUTS = "rollouts.jsonl"
SUMMARY = "summary.json"


def rollout_row(
    row: dict[str, Any], stop_sequences: Sequence[str], primary_method: str
) -> dict[str, Any]:
    """One rollouts.jsonl line (the public schema) from one generations.jsonl line; a sampled
    run's rows keep their sample index and sampling settings (`requests.SAMPLE_FIELDS`)."""
    gold = gold_answer(row["answer"])
    scored_text = truncate_response(row["response"], tuple(stop_sequences))
    scored = score_response(scored_text, gold, primary=primary_method, reference=row["answer"])
    return {
        "id": row["id"],
        "question": row["question"],
        "prompt": row["prompt"],
        "response": row["response"],
        "tokens": row["tokens"],
        "extracted_answer": scored.extracted_answer,
        "gold": gold,
        "correct": scored.correct,
        "extracted": scored.extracted,
        "correct_by_method": scored.correct_by_method,
        "num_steps": row["num_steps"],
        "stop_reason": row["stop_reason"],
        "token_logits": row["token_logits"],
        "prompt_tokens": row["prompt_tokens"],
        "batch_size": row["batch_size"],
        "checkpoint": row["checkpoint"],
        **{key: row[key] for key in SAMPLE_FIELDS if key in row},
    }


def score(folder: Path, primary_method: str, output_dir: Path | None = None) -> Path:
    """Grade `folder`'s generations.jsonl (with its generation.json) into rollouts.jsonl and
    summary.json in `output_dir` (default: the same folder); returns rollouts.jsonl."""
    folder = Path(folder)
    output_dir = Path(output_dir) if output_dir is not None else folder
    record = read_json(folder / GENERATION_RECORD)
    stops = record.get("stop_sequences", [])
    rows = [rollout_row(r, stops, primary_method) for r in read_jsonl(folder / GENERATIONS)]
    output_dir.mkdir(parents=True, exist_ok=True)
    out = output_dir / ROLLOUTS
    write_jsonl(out, rows)
    write_json(output_dir / SUMMARY, summary_from(record, rows, primary_method))
    return out
