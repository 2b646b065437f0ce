"""What every sampler shares: the KV-cache type, stop reasons, settings (`SamplerConfig`), the
result (`Generation`), the `Sampler` protocol, the batch-invariant `Layout` and prompt buckets,
the prompt-length check and the EOS cut of one row. Nothing here runs the model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import jax
import numpy as np

from gsm8k_eval import schema

Cache = dict[str, dict[str, jax.Array]]

STOP_EOS = "eos"
STOP_MAX_STEPS = "max_steps"


@dataclass(frozen=True)
class SamplerConfig:
    """Generation settings; the prompt bucket and cache size never depend on the batch."""

    max_prompt_length: int = field(
        default_factory=lambda: schema.default("sampling.max_prompt_length")
    )
    max_generation_steps: int = field(
        default_factory=lambda: schema.default("sampling.max_generation_steps")
    )
    eos_tokens: tuple[int, ...] = field(
        default_factory=lambda: tuple(schema.default("sampling.eos_tokens"))
    )
    pad_id: int = 0
    # Sampled evaluation (temperature > 0): the fixed and tunix samplers only (docs/sampled.md).
    temperature: float = schema.default_field("sampling.temperature")
    top_k: int = schema.default_field("sampling.top_k")
    top_p: float = schema.default_field("sampling.top_p")
    seed: int = schema.default_field("sampling.seed")


@dataclass
class Generation:
    """One prompt's greedy continuation."""

    tokens: list[int]
    text: str
    num_steps: int
    stop_reason: str
    token_logits: list[float]


class Sampler(Protocol):
    """What the evaluation needs from a sampler: continuations of a whole shard of prompts,
    at most `max_in_flight` at a time (the batch size), cut at the first stop sequence."""

    def generate(
        self,
        prompts: list[list[int]],
        stop_sequences: Sequence[str] = (),
        max_in_flight: int | None = None,
    ) -> list[Generation]: ...


@dataclass(frozen=True)
class Layout:
    """How `StaticSampler` shapes a batch.

    `decode_rows`: every decode runs on exactly this many rows; a batch is cut into chunks of
    that size and short chunks are padded with dummy rows, so no shape ever depends on the batch.
    `prefill_rows`: every prefill call has exactly this many rows (prompts of one bucket, dummy
    rows fill the rest); 1 is the one-prompt-per-call prefill of earlier versions (same bits).
    `batch_invariant=False` switches to a batch-dependent layout like stock tunix (one bucket =
    next power of two of the batch's longest prompt, all rows prefilled together, rows = batch
    size); it exists as a negative control for tests and benchmarks.
    """

    batch_invariant: bool = True
    bucket_step: int = 64
    decode_rows: int = schema.default_field("sampling.decode_rows")
    prefill_rows: int = schema.default_field("sampling.prefill_rows")
    # A [D, V] copy of the tied embedding for the output head; None: only for bfloat16, where
    # XLA:CPU's [R, D] x [V, D]^T dot is ~4x slower than [R, D] x [D, V] at R = 8 (measured).
    transposed_head: bool | None = None

    def __post_init__(self) -> None:
        if self.batch_invariant and self.decode_rows < 2:
            raise ValueError(
                f"decode_rows must be at least 2 (XLA computes a 1-row matmul with another "
                f"kernel), got {self.decode_rows}"
            )
        if self.prefill_rows < 1:
            raise ValueError(f"prefill_rows must be at least 1, got {self.prefill_rows}")


def next_power_of_two(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 << max(0, (n - 1).bit_length())


def bucket_for(length: int, step: int, max_prompt_length: int) -> int:
    """The prefill bucket of a prompt: a function of its own length only."""
    if length > max_prompt_length:
        raise ValueError(
            f"prompt has {length} tokens, more than max_prompt_length={max_prompt_length}"
        )
    return min(-(-length // step) * step, max_prompt_length)


def check_lengths(lengths: Sequence[int], max_prompt_length: int) -> None:
    """Raise a ValueError naming the first empty or too-long prompt."""
    for i, n in enumerate(lengths):
        if n == 0:
            raise ValueError(f"prompt {i} is empty")
        if n > max_prompt_length:
            raise ValueError(
                f"prompt {i} has {n} tokens, more than max_prompt_length={max_prompt_length}"
            )


def finish_row(tokens: np.ndarray, logits: np.ndarray, eos: tuple[int, ...], decode) -> Generation:
    """Cut one row at its first EOS (kept) and decode the text without it."""
    hits = np.flatnonzero(np.isin(tokens, eos))
    if hits.size:
        n = int(hits[0]) + 1
        out = tokens[:n].tolist()
        return Generation(out, decode(out[:-1]), n, STOP_EOS, logits[:n].tolist())
    out = tokens.tolist()
    return Generation(out, decode(out), len(out), STOP_MAX_STEPS, logits.tolist())
