"""`gsm8k-eval`: one subcommand per pipeline stage, so any stage runs without Snakemake."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from gsm8k_eval.cli.compare import (
    add_check_invariance,
    add_compare_protocols,
    add_render_report,
    add_verdict,
)
from gsm8k_eval.cli.export import add_export_lm_eval
from gsm8k_eval.cli.fetch import add_download_dataset, add_fetch_checkpoint, add_fetch_model
from gsm8k_eval.cli.generate import add_evaluate, add_gather, add_reference
from gsm8k_eval.cli.score import add_score

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the subcommand's usage, not only the top-level one
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    try:
        args.handler(args)
    except KeyboardInterrupt:
        print("gsm8k-eval: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if os.environ.get("GSM8K_EVAL_DEBUG"):
            raise
        print(f"gsm8k-eval {args.command}: error: {_describe(error)}", file=sys.stderr)
        return 1
    return 0


def _describe(error: Exception) -> str:
    """One line for the console; unexpected exception types are flagged as bugs."""
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    if isinstance(error, ValueError | RuntimeError | OSError):
        return str(error)
    return (
        f"{type(error).__name__}: {error} (unexpected: rerun with GSM8K_EVAL_DEBUG=1 for the "
        "traceback and report it)"
    )


class _Parser(argparse.ArgumentParser):
    """Errors are one line naming the flag, plus where to find the usage (not the whole usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n(see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gsm8k-eval",
        description="Reproducible, batch-invariant GSM8K evaluation of JAX/tunix models.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>")
    for add in (
        add_download_dataset,
        add_fetch_model,
        add_fetch_checkpoint,
        add_evaluate,
        add_gather,
        add_score,
        add_check_invariance,
        add_render_report,
        add_verdict,
        add_reference,
        add_export_lm_eval,
        add_compare_protocols,
    ):
        add(sub)
    return parser
