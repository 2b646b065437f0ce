"""Subcommands that generate: evaluate, gather, reference (the `score` stage grades them)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from gsm8k_eval import schema
from gsm8k_eval.cli.options import (
    at_least_two,
    auto_or,
    int_list,
    integer,
    non_negative_float,
    non_negative_int,
    options_from,
    part,
    positive_float,
    positive_int,
    probability,
    schema_option,
    subparser,
)


def add_evaluate(sub) -> None:
    p = subparser(
        sub,
        "evaluate",
        _run_evaluate,
        "Generate one checkpoint's outputs at one batch size: generations.jsonl (tokens, text, "
        "float32 logits, stop reasons) and generation.json (timings); `score` grades them.",
    )
    p.add_argument("--dataset", type=Path, required=True, help="jsonl with question/answer")
    p.add_argument("--model-dir", type=Path, required=True, help="folder written by fetch-model")
    p.add_argument(
        "--checkpoint",
        default="base",
        help="checkpoint directory (from fetch-checkpoint) or 'base'",
    )
    p.add_argument("--checkpoint-name", default=None, help="name in outputs (default: derived)")
    p.add_argument("--batch-size", type=positive_int, required=True)
    schema_option(p, "--limit", "limit", type=positive_int)
    schema_option(
        p,
        "--max-new-tokens",
        "sampling.max_generation_steps",
        "--max-generation-steps",
        dest="max_generation_steps",
        type=positive_int,
    )
    schema_option(p, "--max-prompt-length", "sampling.max_prompt_length", type=positive_int)
    schema_option(p, "--eos-tokens", "sampling.eos_tokens", type=int_list)
    schema_option(p, "--decode-rows", "sampling.decode_rows", type=auto_or(at_least_two))
    schema_option(p, "--segment-steps", "sampling.segment_steps", type=auto_or(positive_int))
    schema_option(p, "--prefill-rows", "sampling.prefill_rows", type=auto_or(positive_int))
    schema_option(p, "--dtype", "sampling.dtype")
    schema_option(p, "--sampler", "sampling.sampler")
    _add_sampling_options(p)
    schema_option(p, "--prompt-template", "prompt.template")
    schema_option(p, "--num-shots", "prompt.num_shots", type=non_negative_int)
    schema_option(p, "--prompt-seed", "prompt.seed", type=integer)
    p.add_argument(
        "--fewshot-data", type=Path, default=None, help="train jsonl (for the fewshot template)"
    )
    schema_option(p, "--lora-rank", "lora.rank", type=positive_int)
    schema_option(p, "--lora-alpha", "lora.alpha", type=positive_float)
    schema_option(p, "--lora-module-path", "lora.module_path")
    schema_option(p, "--shard-size", "evaluation.shard_size", type=positive_int)
    schema_option(p, "--device", "evaluation.device")
    schema_option(p, "--gpu-determinism", "evaluation.gpu_determinism")
    p.add_argument("--dataset-manifest", type=Path, default=None)
    p.add_argument("--model-source", default=None, help="recorded in summary.json")
    p.add_argument("--config-hash", default=None, help="recorded in summary.json")
    p.add_argument(
        "--part",
        type=part,
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
    _add_deprecated_primary_method(p)


def _add_sampling_options(p: argparse.ArgumentParser) -> None:
    """Sampled evaluation (docs/sampled.md): temperature 0 (the default) is greedy."""
    schema_option(p, "--temperature", "sampling.temperature", type=non_negative_float)
    schema_option(p, "--top-k", "sampling.top_k", type=non_negative_int)
    schema_option(p, "--top-p", "sampling.top_p", type=probability)
    schema_option(p, "--num-samples", "sampling.num_samples", type=positive_int)
    schema_option(p, "--sampling-seed", "sampling.seed", dest="sampling_seed", type=integer)


def _add_deprecated_primary_method(p: argparse.ArgumentParser) -> None:
    """`--primary-method` belonged to generation before grading became its own stage: still
    accepted (with a deprecation message), it changes nothing here."""
    p.add_argument(
        "--primary-method",
        dest="deprecated_primary_method",
        default=None,
        help="deprecated: grading is the `score` stage's (gsm8k-eval score --primary-method)",
    )


def _warn_deprecated_primary_method(args: argparse.Namespace) -> None:
    if args.deprecated_primary_method is not None:
        print(
            "gsm8k-eval: --primary-method is deprecated here: generation no longer grades; "
            "grading this output once for compatibility with `gsm8k-eval score "
            f"--generations-dir DIR --primary-method {args.deprecated_primary_method}` "
            "(call that instead)",
            file=sys.stderr,
        )


def _grade_for_compatibility(args: argparse.Namespace) -> None:
    """With the deprecated `--primary-method`, write rollouts.jsonl and summary.json as before,
    by running the `score` stage in its own process (so this stage's code holds no grading)."""
    if args.deprecated_primary_method is None:
        return
    score = [sys.executable, "-m", "gsm8k_eval", "score", "--generations-dir"]
    score += [str(args.output_dir), "--primary-method", args.deprecated_primary_method]
    subprocess.run(score, check=True)


def _run_evaluate(args: argparse.Namespace) -> None:
    _check_evaluate_inputs(args)
    _warn_deprecated_primary_method(args)
    _select_device(args.device, args.gpu_determinism, args.compilation_cache)
    from gsm8k_eval.evaluation.options import EvaluateOptions
    from gsm8k_eval.evaluation.run import generate

    checkpoint_dir = None if args.checkpoint == "base" else Path(args.checkpoint)
    name = args.checkpoint_name or (checkpoint_dir.name if checkpoint_dir else "base")
    options = options_from(
        EvaluateOptions, args, checkpoint_dir=checkpoint_dir, checkpoint_name=name
    )
    generate(options)
    _grade_for_compatibility(args)


# --- gather -----------------------------------------------------------------------------------


def add_gather(sub) -> None:
    p = subparser(
        sub,
        "gather",
        _run_gather,
        "Join the parts of one evaluation (evaluate --part K/N) into generations.jsonl and "
        "generation.json, byte-identical generations to a single job's.",
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
    if hasattr(args, "num_samples"):
        from gsm8k_eval.evaluation.requests import check_sampling

        try:
            check_sampling(args.temperature, args.num_samples, args.sampler)
        except ValueError as error:
            parser.error(f"--temperature/--num-samples/--sampler: {error}")
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


def _select_device(
    device: str, gpu_determinism: str = "flags", shared_dir: Path | None = None
) -> None:
    """Pin JAX's platform and add GPU determinism flags before JAX is imported."""
    from gsm8k_eval.device import select_device

    select_device(device, gpu_determinism, shared_dir)


def add_reference(sub) -> None:
    p = subparser(
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
    schema_option(p, "--batch-size", "reference.batch_size", type=positive_int)
    schema_option(p, "--dtype", "reference.dtype")
    schema_option(p, "--device", "reference.device")
    schema_option(p, "--limit", "limit", type=positive_int)
    schema_option(
        p,
        "--max-new-tokens",
        "sampling.max_generation_steps",
        type=positive_int,
        dest="max_generation_steps",
    )
    schema_option(p, "--max-prompt-length", "sampling.max_prompt_length", type=positive_int)
    schema_option(p, "--eos-tokens", "sampling.eos_tokens", type=int_list)
    schema_option(p, "--prompt-template", "prompt.template")
    schema_option(p, "--num-shots", "prompt.num_shots", type=non_negative_int)
    schema_option(p, "--prompt-seed", "prompt.seed", type=integer)
    p.add_argument(
        "--fewshot-data", type=Path, default=None, help="train jsonl (for the fewshot template)"
    )
    p.add_argument("--dataset-manifest", type=Path, default=None)
    p.add_argument("--model-source", default=None, help="recorded in summary.json")
    p.add_argument("--config-hash", default=None, help="recorded in summary.json")
    p.add_argument("--output-dir", "--out", dest="output_dir", type=Path, required=True)
    _add_deprecated_primary_method(p)


def _run_reference(args: argparse.Namespace) -> None:
    _warn_deprecated_primary_method(args)
    if args.checkpoint != "base":
        args.parser.error(
            f"--checkpoint {args.checkpoint}: the PyTorch reference runs the base model only "
            "(LoRA checkpoints are not supported); use --checkpoint base"
        )
    _check_evaluate_inputs(args)
    from gsm8k_eval.reference import ReferenceOptions, run_reference

    run_reference(options_from(ReferenceOptions, args))
    _grade_for_compatibility(args)
