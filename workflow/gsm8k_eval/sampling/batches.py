"""The static samplers' batching: a whole shard cut into batches of `max_in_flight` prompts,
each generated on its own, stop sequences applied afterwards."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gsm8k_eval.sampling.stops import apply_stops
from gsm8k_eval.sampling.types import Generation, check_lengths


def in_batches(
    sampler: Any,
    prompts: list[list[int]],
    max_in_flight: int | None,
    stop_sequences: Sequence[str],
) -> list[Generation]:
    """A static sampler's `_generate` over batches of `max_in_flight` prompts (default: all),
    cut at the first stop sequence afterwards; `last_timing` sums the batches."""
    check_lengths([len(p) for p in prompts], sampler.config.max_prompt_length)
    step = max_in_flight or max(len(prompts), 1)
    out: list[Generation] = []
    timing: dict[str, float] = {}
    for begin in range(0, len(prompts), step):
        out.extend(sampler._generate(prompts[begin : begin + step]))
        for key, value in sampler.last_timing.items():
            timing[key] = timing.get(key, 0.0) + value
    sampler.last_timing = timing
    return [apply_stops(g, stop_sequences, sampler.tokenizer.decode) for g in out]
