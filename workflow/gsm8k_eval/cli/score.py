"""The `score` subcommand: grade an evaluation's (or the reference's) generations."""

from __future__ import annotations

import argparse
from pathlib import Path

from gsm8k_eval.cli.options import schema_option, subparser


def add_score(sub) -> None:
    p = subparser(
        sub,
        "score",
        _run_score,
        "Grade a folder's generations.jsonl (written by evaluate, gather or reference) into "
        "rollouts.jsonl and summary.json: every extraction method, the primary one, accuracy "
        "and its interval. Cheap: never generates.",
    )
    p.add_argument(
        "--generations-dir",
        type=Path,
        required=True,
        help="folder with generations.jsonl and generation.json",
    )
    schema_option(p, "--primary-method", "scoring.primary")
    p.add_argument(
        "--output-dir",
        "--out",
        dest="output_dir",
        type=Path,
        default=None,
        help="where rollouts.jsonl and summary.json go (default: --generations-dir)",
    )


def _run_score(args: argparse.Namespace) -> None:
    from gsm8k_eval.grading import score

    score(args.generations_dir, args.primary_method, args.output_dir)
