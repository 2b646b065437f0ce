"""`gsm8k-eval`: one subcommand per pipeline stage, so any stage runs without Snakemake."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from gsm8k_eval import schema

Handler = Callable[[argparse.Namespace], None]


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
        _add_download_dataset,
        _add_fetch_model,
        _add_fetch_checkpoint,
        _add_evaluate,
        _add_gather,
        _add_check_invariance,
        _add_render_report,
        _add_reference,
    ):
        add(sub)
    return parser


def _subparser(sub, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    """A subcommand reachable as `name` and as its snake_case rule name."""
    aliases = [alias for alias in [name.replace("-", "_")] if alias != name]
    parser = sub.add_parser(name, aliases=aliases, help=help_text, description=help_text)
    parser.set_defaults(handler=handler, command=name, parser=parser)
    return parser


# --- download-dataset -------------------------------------------------------------------------


def _add_download_dataset(sub) -> None:
    p = _subparser(
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
    p.add_argument("--source", required=True, help=schema.description("model.source"))
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
    p.add_argument("--source", required=True, help=schema.description("checkpoints[].source"))
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
    p.add_argument("--model-dir", type=Path, required=True, help="folder written by fetch-model")
    p.add_argument(
        "--checkpoint",
        default="base",
        help="checkpoint directory (from fetch-checkpoint) or 'base'",
    )
    p.add_argument("--checkpoint-name", default=None, help="name in outputs (default: derived)")
    p.add_argument("--batch-size", type=_positive_int, required=True)
    _schema_option(p, "--limit", "limit", type=_positive_int)
    _schema_option(
        p,
        "--max-new-tokens",
        "sampling.max_generation_steps",
        "--max-generation-steps",
        dest="max_generation_steps",
        type=_positive_int,
    )
    _schema_option(p, "--max-prompt-length", "sampling.max_prompt_length", type=_positive_int)
    _schema_option(p, "--eos-tokens", "sampling.eos_tokens", type=_int_list)
    _schema_option(p, "--decode-rows", "sampling.decode_rows", type=_at_least_two)
    _schema_option(p, "--segment-steps", "sampling.segment_steps", type=_positive_int)
    _schema_option(p, "--dtype", "sampling.dtype")
    _schema_option(p, "--sampler", "sampling.sampler")
    _schema_option(p, "--prompt-template", "prompt.template")
    _schema_option(p, "--num-shots", "prompt.num_shots", type=_non_negative_int)
    _schema_option(p, "--prompt-seed", "prompt.seed", type=_integer)
    p.add_argument(
        "--fewshot-data", type=Path, default=None, help="train jsonl (for the fewshot template)"
    )
    _schema_option(p, "--lora-rank", "lora.rank", type=_positive_int)
    _schema_option(p, "--lora-alpha", "lora.alpha", type=_positive_float)
    _schema_option(p, "--lora-module-path", "lora.module_path")
    _schema_option(p, "--primary-method", "scoring.primary")
    _schema_option(p, "--shard-size", "evaluation.shard_size", type=_positive_int)
    _schema_option(p, "--device", "evaluation.device")
    p.add_argument("--dataset-manifest", type=Path, default=None)
    p.add_argument("--model-source", default=None, help="recorded in summary.json")
    p.add_argument("--config-hash", default=None, help="recorded in summary.json")
    p.add_argument(
        "--part",
        type=_part,
        default=None,
        help="K/N: generate only the K-th of N contiguous runs of shards (gather them with "
        "`gsm8k-eval gather`; config: evaluation.parallel_jobs)",
    )
    p.add_argument(
        "--compilation-cache",
        type=Path,
        default=None,
        help=f"{schema.description('evaluation.compilation_cache')} (default: off)",
    )
    p.add_argument("--output-dir", "--out", dest="output_dir", type=Path, required=True)


def _schema_option(
    parser: argparse.ArgumentParser, flag: str, key: str, *aliases: str, **kwargs: object
) -> None:
    """A flag whose default, help and choices come from the config schema's key."""
    spec = schema.node(key)
    if "enum" in spec:
        kwargs.setdefault("choices", spec["enum"])
    default = schema.default(key)
    parser.add_argument(
        flag,
        *aliases,
        default=tuple(default) if isinstance(default, list) else default,
        help=f"{schema.description(key)} (config: {key}; default: %(default)s)",
        **kwargs,
    )


