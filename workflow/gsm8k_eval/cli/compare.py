"""Subcommands that compare and report: check-invariance, render-report, verdict,
compare-protocols."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gsm8k_eval.cli.options import subparser


def add_check_invariance(sub) -> None:
    p = subparser(
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
    p.add_argument(
        "--spot-check",
        action="append",
        default=[],
        metavar="BS=PATH",
        help="a spot check's rollouts (the first examples only, at a batch size --rollouts "
        "lacks): compared with the full run on the examples they share, and labelled so",
    )
    p.add_argument(
        "--fail-on-divergence",
        action="store_true",
        help="exit non-zero (after writing --out) on any divergence; the pipeline leaves this "
        "to the `verdict` stage, after the report",
    )
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
        spot_checks=dict(_batch_size_path(item, "--spot-check") for item in args.spot_check),
    )


def _batch_size_path(item: str, flag: str = "--rollouts") -> tuple[int, Path]:
    size, sep, path = item.partition("=")
    if not sep or not size.isdigit():
        raise ValueError(f"{flag} expects BS=PATH, got {item!r}")
    return int(size), Path(path)


# --- render-report ----------------------------------------------------------------------------


def add_render_report(sub) -> None:
    p = subparser(
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
    p.add_argument(
        "--workflow-dir",
        type=Path,
        default=None,
        help="the workflow's folder: its git commit and dirty flag go into the provenance",
    )
    p.add_argument("--out", type=Path, default=Path("report/gsm8k_eval_report.md"))


def _run_render_report(args: argparse.Namespace) -> None:
    from gsm8k_eval.report import config_to_show, inputs_from_results, render_report

    config = json.loads(args.config_json) if args.config_json else config_to_show(args.config)
    inputs = inputs_from_results(args.results_dir, args.out, config, args.command_line)
    if args.summaries is not None:
        inputs.eval_dirs = list(args.summaries)
        inputs.invariance_paths = list(args.invariance)
        inputs.checkpoint_manifests = list(args.checkpoint_manifests)
        inputs.dataset_manifest = args.dataset_manifest
        inputs.reference_summaries = list(args.reference)
    if args.template_dir is not None:
        inputs.template_dir = args.template_dir
    inputs.workflow_dir = args.workflow_dir
    render_report(inputs)


# --- verdict ----------------------------------------------------------------------------------


def add_verdict(sub) -> None:
    p = subparser(
        sub,
        "verdict",
        _run_verdict,
        "The run's verdict from its invariance JSONs: a batch-invariant sampler that diverged "
        "fails the run (one line); stock tunix never does.",
    )
    p.add_argument("--invariance", type=Path, nargs="*", default=[], help="invariance JSONs")
    p.add_argument(
        "--fail-on-divergence",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fail (default) or only warn when a batch-invariant sampler diverged "
        "(config: invariance.fail_on_divergence)",
    )
    p.add_argument("--out", type=Path, required=True)


def _run_verdict(args: argparse.Namespace) -> None:
    from gsm8k_eval.verdict import verdict

    verdict(args.invariance, args.out, fail_on_divergence=args.fail_on_divergence)


# --- compare-protocols ------------------------------------------------------------------------


def add_compare_protocols(sub) -> None:
    p = subparser(
        sub,
        "compare-protocols",
        _run_compare_protocols,
        "Put several runs (one protocol each: prompt and grading) side by side: accuracy ± "
        "standard error per checkpoint, sampler and batch size, one column per run.",
    )
    p.add_argument(
        "--runs",
        type=Path,
        nargs="+",
        required=True,
        help="results/<run> folders, one per protocol (e.g. of configs/gemma3-1b-it-gsm8k*.yaml)",
    )
    p.add_argument(
        "--labels", nargs="*", default=[], help="column names, one per run (default: run folder)"
    )
    p.add_argument("--template-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path("results/protocols.md"))


def _run_compare_protocols(args: argparse.Namespace) -> None:
    from gsm8k_eval.report.protocols import render_protocols

    render_protocols(args.runs, args.out, args.labels, args.template_dir)
