"""The evaluate stage: prompts → generations (tokens, text, float32 logits, stop reasons,
timings) in resumable shards. Grading is the `score` stage's (`gsm8k_eval.grading`)."""

from __future__ import annotations

import json
import logging
import os
import platform
from pathlib import Path

from gsm8k_eval import compile_cache, device
from gsm8k_eval.evaluation.options import EvaluateOptions
from gsm8k_eval.evaluation.record import ENVIRONMENT_VARIABLES, write_generation_record
from gsm8k_eval.evaluation.shards import (
    current_fingerprint,
    merge_shards,
    prepare_shard_dir,
    run_shards,
    selected_ranges,
)
from gsm8k_eval.evaluation.workload import prepare
from gsm8k_eval.shapes import resolve_options

log = logging.getLogger(__name__)


def generate(options: EvaluateOptions) -> Path:
    """Run (or resume) one evaluation's generation; write generations.jsonl and
    generation.json in `options.output_dir` and return generations.jsonl."""
    _log_environment()
    options.output_dir.mkdir(parents=True, exist_ok=True)
    backend = device.check_backend(options.device)
    options = resolve_options(options, backend)  # `auto` shapes -> this device's numbers
    compile_cache.enable(options.compilation_cache)
    workload = prepare(options)
    current = current_fingerprint(options, workload.prompts)
    shard_dir = prepare_shard_dir(options, current)
    ranges = selected_ranges(options, len(workload.examples))
    run = run_shards(options, workload, shard_dir, current, ranges)
    generations = merge_shards(options, shard_dir, len(workload.examples), run.digest)
    total = sum(end - start for _, start, end in ranges)
    write_generation_record(options, total, run, backend, ranges, workload.stop_sequences)
    return generations


def _log_environment() -> None:
    env = {name: os.environ.get(name) for name in ENVIRONMENT_VARIABLES}
    log.info("host=%s environment=%s", platform.node(), json.dumps(env))