def _run_evaluate(args: argparse.Namespace) -> None:
    _check_evaluate_inputs(args)
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
        segment_steps=args.segment_steps,
        prompt_template=args.prompt_template,
        num_shots=args.num_shots,
        prompt_seed=args.prompt_seed,
        fewshot_path=args.fewshot_data,
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha,
        lora_module_path=args.lora_module_path,
        primary_method=args.primary_method,
        shard_size=args.shard_size,
        dataset_manifest=args.dataset_manifest,
        config_hash=args.config_hash,
        model_source=args.model_source,
        device=args.device,
        part=args.part,
        compilation_cache=args.compilation_cache,
    )
    evaluate(options)


# --- gather -----------------------------------------------------------------------------------


def _add_gather(sub) -> None:
    p = _subparser(
        sub,
        "gather",
        _run_gather,
        "Join the parts of one evaluation (evaluate --part K/N) into rollouts.jsonl and "
        "summary.json, byte-identical rollouts to a single job's.",
    )
    p.add_argument(
        "--parts", type=Path, nargs="+", required=True, help="the parts' output folders, in order"
    )
    p.add_argument("--output-dir", "--out", dest="output_dir", type=Path, required=True)


def _run_gather(args: argparse.Namespace) -> None:
    from gsm8k_eval.gather import gather

    gather(args.parts, args.output_dir)


def _check_evaluate_inputs(args: argparse.Namespace) -> None:
    """Fail before any work, with the flag to fix, on inputs that are missing or inconsistent."""
    parser = args.parser
    if args.prompt_template == "fewshot" and args.num_shots > 0 and args.fewshot_data is None:
        parser.error(
            "--prompt-template fewshot needs --fewshot-data (the GSM8K train jsonl, "
            "e.g. from `gsm8k-eval download-dataset --split train`), or --num-shots 0"
        )
    paths = [("--dataset", args.dataset), ("--model-dir", args.model_dir)]
    paths += [("--fewshot-data", args.fewshot_data)] if args.fewshot_data else []
    if args.checkpoint != "base":
        paths.append(("--checkpoint", Path(args.checkpoint)))
    for flag, path in paths:
        if not path.exists():
            hint = " (write it with `gsm8k-eval fetch-model`)" if flag == "--model-dir" else ""
            parser.error(f"{flag} {path}: no such file or directory{hint}")


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
    p.add_argument("--sampler", default=None, help="sampler name (recorded in the output)")
    p.add_argument(
        "--rollouts",
        nargs="+",
        required=True,
        metavar="BS=PATH",
        help="batch size and rollouts.jsonl, e.g. 1=results/demo/eval/base/fixed/bs1/rollouts.jsonl"
        " (one checkpoint and sampler)",
    )
    p.add_argument("--fail-on-divergence", action="store_true")
    p.add_argument("--out", type=Path, required=True)


