"""Gather the parts of an evaluation split over N jobs into one generations.jsonl and
generation.json (the `score` stage then grades them like a single job's).

generations.jsonl is the parts' generations concatenated in order: byte-identical to a single
job's (see parts.py). generation.json (and so summary.json) equals a single job's except for
`JOB_FIELDS`, which depend on how
and where the work ran: the time fields are sums over the jobs (device-seconds) and the rates
are computed from those sums (per-device throughput); peak memory is the largest job's; the
host environment and compilation-cache counters are listed per job under `jobs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gsm8k_eval import compile_cache
from gsm8k_eval.evaluation.options import GENERATION_RECORD, GENERATIONS
from gsm8k_eval.evaluation.record import shard_fields
from gsm8k_eval.evaluation.shards import check_shard_fingerprint, shard_stats_paths
from gsm8k_eval.fingerprint import differences
from gsm8k_eval.io import atomic_write_bytes, read_json, read_jsonl, write_json

ROLLOUTS = GENERATIONS  # old name: the file gather joins
SUMMARY = GENERATION_RECORD
# Summary fields that depend on timing, hosts or the number of jobs (never on the rollouts).
JOB_FIELDS = (
    "wall_seconds",
    "compile_seconds",
    "generation_seconds",
    "resumed_shards",
    "tokens_per_second",
    "examples_per_second",
    "prefill_tokens_per_second",
    "decode_tokens_per_second",
    "peak_memory_mb",
    "environment",
    "parallel_jobs",
    "compilation_cache",
    "jobs",
)


def gather(part_dirs: Sequence[Path], output_dir: Path) -> Path:
    """Concatenate the parts' generations and combine their records; returns
    generations.jsonl."""
    part_dirs = [Path(d) for d in part_dirs]
    summaries = [read_json(d / SUMMARY) for d in part_dirs]
    _check_parts(part_dirs, summaries)
    output_dir.mkdir(parents=True, exist_ok=True)
    out = output_dir / ROLLOUTS
    atomic_write_bytes(out, b"".join((d / ROLLOUTS).read_bytes() for d in part_dirs))
    write_json(output_dir / SUMMARY, _combined_summary(part_dirs, summaries, read_jsonl(out)))
    return out


def _check_parts(part_dirs: list[Path], summaries: list[dict[str, Any]]) -> None:
    """Every part present once, in order, made with the same fingerprint, shards contiguous."""
    if not summaries:
        raise ValueError("gather: no parts given")
    count = len(summaries)
    digest = summaries[0].get("fingerprint_sha256")
    next_shard = 0
    for position, (folder, summary) in enumerate(zip(part_dirs, summaries, strict=True), 1):
        part = summary.get("part")
        if not part or (part["index"], part["of"]) != (position, count):
            raise ValueError(
                f"{folder}/{SUMMARY}: expected part {position} of {count}, found {part}: pass "
                "the parts of one evaluation in order"
            )
        if summary.get("fingerprint_sha256") != digest:
            changed = differences(
                summaries[0].get("fingerprint", {}), summary.get("fingerprint", {})
            )
            raise ValueError(
                f"{folder}: made with other inputs than {part_dirs[0]} (fingerprints differ: "
                f"{', '.join(changed) or 'digest'}): rerun the parts (on one kind of device)"
            )
        if part["shards"] and part["shards"][0] != next_shard:
            raise ValueError(f"{folder}: shards {part['shards']} do not follow shard {next_shard}")
        next_shard += len(part["shards"])


def _combined_summary(
    part_dirs: list[Path], summaries: list[dict[str, Any]], rows: list[dict[str, Any]]
) -> dict[str, Any]:
    digest = summaries[0]["fingerprint_sha256"]
    stats = []
    for folder, summary in zip(part_dirs, summaries, strict=True):
        for path in shard_stats_paths(folder / "shards", summary["part"]["shards"]):
            stats.append(check_shard_fingerprint(path, digest))
    combined = {key: value for key, value in summaries[0].items() if key != "part"}
    resumed = sum(int(s.get("resumed_shards", 0)) for s in summaries)
    combined.update(shard_fields(stats, len(rows), resumed))
    combined["peak_memory_mb"] = max(float(s.get("peak_memory_mb", 0.0)) for s in summaries)
    combined["parallel_jobs"] = len(summaries)
    combined["compilation_cache"] = compile_cache.combine(
        [s.get("compilation_cache") for s in summaries]
    )
    combined["jobs"] = [_job_record(s) for s in summaries]
    return combined


def _job_record(summary: dict[str, Any]) -> dict[str, Any]:
    """Where and how long one part ran."""
    keys = ("wall_seconds", "compile_seconds", "peak_memory_mb", "device", "environment")
    record = {key: summary.get(key) for key in keys}
    record["shards"] = summary["part"]["shards"]
    record["compilation_cache"] = summary.get("compilation_cache")
    return record
