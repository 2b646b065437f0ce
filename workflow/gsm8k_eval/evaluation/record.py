"""generation.json: how an evaluation's generations were made (times, tokens, rates, device,
versions, settings, fingerprint). The `score` stage adds the grading to it as summary.json.

`shard_fields` (times, tokens, rates) is shared with `gather`.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gsm8k_eval import compile_cache, device, fingerprint
from gsm8k_eval.evaluation.options import GENERATION_RECORD, EvaluateOptions, ShardRun, ShardStats
from gsm8k_eval.io import read_json, write_json

VERSIONED_PACKAGES = ("gsm8k-eval", "jax", "jaxlib", "flax", "google-tunix", "qwix", "numpy")
ENVIRONMENT_VARIABLES = (
    "SLURM_JOB_ID",
    "SLURM_JOB_NODELIST",
    "CUDA_VISIBLE_DEVICES",
    "JAX_PLATFORMS",
)


def shard_fields(stats: Sequence[ShardStats], total: int, resumed: int) -> dict[str, Any]:
    """The summary's time and token fields, added up over shards (then turned into rates)."""
    wall = sum(s.wall_seconds for s in stats)
    compile_seconds = sum(s.compile_seconds for s in stats)
    generating = max(wall - compile_seconds, 0.0)
    generated = sum(s.generated_tokens for s in stats)
    prefill = sum(s.prefill_seconds for s in stats)
    decode = sum(s.decode_seconds for s in stats)
    return {
        "wall_seconds": wall,
        "compile_seconds": compile_seconds,
        "generation_seconds": generating,
        "shards": len(stats),
        "resumed_shards": resumed,
        "generated_tokens": generated,
        "prompt_tokens": sum(s.prompt_tokens for s in stats),
        "tokens_per_second": generated / generating if generating else 0.0,
        "examples_per_second": total / generating if generating else 0.0,
        "prefill_tokens_per_second": _rate(sum(s.prompt_tokens for s in stats), prefill),
        "decode_tokens_per_second": _rate(generated, decode),
        "slot_utilization": _rate(
            sum(s.useful_row_steps for s in stats), sum(s.executed_row_steps for s in stats)
        ),
    }


def write_generation_record(
    options: EvaluateOptions,
    total: int,
    run: ShardRun,
    backend: str,
    ranges: list[tuple[int, int, int]],
    stop_sequences: Sequence[str],
) -> Path:
    """Write generation.json: summary.json's fields but the grading, plus the stop sequences."""
    record = {
        "checkpoint": options.checkpoint_name,
        "batch_size": options.batch_size,
        **shard_fields(run.stats, total, run.resumed),
        "peak_memory_mb": _peak_memory_mb(),
        "device": _device_description(),
        "versions": fingerprint.package_versions(VERSIONED_PACKAGES),
        "sampler": options.sampler,
        "dtype": options.dtype,
        "temperature": options.temperature,
        **_sampling_fields(options),
        "max_generation_steps": options.max_generation_steps,
        "max_prompt_length": options.max_prompt_length,
        "eos_tokens": list(options.eos_tokens),
        "decode_rows": options.decode_rows if options.sampler != "tunix" else None,
        "prefill_rows": options.prefill_rows if options.sampler != "tunix" else None,
        "segment_steps": options.segment_steps if options.sampler == "fixed" else None,
        "prompt_template": options.prompt_template,
        "num_shots": options.num_shots,
        "model_source": options.model_source,
        "dataset_sha256": dataset_sha256(options.dataset_manifest),
        "model_revision": model_revision(options.model_dir),
        "checkpoint_step": (_checkpoint_manifest(options.checkpoint_dir) or {}).get("step"),
        "checkpoint_manifest": _checkpoint_manifest(options.checkpoint_dir),
        "config_hash": options.config_hash,
        "environment": {name: os.environ.get(name) for name in ENVIRONMENT_VARIABLES},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "determinism": device.determinism_settings(options.device, backend),
        "fingerprint_sha256": run.digest,
        "fingerprint": run.fingerprint,
        "parallel_jobs": options.part[1] if options.part else 1,
        "compilation_cache": compile_cache.stats().as_dict(),
        "stop_sequences": list(stop_sequences),
    }
    if options.part is not None:
        record["part"] = {
            "index": options.part[0],
            "of": options.part[1],
            "shards": [r[0] for r in ranges],
        }
    path = options.output_dir / GENERATION_RECORD
    write_json(path, record)
    return path


def _sampling_fields(options: EvaluateOptions) -> dict[str, Any]:
    """A sampled run's settings (none for a greedy run, whose record stays as it was)."""
    if not options.temperature > 0:
        return {}
    return {
        "top_k": options.top_k,
        "top_p": options.top_p,
        "num_samples": options.num_samples,
        "sampling_seed": options.sampling_seed,
    }


def _rate(count: float, seconds: float) -> float | None:
    return count / seconds if seconds > 0 else None


def _peak_memory_mb() -> float:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _device_description() -> str:
    import jax

    first = jax.devices()[0]
    return f"{first.platform}:{getattr(first, 'device_kind', 'unknown')} x{jax.device_count()}"


def dataset_sha256(manifest: Path | None) -> str | None:
    """The dataset sha256 recorded in a download manifest (None without one)."""
    if manifest is None or not Path(manifest).exists():
        return None
    return read_json(manifest).get("sha256")


def model_revision(model_dir: Path | None) -> str | None:
    """The model revision actually fetched (source.json: the resolved hub commit, else the
    configured revision; None for sources without revisions)."""
    path = Path(model_dir) / "source.json" if model_dir is not None else None
    if path is None or not path.exists():
        return None
    record = read_json(path)
    return (record.get("inputs") or {}).get("resolved_revision") or record.get("revision")


def _checkpoint_manifest(checkpoint_dir: Path | None) -> dict[str, Any] | None:
    if checkpoint_dir is None:
        return None
    path = checkpoint_dir / "manifest.json"
    return read_json(path) if path.exists() else None
