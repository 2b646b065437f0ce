"""The evaluate stage: prompts → generations → scored rollouts, in resumable shards."""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gsm8k_eval import compile_cache, device, fingerprint, schema
from gsm8k_eval.io import atomic_write_text, read_json, read_jsonl, write_json, write_jsonl
from gsm8k_eval.parts import part_shards
from gsm8k_eval.shapes import resolve_options
from gsm8k_eval.summary import ENVIRONMENT_VARIABLES, write_summary
from gsm8k_eval.timing import COMPILE_KEY, timed

log = logging.getLogger(__name__)

DIGEST_CACHE = ".file-digests.json"


@dataclass(frozen=True)
class EvaluateOptions:
    """Everything one evaluation (one checkpoint at one batch size) depends on."""

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
    prompt_template: str = schema.default_field("prompt.template")
    num_shots: int = schema.default_field("prompt.num_shots")
    prompt_seed: int = schema.default_field("prompt.seed")
    fewshot_path: Path | None = None
    lora_rank: int = schema.default_field("lora.rank")
    lora_alpha: float = schema.default_field("lora.alpha")
    lora_module_path: str = schema.default_field("lora.module_path")
    primary_method: str = schema.default_field("scoring.primary")
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


def evaluate(options: EvaluateOptions) -> Path:
    """Run (or resume) one evaluation and write rollouts.jsonl and summary.json."""
    _log_environment()
    options.output_dir.mkdir(parents=True, exist_ok=True)
    backend = device.check_backend(options.device)
    options = resolve_options(options, backend)  # `auto` shapes -> this device's numbers
    compile_cache.enable(options.compilation_cache)
    workload = _prepare(options)
    current = _current_fingerprint(options, workload.prompts)
    shard_dir = _prepare_shard_dir(options, current)
    ranges = _selected_ranges(options, len(workload.examples))
    run = _run_shards(options, workload, shard_dir, current, ranges)
    rollouts_path = _merge_shards(options, shard_dir, len(workload.examples), run.digest)
    write_summary(options, read_jsonl(rollouts_path), run, backend, ranges)
    return rollouts_path


def _current_fingerprint(options: EvaluateOptions, prompts: list[str]) -> dict[str, Any]:
    """The fingerprint of this evaluation (file digests cached beside the outputs)."""
    cache = fingerprint.DigestCache.load(options.output_dir / DIGEST_CACHE)
    current = fingerprint.shard_fingerprint(asdict(options), prompts, cache)
    cache.save()
    return current