def _run_check_invariance(args: argparse.Namespace) -> None:
    from gsm8k_eval.invariance import check_invariance

    rollouts = dict(_batch_size_path(item) for item in args.rollouts)
    check_invariance(
        rollouts,
        args.out,
        checkpoint=args.checkpoint,
        sampler=args.sampler,
        fail_on_divergence=args.fail_on_divergence,
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
    p.add_argument(
        "--reference",
        type=Path,
        nargs="*",
        default=[],
        help="summary.json files of `gsm8k-eval reference` (adds the JAX vs PyTorch section)",
    )
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
        inputs.reference_summaries = list(args.reference)
    if args.template_dir is not None:
        inputs.template_dir = args.template_dir
    render_report(inputs)


# --- reference --------------------------------------------------------------------------------


def _add_reference(sub) -> None:
    p = _subparser(
        sub,
        "reference",
        _run_reference,
        "PyTorch reference: transformers greedy generation of the base model on the evaluate "
        "stage's prompt token ids (needs the [reference] extra).",
    )
    p.add_argument("--dataset", type=Path, required=True, help="jsonl with question/answer")
    p.add_argument("--model-dir", type=Path, required=True, help="folder written by fetch-model")
    p.add_argument(
        "--checkpoint", default="base", help="'base' (LoRA checkpoints are not supported)"
    )
    p.add_argument("--checkpoint-name", default="base", help="name in outputs")
    _schema_option(p, "--batch-size", "reference.batch_size", type=_positive_int)
    _schema_option(p, "--dtype", "reference.dtype")
    _schema_option(p, "--device", "reference.device")
    _schema_option(p, "--limit", "limit", type=_positive_int)
    _schema_option(
        p,
        "--max-new-tokens",
        "sampling.max_generation_steps",
        type=_positive_int,
        dest="max_generation_steps",
    )
    _schema_option(p, "--max-prompt-length", "sampling.max_prompt_length", type=_positive_int)
    _schema_option(p, "--eos-tokens", "sampling.eos_tokens", type=_int_list)
    _schema_option(p, "--prompt-template", "prompt.template")
    _schema_option(p, "--num-shots", "prompt.num_shots", type=_non_negative_int)
    _schema_option(p, "--prompt-seed", "prompt.seed", type=_integer)
    p.add_argument(
        "--fewshot-data", type=Path, default=None, help="train jsonl (for the fewshot template)"
    )
    _schema_option(p, "--primary-method", "scoring.primary")
    p.add_argument("--dataset-manifest", type=Path, default=None)
    p.add_argument("--model-source", default=None, help="recorded in summary.json")
    p.add_argument("--config-hash", default=None, help="recorded in summary.json")
    p.add_argument("--output-dir", "--out", dest="output_dir", type=Path, required=True)


def _run_reference(args: argparse.Namespace) -> None:
    if args.checkpoint != "base":
        args.parser.error(
            f"--checkpoint {args.checkpoint}: the PyTorch reference runs the base model only "
            "(LoRA checkpoints are not supported); use --checkpoint base"
        )
    _check_evaluate_inputs(args)
    from gsm8k_eval.reference import ReferenceOptions, run_reference

    run_reference(
        ReferenceOptions(
            dataset_path=args.dataset,
            model_dir=args.model_dir,
            output_dir=args.output_dir,
            checkpoint_name=args.checkpoint_name,
            limit=args.limit,
            dtype=args.dtype,
            batch_size=args.batch_size,
            device=args.device,
            max_generation_steps=args.max_generation_steps,
            max_prompt_length=args.max_prompt_length,
            eos_tokens=tuple(args.eos_tokens),
            prompt_template=args.prompt_template,
            num_shots=args.num_shots,
            prompt_seed=args.prompt_seed,
            fewshot_path=args.fewshot_data,
            primary_method=args.primary_method,
            dataset_manifest=args.dataset_manifest,
            model_source=args.model_source,
            config_hash=args.config_hash,
        )
    )


# --- argument types ---------------------------------------------------------------------------
# argparse prefixes each message with the flag: "argument --batch-size: expected ...".


def _integer(text: str, what: str = "an integer") -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _integer(text, "a positive integer")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = _integer(text, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _at_least_two(text: str) -> int:
    value = _integer(text, "an integer >= 2")
    if value < 2:
        raise argparse.ArgumentTypeError(
            f"must be at least 2 (a 1-row matmul takes another kernel), got {text!r}"
        )
    return value


def _part(text: str) -> tuple[int, int]:
    from gsm8k_eval.parts import parse_part

    try:
        return parse_part(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _optional_str(text: str) -> str | None:
    """An empty string (as Snakemake passes an unset param) means None."""
    return text or None


def _optional_int(text: str) -> int | None:
    return _integer(text) if text else None


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 1,106, got {text!r}"
        ) from None


if __name__ == "__main__":
    sys.exit(main())
