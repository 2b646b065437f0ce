"""Subcommand that writes an evaluation in another tool's format: export-lm-eval."""

from __future__ import annotations

import argparse
from pathlib import Path

from gsm8k_eval.cli.options import subparser


def add_export_lm_eval(sub) -> None:
    p = subparser(
        sub,
        "export-lm-eval",
        _run_export_lm_eval,
        "Write one evaluation as lm-eval writes its runs: results.json (exact_match and "
        "exact_match_stderr per gsm8k filter) and samples_gsm8k.jsonl (one record per example "
        "and filter).",
    )
    p.add_argument("--rollouts", type=Path, required=True, help="the evaluation's rollouts.jsonl")
    p.add_argument("--summary", type=Path, required=True, help="the evaluation's summary.json")
    p.add_argument(
        "--dataset", type=Path, required=True, help="the GSM8K test jsonl the evaluation read"
    )
    p.add_argument("--out-dir", type=Path, required=True)


def _run_export_lm_eval(args: argparse.Namespace) -> None:
    from gsm8k_eval.lm_eval_export import export_lm_eval

    export_lm_eval(args.rollouts, args.summary, args.dataset, args.out_dir)
