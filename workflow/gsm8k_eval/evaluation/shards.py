"""Shard running: an evaluation's examples in resumable shards, each reused only when it was
made with the current fingerprint, then merged into generations.jsonl."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gsm8k_eval import draw, fingerprint
from gsm8k_eval.evaluation.options import (
    GENERATIONS,
    EvaluateOptions,
    ShardRun,
    ShardStats,
    Workload,
)
from gsm8k_eval.evaluation.requests import question_key
from gsm8k_eval.evaluation.rows import generation_row
from gsm8k_eval.io import atomic_write_text, read_json, read_jsonl, write_json, write_jsonl
from gsm8k_eval.parts import part_shards
from gsm8k_eval.timing import COMPILE_KEY, timed

log = logging.getLogger(__name__)

DIGEST_CACHE = ".file-digests.json"


def current_fingerprint(options: EvaluateOptions, prompts: list[str]) -> dict[str, Any]:
    """The fingerprint of this evaluation (file digests cached beside the outputs)."""
    cache = fingerprint.DigestCache.load(options.output_dir / DIGEST_CACHE)
    current = fingerprint.shard_fingerprint(asdict(options), prompts, cache)
    cache.save()
    return current


def prepare_shard_dir(options: EvaluateOptions, current: dict[str, Any]) -> Path:
    """The shard folder, emptied (with a log line naming what changed) if its shards were made
    with other inputs or in an older layout (another fingerprint `format`)."""
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


def shard_ranges(total: int, shard_examples: int) -> Iterator[tuple[int, int, int]]:
    """(index, start, end) of every shard of `total` examples."""
    for index, start in enumerate(range(0, total, shard_examples)):
        yield index, start, min(start + shard_examples, total)


def selected_ranges(options: EvaluateOptions, total: int) -> list[tuple[int, int, int]]:
    """The (index, start, end) shards this job generates: all, or its part's."""
    ranges = list(shard_ranges(total, options.shard_examples))
    return [ranges[i] for i in part_shards(len(ranges), options.part)]


def shard_paths(shard_dir: Path, index: int) -> tuple[Path, Path]:
    """A shard's rows file and stats file."""
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


def run_shards(
    options: EvaluateOptions,
    work: Workload,
    shard_dir: Path,
    current: dict[str, Any],
    ranges: list[tuple[int, int, int]],
) -> ShardRun:
    """Generate every shard of `ranges` that is not already finished with this fingerprint,
    writing each (stats, then rows) as soon as it is complete. A sampler that can `stream` (the
    engine) gets the prompts of all unfinished shards in one call, so shard boundaries never
    drain its slots; the others get one `generate` call per shard."""
    digest = fingerprint.fingerprint_digest(current)
    total = sum(end - start for _, start, end in ranges)
    progress = tqdm(
        total=total,
        desc=f"{options.checkpoint_name} bs={options.batch_size}",
        unit="ex",
        dynamic_ncols=True,
    )
    done: dict[int, ShardStats] = {}
    todo = []
    for index, start, end in ranges:
        rows_path, stats_path = shard_paths(shard_dir, index)
        ids = [work.examples[i].id for i in range(start, end)]
        finished = _finished_shard(rows_path, stats_path, ids, digest)
        if finished is None:
            todo.append((index, start, end))
        else:
            done[index] = finished
            progress.update(end - start)
    resumed = len(done)
    if todo and hasattr(work.sampler, "stream"):
        made = _stream_shards(options, work, todo, progress)
    else:
        made = (_generate_shard(options, work, shard, progress) for shard in todo)
    generated = 0
    started = time.perf_counter()
    for index, rows, stats in made:
        rows_path, stats_path = shard_paths(shard_dir, index)
        stats.fingerprint = digest
        write_json(stats_path, asdict(stats))
        write_jsonl(rows_path, rows)
        done[index] = stats
        generated += stats.generated_tokens
        elapsed = time.perf_counter() - started
        progress.set_postfix(tok_s=f"{generated / max(elapsed, 1e-9):.1f}")
    progress.close()
    return ShardRun([done[index] for index, _, _ in ranges], resumed, current, digest)


Made = tuple[int, list[dict[str, Any]], ShardStats]  # a shard's index, rows and stats


def _generate_shard(
    options: EvaluateOptions, work: Workload, shard: tuple[int, int, int], progress: tqdm
) -> Made:
    """The whole shard in one sampler call: `batch_size` prompts in flight, cut at stops."""
    index, start, end = shard
    requests = range(start, end)
    window: dict[str, float] = {}
    with timed(window, "seconds"):
        generations = work.sampler.generate(
            [work.prompt_ids[i] for i in requests],
            stop_sequences=work.stop_sequences,
            max_in_flight=options.batch_size,
            **_request_keys(options, work, requests),
        )
    stats = _shard_stats(work, requests, generations)
    stats.wall_seconds = window["seconds"] + window[COMPILE_KEY]
    _add_sampler_timing(work.sampler, stats, window[COMPILE_KEY])
    progress.update(len(requests))
    rows = [generation_row(options, work, i, g) for i, g in zip(requests, generations, strict=True)]
    return index, rows, stats


