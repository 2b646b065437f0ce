"""What one evaluation depends on (`EvaluateOptions`) and the shard bookkeeping types shared by
the evaluate, gather and score stages (below all of them: no import circle)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsm8k_eval import schema

GENERATIONS = "generations.jsonl"  # what the model produced, one line per example
GENERATION_RECORD = "generation.json"  # how it was produced: timings, tokens, provenance


@dataclass(frozen=True)
class EvaluateOptions:
    """Everything one evaluation (one checkpoint at one batch size) depends on.

    No grading option: grading is the `score` stage's (changing it never regenerates)."""

    dataset_path: Path
    model_dir: Path
    output_dir: Path
    batch_size: int
    checkpoint_dir: Path | None = None  # None: the base model, no LoRA
    checkpoint_name: str = "base"
    limit: int | None = schema.default_field("limit")
    sampler: str = schema.default_field("sampling.sampler")
    dtype: str = schema.default_field("sampling.dtype")
    max_generation_steps: int = schema.default_field("sampling.max_generation_steps")
    max_prompt_length: int = schema.default_field("sampling.max_prompt_length")
    eos_tokens: tuple[int, ...] = schema.default_field("sampling.eos_tokens", tuple)
    decode_rows: int = schema.default_field("sampling.decode_rows")
    segment_steps: int = schema.default_field("sampling.segment_steps")
    prefill_rows: int = schema.default_field("sampling.prefill_rows")
    temperature: float = schema.default_field("sampling.temperature")
    top_k: int = schema.default_field("sampling.top_k")
    top_p: float = schema.default_field("sampling.top_p")
    num_samples: int = schema.default_field("sampling.num_samples")
    sampling_seed: int = schema.default_field("sampling.seed")
    prompt_template: str = schema.default_field("prompt.template")
    num_shots: int = schema.default_field("prompt.num_shots")
    prompt_seed: int = schema.default_field("prompt.seed")
    fewshot_path: Path | None = None
    lora_rank: int = schema.default_field("lora.rank")
    lora_alpha: float = schema.default_field("lora.alpha")
    lora_module_path: str = schema.default_field("lora.module_path")
    shard_size: int = schema.default_field("evaluation.shard_size")
    dataset_manifest: Path | None = None
    config_hash: str | None = None
    model_source: str | None = None
    device: str | None = None  # as asked for (--device); None: not checked
    part: tuple[int, int] | None = None  # (K, N): only the K-th of N contiguous shard runs
    compilation_cache: Path | None = None  # JAX persistent compilation cache folder

    @property
    def shard_examples(self) -> int:
        """Examples per shard: a whole number of batches, so shards never split a batch."""
        return math.ceil(self.shard_size / self.batch_size) * self.batch_size


@dataclass
class ShardStats:
    """Timing and token counts of one shard, kept beside it so a resumed run can add them.

    `wall_seconds` includes JIT compilation, `compile_seconds` is that part, and
    `prefill_seconds`/`decode_seconds` exclude it. `fingerprint`: what the shard was made with.
    Shards streamed through the engine in one call (evaluation/shards.py) are each charged the
    work done between the previous shard's completion and their own (deltas of the engine's
    running counters): a shard's times are approximate, their sums over shards exact.
    """

    examples: int
    generated_tokens: int
    prompt_tokens: int
    wall_seconds: float
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    compile_seconds: float = 0.0
    fingerprint: str | None = None
    useful_row_steps: float = 0.0  # engine: kept decode tokens
    executed_row_steps: float = 0.0  # engine: decode_rows x executed decode steps


@dataclass
class ShardRun:
    """The shards' stats in order, how many were reused, and the fingerprint they share."""

    stats: list[ShardStats]
    resumed: int
    fingerprint: dict[str, Any]
    digest: str


@dataclass
class Workload:
    """The loaded model, sampler and rendered prompts of one evaluation."""

    examples: list[Any]
    prompts: list[str]
    prompt_ids: list[list[int]]
    sampler: Any
    stop_sequences: tuple[str, ...]
    tokenizer: Any
    # Sampled runs: the sample index of each request (examples repeated num_samples times,
    # question-major; see evaluation/requests.py); None: greedy, one request per example.
    sample_indices: list[int] | None = None
