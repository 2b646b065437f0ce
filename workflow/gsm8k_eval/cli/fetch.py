"""Subcommands that bring inputs in: download-dataset, fetch-model, fetch-checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from gsm8k_eval import schema
from gsm8k_eval.cli.options import optional_int, optional_str, subparser


def add_download_dataset(sub) -> None:
    p = subparser(
        sub,
        "download-dataset",
        _run_download_dataset,
        "Download GSM8K (hf: or a local jsonl/parquet), pinned and checksummed.",
    )
    p.add_argument(
        "--source",
        default=schema.default("dataset.source"),
        help=schema.description("dataset.source"),
    )
    p.add_argument("--split", default="test", choices=["test", "train"])
    p.add_argument(
        "--config-name",
        default=schema.default("dataset.config_name"),
        help=schema.description("dataset.config_name"),
    )
    p.add_argument(
        "--revision", type=optional_str, default=None, help="pinned dataset revision (hf: sources)"
    )
    p.add_argument(
        "--sha256", type=optional_str, default=None, help="expected sha256 of the canonical jsonl"
    )
    p.add_argument("--out", type=Path, required=True, help="canonical jsonl to write")
    p.add_argument("--manifest", type=Path, required=True, help="manifest json to write")


def _run_download_dataset(args: argparse.Namespace) -> None:
    from gsm8k_eval.data import download_dataset

    download_dataset(
        args.source,
        args.out,
        args.manifest,
        revision=args.revision,
        expected_sha256=args.sha256,
        split=args.split,
        config_name=args.config_name,
    )


# --- fetch-model ------------------------------------------------------------------------------


def add_fetch_model(sub) -> None:
    p = subparser(
        sub,
        "fetch-model",
        _run_fetch_model,
        "Turn a model source into a local directory (safetensors + tokenizer.json).",
    )
    p.add_argument("--source", required=True, help=schema.description("model.source"))
    p.add_argument("--revision", type=optional_str, default=None)
    p.add_argument("--out", type=Path, required=True, help="model directory to write")


def _run_fetch_model(args: argparse.Namespace) -> None:
    from gsm8k_eval.models import fetch_model

    fetch_model(args.source, args.out, revision=args.revision)


# --- fetch-checkpoint -------------------------------------------------------------------------


def add_fetch_checkpoint(sub) -> None:
    p = subparser(
        sub,
        "fetch-checkpoint",
        _run_fetch_checkpoint,
        "Fetch a tunix LoRA actor checkpoint (gs://, file://, local) and verify it.",
    )
    p.add_argument("--source", required=True, help=schema.description("checkpoints[].source"))
    p.add_argument(
        "--step", type=optional_int, default=None, help="checkpoint step (default: latest)"
    )
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")


def _run_fetch_checkpoint(args: argparse.Namespace) -> None:
    from gsm8k_eval.checkpoints import fetch_checkpoint

    fetch_checkpoint(args.source, args.out, step=args.step)
