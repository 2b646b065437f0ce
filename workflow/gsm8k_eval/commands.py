"""Per-job parameters of the Snakemake rules: the command-line flags each `gsm8k-eval`
subcommand gets from the typed config (a param: changing one reruns that job)."""

from __future__ import annotations

import shlex

from gsm8k_eval import schema
from gsm8k_eval.config import PipelineConfig
from gsm8k_eval.paths import RunPaths


def reference_arguments(paths: RunPaths, cfg: PipelineConfig) -> str:
    """The config-derived flags of `gsm8k-eval reference` (a param: changing one reruns)."""
    r, s, p = cfg.reference, cfg.sampling, cfg.prompt
    flags: list[tuple[str, object]] = [
        ("--dtype", r.dtype),
        ("--batch-size", r.batch_size),
        ("--device", r.device),
        ("--max-new-tokens", s.max_generation_steps),
        ("--max-prompt-length", s.max_prompt_length),
        ("--eos-tokens", ",".join(str(t) for t in s.eos_tokens)),
        ("--prompt-template", p.template),
        ("--num-shots", p.num_shots),
        ("--prompt-seed", p.seed),
        ("--model-source", cfg.model.source),
    ]
    if cfg.limit is not None:
        flags.append(("--limit", cfg.limit))
    if p.needs_train_split:
        flags.append(("--fewshot-data", paths.dataset("train")))
    return " ".join(f"{flag} {shlex.quote(str(value))}" for flag, value in flags)


def evaluate_arguments(paths: RunPaths, cfg: PipelineConfig, limit: int | None = None) -> str:
    """The config-derived flags of `gsm8k-eval evaluate` (a param: changing one reruns);
    `limit`: the examples evaluated, when not the config's `limit` (a spot check)."""
    flags = _evaluate_flags(cfg, cfg.limit if limit is None else limit)
    if cfg.prompt.needs_train_split:
        flags.append(("--fewshot-data", paths.dataset("train")))
    return " ".join(f"{flag} {shlex.quote(str(value))}" for flag, value in flags)


def spot_check_arguments(paths: RunPaths, cfg: PipelineConfig) -> str:
    """`gsm8k-eval evaluate`'s flags for a spot check: the evaluation's own, on the first
    `spot_check.examples` examples (`--limit`: `load_examples` keeps dataset order)."""
    return evaluate_arguments(paths, cfg, limit=cfg.spot_check_examples)


def verdict_flag(cfg: PipelineConfig) -> str:
    """`gsm8k-eval verdict`: fail (the default) or only warn on a divergence."""
    return "--fail-on-divergence" if cfg.fail_on_divergence else "--no-fail-on-divergence"


def list_steps(source: str) -> tuple[int, ...]:
    """The step folders under a checkpoint source, for sweeps (`PipelineConfig.from_dict`).

    Imports the filesystem code (gcsfs) only when a sweep needs a listing."""
    from gsm8k_eval.checkpoints.listing import list_steps as listed
    from gsm8k_eval.checkpoints.manifest import CheckpointError
    from gsm8k_eval.sweeps import SweepError

    try:
        return listed(source)
    except CheckpointError as error:
        raise SweepError(f"checkpoints: listing the steps of a sweep failed: {error}") from error


def part_argument(part: str | None) -> str:
    """`--part K/N` for the job of part folder `K-of-N`; empty for a single job."""
    return f"--part {part.replace('-of-', '/')}" if part else ""


def cache_argument(paths: RunPaths, cfg: PipelineConfig) -> str:
    """`--compilation-cache DIR`, or empty when the cache is off."""
    path = paths.compilation_cache(cfg)
    return "" if path is None else f"--compilation-cache {shlex.quote(path)}"


def step_argument(cfg: PipelineConfig, checkpoint: str) -> str:
    """`--step` value: empty for the latest step (step 0 is a real step)."""
    step = cfg.checkpoint(checkpoint).step
    return "" if step is None else str(step)


def local_dataset_inputs(cfg: PipelineConfig, split: str) -> list[str]:
    """A local source file is an input, so editing it reruns the pipeline."""
    source = cfg.dataset.source_for(split)
    return [] if ":" in source.split("/")[0] else [source]


def _evaluate_flags(cfg: PipelineConfig, limit: int | None) -> list[tuple[str, object]]:
    s, p, lora = cfg.sampling, cfg.prompt, cfg.lora
    flags: list[tuple[str, object]] = [
        ("--dtype", s.dtype),
        ("--max-new-tokens", s.max_generation_steps),
        ("--max-prompt-length", s.max_prompt_length),
        ("--eos-tokens", ",".join(str(t) for t in s.eos_tokens)),
        ("--decode-rows", s.decode_rows),
        ("--segment-steps", s.segment_steps),
        ("--prefill-rows", s.prefill_rows),
        ("--prompt-template", p.template),
        ("--num-shots", p.num_shots),
        ("--prompt-seed", p.seed),
        ("--lora-rank", lora.rank),
        ("--lora-alpha", lora.alpha),
        ("--lora-module-path", lora.module_path),
        ("--shard-size", cfg.shard_size),
        ("--device", cfg.device),
        ("--model-source", cfg.model.source),
        ("--config-hash", cfg.evaluation_hash()),
    ]
    if limit is not None:
        flags.append(("--limit", limit))
    if cfg.gpu_determinism != schema.default("evaluation.gpu_determinism"):
        flags.append(("--gpu-determinism", cfg.gpu_determinism))  # so a default run's params stay
    if s.sampled:  # only then: a greedy run's params stay as they were
        flags += [
            ("--temperature", s.temperature),
            ("--top-k", s.top_k),
            ("--top-p", s.top_p),
            ("--num-samples", s.num_samples),
            ("--sampling-seed", s.seed),
        ]
    return flags


def reference_gpu_request(cfg: PipelineConfig) -> int:
    """GPUs a reference job asks for: cuda 1, cpu none, auto as the evaluate jobs."""
    return {"cuda": 1, "cpu": 0}.get(cfg.reference.device, gpu_request(cfg))


def gpu_request(cfg: PipelineConfig) -> int:
    """GPUs an evaluate job asks the scheduler for (none on the CPU or a TPU)."""
    return 0 if cfg.device in {"cpu", "tpu"} else 1