# The engine's running counters that streamed shards are charged by difference
CHARGED = (
    "prefill_seconds",
    "decode_seconds",
    COMPILE_KEY,
    "useful_row_steps",
    "executed_row_steps",
)


def _stream_shards(
    options: EvaluateOptions,
    work: Workload,
    todo: list[tuple[int, int, int]],
    progress: tqdm,
) -> Iterator[Made]:
    """The shards `todo` from one `stream` call over all their prompts (in shard order,
    `batch_size` in flight), each yielded as soon as its last row ends.

    Each shard is charged the engine's work between the previous shard's completion (or the
    start) and its own: wall seconds (the caller's file writes left out) and the deltas of the
    engine's running counters (prefill, decode and compile seconds, useful and executed
    row-steps). Rows of later shards in flight meanwhile are charged to it, so a single
    shard's numbers are approximate but their sums over the shards are the run's exact totals.
    The engine decodes its next segment while shards are written: that device time is in
    neither a shard's wall seconds nor its decode seconds (the host did not wait for it).
    """
    requests = [i for _, start, end in todo for i in range(start, end)]
    owner = [k for k, (_, start, end) in enumerate(todo) for _ in range(start, end)]
    generations: list[dict[int, Any]] = [{} for _ in todo]
    charged = dict.fromkeys(CHARGED, 0.0)
    mark = time.perf_counter()
    stream = work.sampler.stream(
        [work.prompt_ids[i] for i in requests],
        stop_sequences=work.stop_sequences,
        max_in_flight=options.batch_size,
        **_request_keys(options, work, requests),
    )
    for position, generation in stream:
        progress.update(1)
        k = owner[position]
        index, start, end = todo[k]
        generations[k][requests[position]] = generation
        if len(generations[k]) < end - start:
            continue
        shard = range(start, end)
        ordered = [generations[k].pop(i) for i in shard]
        stats = _shard_stats(work, shard, ordered)
        stats.wall_seconds = time.perf_counter() - mark
        timing = work.sampler.last_timing
        for key in CHARGED:
            setattr(stats, key, float(timing[key]) - charged[key])
            charged[key] = float(timing[key])
        rows = [generation_row(options, work, i, g) for i, g in zip(shard, ordered, strict=True)]
        yield index, rows, stats
        mark = time.perf_counter()


def _shard_stats(work: Workload, requests: Sequence[int], generations: Sequence[Any]) -> ShardStats:
    """A shard's example and token counts (times are set by the caller)."""
    return ShardStats(
        examples=len(requests),
        generated_tokens=sum(len(g.tokens) for g in generations),
        prompt_tokens=sum(len(work.prompt_ids[i]) for i in requests),
        wall_seconds=0.0,
    )


def _request_keys(
    options: EvaluateOptions, work: Workload, requests: Sequence[int]
) -> dict[str, Any]:
    """`keys=` for a sampled run's sampler call (each request's key data); nothing if greedy."""
    if work.sample_indices is None:
        return {}
    examples = [work.examples[i] for i in requests]
    indices = [work.sample_indices[i] for i in requests]
    return {"keys": request_key_data(options.sampling_seed, examples, indices)}


def request_key_data(seed: int, examples: Sequence[Any], indices: Sequence[int]) -> Any:
    """uint32 [N, 2] key data of the requests (example, sample index) under `seed` (here, not in
    `requests`, so grading and the report never import jax)."""
    requests = [(question_key(e), int(i)) for e, i in zip(examples, indices, strict=True)]
    return draw.key_data(draw.request_keys(seed, requests))


def _add_sampler_timing(sampler: Any, stats: ShardStats, measured_compile: float) -> None:
    """The sampler's `last_timing` split; compile time as the sampler reports it, else as JAX
    reported it during the call."""
    timing = getattr(sampler, "last_timing", None) or {}
    stats.prefill_seconds += float(timing.get("prefill_seconds", 0.0))
    stats.decode_seconds += float(timing.get("decode_seconds", 0.0))
    stats.compile_seconds += float(timing.get(COMPILE_KEY, measured_compile))
    stats.useful_row_steps += float(timing.get("useful_row_steps", 0.0))
    stats.executed_row_steps += float(timing.get("executed_row_steps", 0.0))


def merge_shards(options: EvaluateOptions, shard_dir: Path, total: int, digest: str) -> Path:
    """Concatenate this job's finished shards into generations.jsonl (byte-identical however
    often resumed); refuses shards made with another fingerprint than `digest`."""
    parts = []
    for index, _, _ in selected_ranges(options, total):
        rows_path, stats_path = shard_paths(shard_dir, index)
        check_shard_fingerprint(stats_path, digest)
        parts.append(rows_path.read_text(encoding="utf-8"))
    out = options.output_dir / GENERATIONS
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
    return [shard_paths(shard_dir, index)[1] for index in indices]