def _prepare_shard_dir(options: EvaluateOptions, current: dict[str, Any]) -> Path:
    """The shard folder, emptied if its shards were made with other inputs."""
    shard_dir = options.output_dir / "shards"
    marker = shard_dir / "fingerprint.json"
    try:
        previous = read_json(marker)
    except (OSError, ValueError):
        previous = None
    if previous is not None and previous != current:
        changed = fingerprint.differences(previous, current)
        log.info("shards were made with other inputs (%s): starting afresh", ", ".join(changed))
        shutil.rmtree(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    if previous != current:
        write_json(marker, current)
    return shard_dir


def _log_environment() -> None:
    env = {name: os.environ.get(name) for name in ENVIRONMENT_VARIABLES}
    log.info("host=%s environment=%s", platform.node(), json.dumps(env))


def render_prompts(options: Any) -> tuple[list[Any], list[str], tuple[str, ...]]:
    """The examples, their rendered prompts and the template's stop sequences (`options`: any
    object with the dataset and prompt fields of `EvaluateOptions`; the reference stage's too)."""
    from gsm8k_eval.data import load_examples
    from gsm8k_eval.prompts import PromptBuilder, PromptConfig

    examples = load_examples(options.dataset_path, options.limit)
    builder = PromptBuilder(
        PromptConfig(
            template=options.prompt_template,
            num_shots=options.num_shots,
            seed=options.prompt_seed,
            train_path=options.fewshot_path,
        )
    )
    prompts = [builder.render(example.question) for example in examples]
    return examples, prompts, builder.stop_sequences


def _prepare(options: EvaluateOptions) -> Workload:
    from gsm8k_eval.checkpoints import LoraConfig, apply_checkpoint
    from gsm8k_eval.models import load_model
    from gsm8k_eval.sampler import SamplerConfig, make_sampler

    examples, prompts, stop_sequences = render_prompts(options)
    loaded = load_model(options.model_dir, options.dtype)
    model = loaded.model
    if options.checkpoint_dir is not None:
        lora = LoraConfig(
            rank=options.lora_rank,
            alpha=options.lora_alpha,
            module_path=options.lora_module_path,
        )
        model = apply_checkpoint(model, options.checkpoint_dir, lora)
    sampler_config = SamplerConfig(
        max_prompt_length=options.max_prompt_length,
        max_generation_steps=options.max_generation_steps,
        eos_tokens=tuple(options.eos_tokens),
        pad_id=loaded.tokenizer.pad_id,
    )
    sampler = make_sampler(
        options.sampler,
        model,
        loaded.tokenizer,
        sampler_config,
        options.decode_rows,
        options.segment_steps,
        prefill_rows=options.prefill_rows,
    )
    prompt_ids = [loaded.tokenizer.encode(prompt) for prompt in prompts]
    return Workload(
        examples=examples,
        prompts=prompts,
        prompt_ids=prompt_ids,
        sampler=sampler,
        stop_sequences=stop_sequences,
        tokenizer=loaded.tokenizer,
    )


def _shard_ranges(total: int, shard_examples: int) -> Iterator[tuple[int, int, int]]:
    for index, start in enumerate(range(0, total, shard_examples)):
        yield index, start, min(start + shard_examples, total)


def _selected_ranges(options: EvaluateOptions, total: int) -> list[tuple[int, int, int]]:
    """The (index, start, end) shards this job generates: all, or its part's."""
    ranges = list(_shard_ranges(total, options.shard_examples))
    return [ranges[i] for i in part_shards(len(ranges), options.part)]


def _shard_paths(shard_dir: Path, index: int) -> tuple[Path, Path]:
    stem = shard_dir / f"shard-{index:05d}"
    return stem.with_suffix(".jsonl"), stem.with_suffix(".stats.json")


def _finished_shard(
    rows_path: Path, stats_path: Path, ids: Sequence[int], digest: str
) -> ShardStats | None:
    """A finished shard's stats if both files exist, hold exactly the expected ids and were made
    with fingerprint `digest`; None when it must be (re)generated."""
    if not (rows_path.exists() and stats_path.exists()):
        return None
    try:
        stats = ShardStats(**read_json(stats_path))
        rows_ok = [row["id"] for row in read_jsonl(rows_path)] == list(ids)
    except (ValueError, KeyError, TypeError):
        return None
    if stats.fingerprint != digest:
        log.info("%s was made with other inputs: regenerating it", stats_path.name)
        return None
    return stats if rows_ok else None


def _run_shards(
    options: EvaluateOptions,
    work: Workload,
    shard_dir: Path,
    current: dict[str, Any],
    ranges: list[tuple[int, int, int]],
) -> ShardRun:
    digest = fingerprint.fingerprint_digest(current)
    total = sum(end - start for _, start, end in ranges)
    done_stats: list[ShardStats] = []
    resumed = 0
    progress = tqdm(
        total=total,
        desc=f"{options.checkpoint_name} bs={options.batch_size}",
        unit="ex",
        dynamic_ncols=True,
    )
    generated = 0
    started = time.perf_counter()
    for index, start, end in ranges:
        rows_path, stats_path = _shard_paths(shard_dir, index)
        ids = [work.examples[i].id for i in range(start, end)]
        finished = _finished_shard(rows_path, stats_path, ids, digest)
        if finished is not None:
            done_stats.append(finished)
            resumed += 1
            progress.update(end - start)
            continue
        rows, stats = _generate_shard(options, work, start, end, progress)
        stats.fingerprint = digest
        write_json(stats_path, asdict(stats))
        write_jsonl(rows_path, rows)
        done_stats.append(stats)
        generated += stats.generated_tokens
        elapsed = time.perf_counter() - started
        progress.set_postfix(tok_s=f"{generated / max(elapsed, 1e-9):.1f}")
    progress.close()
    return ShardRun(done_stats, resumed, current, digest)


def _generate_shard(
    options: EvaluateOptions, work: Workload, start: int, end: int, progress: tqdm
) -> tuple[list[dict[str, Any]], ShardStats]:
    """The whole shard in one sampler call: `batch_size` prompts in flight, cut at stops."""
    rows: list[dict[str, Any]] = []
    stats = ShardStats(examples=0, generated_tokens=0, prompt_tokens=0, wall_seconds=0.0)
    shard = range(start, end)
    window: dict[str, float] = {}
    with timed(window, "seconds"):
        generations = work.sampler.generate(
            [work.prompt_ids[i] for i in shard],
            stop_sequences=work.stop_sequences,
            max_in_flight=options.batch_size,
        )
    stats.wall_seconds += window["seconds"] + window[COMPILE_KEY]
    _add_sampler_timing(work.sampler, stats, window[COMPILE_KEY])
    for i, generation in zip(shard, generations, strict=True):
        rows.append(rollout_row(options, work, i, generation))
        stats.generated_tokens += len(generation.tokens)
        stats.prompt_tokens += len(work.prompt_ids[i])
    stats.examples += len(shard)
    progress.update(len(shard))
    return rows, stats


def _add_sampler_timing(sampler: Any, stats: ShardStats, measured_compile: float) -> None:
    """The sampler's `last_timing` split; compile time as the sampler reports it, else as JAX
    reported it during the call."""
    timing = getattr(sampler, "last_timing", None) or {}
    stats.prefill_seconds += float(timing.get("prefill_seconds", 0.0))
    stats.decode_seconds += float(timing.get("decode_seconds", 0.0))
    stats.compile_seconds += float(timing.get(COMPILE_KEY, measured_compile))
    stats.useful_row_steps += float(timing.get("useful_row_steps", 0.0))
    stats.executed_row_steps += float(timing.get("executed_row_steps", 0.0))


def rollout_row(options: Any, work: Any, index: int, generation: Any) -> dict[str, Any]:
    """One rollouts.jsonl line (the public schema): `options` has `primary_method`,
    `batch_size` and `checkpoint_name`; `work` has `examples`, `prompts`, `prompt_ids` and
    `stop_sequences` (the reference stage passes its own)."""
    from gsm8k_eval.scoring import gold_answer, score_response, truncate_response

    example = work.examples[index]
    gold = gold_answer(example.answer)
    scored_text = truncate_response(generation.text, work.stop_sequences)
    scored = score_response(
        scored_text, gold, primary=options.primary_method, reference=example.answer
    )
    return {
        "id": example.id,
        "question": example.question,
        "prompt": work.prompts[index],
        "response": generation.text,
        "tokens": [int(t) for t in generation.tokens],
        "extracted_answer": scored.extracted_answer,
        "gold": gold,
        "correct": scored.correct,
        "extracted": scored.extracted,
        "correct_by_method": scored.correct_by_method,
        "num_steps": generation.num_steps,
        "stop_reason": generation.stop_reason,
        "token_logits": [float(x) for x in generation.token_logits],
        "prompt_tokens": len(work.prompt_ids[index]),
        "batch_size": options.batch_size,
        "checkpoint": options.checkpoint_name,
    }


def _merge_shards(options: EvaluateOptions, shard_dir: Path, total: int, digest: str) -> Path:
    """Concatenate this job's finished shards into rollouts.jsonl (byte-identical however often
    resumed); refuses shards made with another fingerprint than `digest`."""
    parts = []
    for index, _, _ in _selected_ranges(options, total):
        rows_path, stats_path = _shard_paths(shard_dir, index)
        check_shard_fingerprint(stats_path, digest)
        parts.append(rows_path.read_text(encoding="utf-8"))
    out = options.output_dir / "rollouts.jsonl"
    atomic_write_text(out, "".join(parts))
    return out


def check_shard_fingerprint(stats_path: Path, digest: str) -> ShardStats:
    """The shard's stats; an error when it was made with another fingerprint than `digest`."""
    stats = ShardStats(**read_json(stats_path))
    if stats.fingerprint != digest:
        raise RuntimeError(
            f"{stats_path} was made with fingerprint {str(stats.fingerprint)[:12]}, not "
            f"{digest[:12]}: refusing to merge shards made with different inputs "
            f"(delete {stats_path.parent} and rerun)"
        )
    return stats


def shard_stats_paths(shard_dir: Path, indices: Sequence[int]) -> list[Path]:
    """The stats files of the shards `indices` of a shard folder."""
    return [_shard_paths(shard_dir, index)[1] for index in indices]
