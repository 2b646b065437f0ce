"""Paths and per-job parameters of the Snakemake DAG, derived from the typed config."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from gsm8k_eval.config import PipelineConfig

RESULTS = "results"
REPORT = "report/gsm8k_eval_report.md"


def dataset_path(split: str) -> str:
    return f"{RESULTS}/data/gsm8k_{split}.jsonl"


def dataset_manifest(split: str) -> str:
    return f"{RESULTS}/data/gsm8k_{split}.manifest.json"


def model_dir() -> str:
    return f"{RESULTS}/model"


def checkpoint_dir(checkpoint: str) -> str:
    return f"{RESULTS}/checkpoints/{checkpoint}"


def eval_dir(checkpoint: str, batch_size: int | str) -> str:
    return f"{RESULTS}/eval/{checkpoint}/bs{batch_size}"


def rollouts(checkpoint: str, batch_size: int | str) -> str:
    return f"{eval_dir(checkpoint, batch_size)}/rollouts.jsonl"


def summary(checkpoint: str, batch_size: int | str) -> str:
    return f"{eval_dir(checkpoint, batch_size)}/summary.json"


def invariance(checkpoint: str) -> str:
    return f"{RESULTS}/invariance/{checkpoint}.json"


def all_summaries(cfg: PipelineConfig) -> list[str]:
    return [summary(c, b) for c in cfg.checkpoint_names for b in cfg.batch_sizes]


def all_invariance(cfg: PipelineConfig) -> list[str]:
    return [invariance(c) for c in cfg.checkpoint_names]


def all_checkpoint_dirs(cfg: PipelineConfig) -> list[str]:
    return [checkpoint_dir(c) for c in cfg.checkpoint_names]


def step_argument(cfg: PipelineConfig, checkpoint: str) -> str:
    """`--step` value: empty for the latest step (step 0 is a real step)."""
    step = cfg.checkpoint(checkpoint).step
    return "" if step is None else str(step)


def checkpoint_manifests(cfg: PipelineConfig) -> list[str]:
    return [f"{checkpoint_dir(c)}/manifest.json" for c in cfg.checkpoint_names]


def checkpoint_rollouts(cfg: PipelineConfig, checkpoint: str) -> list[str]:
    return [rollouts(checkpoint, b) for b in cfg.batch_sizes]


def rollouts_argument(cfg: PipelineConfig, checkpoint: str) -> str:
    """`BS=PATH …` for `gsm8k-eval check-invariance --rollouts`."""
    return " ".join(f"{b}={shlex.quote(rollouts(checkpoint, b))}" for b in cfg.batch_sizes)


def fewshot_inputs(cfg: PipelineConfig) -> list[str]:
    return [dataset_path("train")] if cfg.prompt.needs_train_split else []


def local_dataset_inputs(cfg: PipelineConfig, split: str) -> list[str]:
    """A local source file is an input, so editing it reruns the pipeline."""
    source = cfg.dataset.source_for(split)
    return [] if ":" in source.split("/")[0] else [source]


def evaluate_arguments(cfg: PipelineConfig) -> str:
    """The config-derived flags of `gsm8k-eval evaluate` (a param: changing one reruns)."""
    s, p, lora = cfg.sampling, cfg.prompt, cfg.lora
    flags: list[tuple[str, object]] = [
        ("--dtype", s.dtype),
        ("--sampler", s.sampler),
        ("--max-new-tokens", s.max_generation_steps),
        ("--max-prompt-length", s.max_prompt_length),
        ("--eos-tokens", ",".join(str(t) for t in s.eos_tokens)),
        ("--decode-rows", s.decode_rows),
        ("--prompt-template", p.template),
        ("--num-shots", p.num_shots),
        ("--prompt-seed", p.seed),
        ("--lora-rank", lora.rank),
        ("--lora-alpha", lora.alpha),
        ("--lora-module-path", lora.module_path),
        ("--primary-method", cfg.primary_method),
        ("--shard-size", cfg.shard_size),
        ("--device", cfg.device),
        ("--model-source", cfg.model.source),
        ("--config-hash", cfg.evaluation_hash()),
    ]
    if cfg.limit is not None:
        flags.append(("--limit", cfg.limit))
    if cfg.prompt.needs_train_split:
        flags.append(("--fewshot-data", dataset_path("train")))
    return " ".join(f"{flag} {shlex.quote(str(value))}" for flag, value in flags)


def gpu_request(cfg: PipelineConfig) -> int:
    """GPUs an evaluate job asks the scheduler for (none when forced onto the CPU)."""
    return 0 if cfg.device == "cpu" else 1


def reproduce_command(configfiles: list[str]) -> str:
    """The command line that regenerates the report."""
    parts = ["snakemake", "--cores", "all"]
    for path in configfiles:
        parts += ["--configfile", str(path)]
    return shlex.join(parts)


def report_templates(basedir: str) -> list[str]:
    """Every report template is an input: editing one regenerates the report."""
    return sorted(str(p) for p in (Path(basedir) / "report" / "templates").glob("*.j2"))


def report_code(basedir: str) -> list[str]:
    """The modules that compute the report's numbers are inputs too."""
    package = Path(basedir) / "workflow" / "gsm8k_eval"
    return [*sorted(str(p) for p in (package / "report").glob("*.py")), str(package / "stats.py")]


def export_environment(basedir: str) -> None:
    """Make `python -m gsm8k_eval` in rule shells find this interpreter and this package."""
    package_root = str(Path(basedir) / "workflow")
    _prepend_env("PYTHONPATH", package_root)
    _prepend_env("PATH", str(Path(sys.executable).parent))


def _prepend_env(name: str, entry: str) -> None:
    parts = [p for p in os.environ.get(name, "").split(os.pathsep) if p]
    if entry not in parts:
        os.environ[name] = os.pathsep.join([entry, *parts])
