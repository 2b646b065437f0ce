"""Greedy samplers: the shared model step and the static batch-invariant `FixedSampler`.

`FixedSampler` gives every prompt the same computation whatever else shares its batch:

* prompts of one length bucket are prefilled together in calls of exactly `Layout.prefill_rows`
  rows (dummy rows fill the rest), each row on its own (its own mask), left-padded to a bucket
  that depends only on its own length (the next multiple of `Layout.bucket_step`, at most
  `max_prompt_length`); each row's K/V are scattered into its own slot (the rest of the slot
  zeroed), so a prompt's bits do not depend on its row in the call or on its call-mates;
* the decode KV cache has a fixed size, `max_prompt_length + max_generation_steps`, and every
  prompt ends at cache index `max_prompt_length`, so a row's cache layout is set by configuration;
* every decode runs on exactly `Layout.decode_rows` rows (>= 2): a batch is cut into chunks of
  that size and short chunks are padded with dummy rows, so no shape depends on the batch (M = 1
  would take another matmul kernel on XLA:CPU);
* positions come from the mask (pads never get a position, never are attended to);
* logits are computed in float32 for the last position only, argmax in float32.

`stock_sampler.TunixSampler` wraps stock tunix behind the same interface (the negative control);
`make_sampler` builds any of them by name. See docs/sampler.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gsm8k_eval import schema
from gsm8k_eval.step import (
    Cache,
    _empty_cache,
    _greedy,
    _last_logits,
    _prefill,
    _supports_hidden_states,
    _transposed_head,
    prefill_groups,
    prefill_inputs,
)
from gsm8k_eval.timing import timed

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


def _in_batches(
    sampler: Any,
    prompts: list[list[int]],
    max_in_flight: int | None,
    stop_sequences: Sequence[str],
) -> list[Generation]:
    """A static sampler's `_generate` over batches of `max_in_flight` prompts (default: all),
    cut at the first stop sequence afterwards; `last_timing` sums the batches."""
    from gsm8k_eval.stops import apply_stops

    _check_lengths([len(p) for p in prompts], sampler.config.max_prompt_length)
    step = max_in_flight or max(len(prompts), 1)
    out: list[Generation] = []
    timing: dict[str, float] = {}
    for begin in range(0, len(prompts), step):
        out.extend(sampler._generate(prompts[begin : begin + step]))
        for key, value in sampler.last_timing.items():
            timing[key] = timing.get(key, 0.0) + value
    sampler.last_timing = timing
    return [apply_stops(g, stop_sequences, sampler.tokenizer.decode) for g in out]


@dataclass(frozen=True)
class Layout:
    """How `FixedSampler` shapes a batch.

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


@dataclass(frozen=True)
class _Plan:
    """The shapes of one chunk of a batch."""

    rows: int  # decode rows (chunk padded with dummy rows)
    prompt_region: int  # cache index where every prompt ends
    buckets: tuple[int, ...]  # prefill length of each real row
    groups: tuple[tuple[int, ...], ...]  # real-row indices prefilled together (one bucket)
    prefill_rows: int  # rows of every prefill call (a group padded with dummy rows)


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def bucket_for(length: int, step: int, max_prompt_length: int) -> int:
    """The prefill bucket of a prompt: a function of its own length only."""
    if length > max_prompt_length:
        raise ValueError(
            f"prompt has {length} tokens, more than max_prompt_length={max_prompt_length}"
        )
    return min(-(-length // step) * step, max_prompt_length)


def _check_lengths(lengths: Sequence[int], max_prompt_length: int) -> None:
    for i, n in enumerate(lengths):
        if n == 0:
            raise ValueError(f"prompt {i} is empty")
        if n > max_prompt_length:
            raise ValueError(
                f"prompt {i} has {n} tokens, more than max_prompt_length={max_prompt_length}"
            )


def _plan(lengths: Sequence[int], config: SamplerConfig, layout: Layout) -> _Plan:
    n = len(lengths)
    if not layout.batch_invariant:
        bucket = _next_power_of_two(max(lengths))
        return _Plan(n, bucket, (bucket,) * n, (tuple(range(n)),), n)
    buckets = tuple(bucket_for(k, layout.bucket_step, config.max_prompt_length) for k in lengths)
    groups = prefill_groups(buckets, layout.prefill_rows)
    return _Plan(layout.decode_rows, config.max_prompt_length, buckets, groups, layout.prefill_rows)


@dataclass
class _DecodeState:
    """Loop carry of the decode while_loop."""

    step: jax.Array
    last: jax.Array  # [R] last token
    done: jax.Array  # [R]
    tokens: jax.Array  # [R, G]
    logits: jax.Array  # [R, G] float32
    cache: Cache


jax.tree_util.register_dataclass(
    _DecodeState, data_fields=["step", "last", "done", "tokens", "logits", "cache"], meta_fields=[]
)


def _decode(
    graphdef, state, head, cache, first, first_logit, done, lengths, eos, region, steps, hidden
):
    """Greedy decode loop: step 0 holds the prefill token; stops when all rows are done."""
    rows = first.shape[0]
    size = next(iter(cache.values()))["k"].shape[1]
    start = region - lengths  # first valid cache index of each row
    key_index = jnp.arange(size)[None, :]

    def body(s: _DecodeState) -> _DecodeState:
        model = nnx.merge(graphdef, state)
        write = region + s.step - 1
        cache = {
            name: {**layer, "end_index": jnp.full((rows,), write, jnp.int32)}
            for name, layer in s.cache.items()
        }
        positions = (lengths + s.step - 1)[:, None]
        mask = ((key_index >= start[:, None]) & (key_index <= write))[:, None, :]
        logits, cache = _last_logits(model, s.last[:, None], positions, cache, mask, hidden, head)
        token, logit = _greedy(logits)
        token = jnp.where(s.done, jnp.int32(0), token)
        return _DecodeState(
            step=s.step + 1,
            last=token,
            done=s.done | jnp.isin(token, eos),
            tokens=s.tokens.at[:, s.step].set(token),
            logits=s.logits.at[:, s.step].set(jnp.where(s.done, 0.0, logit)),
            cache=cache,
        )

    def cond(s: _DecodeState) -> jax.Array:
        return (s.step < steps) & ~jnp.all(s.done)

    init = _DecodeState(
        step=jnp.int32(1),
        last=first,
        done=done | jnp.isin(first, eos),
        tokens=jnp.zeros((rows, steps), jnp.int32).at[:, 0].set(first),
        logits=jnp.zeros((rows, steps), jnp.float32).at[:, 0].set(first_logit),
        cache=cache,
    )
    final = jax.lax.while_loop(cond, body, init)
    return final.tokens, final.logits, final.step


def _finish(tokens: np.ndarray, logits: np.ndarray, eos: tuple[int, ...], decode) -> Generation:
    """Cut one row at its first EOS (kept) and decode the text without it."""
    hits = np.flatnonzero(np.isin(tokens, eos))
    if hits.size:
        n = int(hits[0]) + 1
        out = tokens[:n].tolist()
        return Generation(out, decode(out[:-1]), n, STOP_EOS, logits[:n].tolist())
    out = tokens.tolist()
    return Generation(out, decode(out), len(out), STOP_MAX_STEPS, logits.tolist())


@dataclass
class FixedSampler:
    """Batch-invariant greedy sampler for tunix decoders called as `model(tokens, positions,
    cache, attention_mask)` (Gemma 3 first; LoRA-wrapped models too)."""

    model: nnx.Module
    tokenizer: Any
    config: SamplerConfig = field(default_factory=SamplerConfig)
    layout: Layout = field(default_factory=Layout)
    last_timing: dict[str, float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.config.temperature > 0:
            raise ValueError(
                "the static sampler decodes greedily: temperature > 0 needs the fixed sampler "
                "(batch invariant) or tunix (its own sampling)"
            )
        self._graphdef, self._state = nnx.split(self.model)
        self._hidden = _supports_hidden_states(self.model)
        self._head = _transposed_head(self.model, self.layout) if self._hidden else None
        self._prefill = jax.jit(
            partial(_prefill, self._graphdef),
            static_argnames=("region", "pad_id", "hidden"),
            donate_argnums=(2,),
        )
        self._decode = jax.jit(
            partial(_decode, self._graphdef), static_argnames=("region", "steps", "hidden")
        )

    def generate(
        self,
        prompts: list[list[int]],
        stop_sequences: Sequence[str] = (),
        max_in_flight: int | None = None,
    ) -> list[Generation]:
        """Greedy continuations of `prompts` (token ids, BOS included), one per prompt; batches
        of `max_in_flight` (default: all), cut at the first stop sequence after decoding."""
        return _in_batches(self, prompts, max_in_flight, stop_sequences)

    def _generate(self, prompts: list[list[int]]) -> list[Generation]:
        """One batch (lengths already checked by `generate`)."""
        self.last_timing = {"prefill_seconds": 0.0, "decode_seconds": 0.0, "compile_seconds": 0.0}
        step = self.layout.decode_rows if self.layout.batch_invariant else max(len(prompts), 1)
        out: list[Generation] = []
        for begin in range(0, len(prompts), step):
            out.extend(self._generate_chunk(prompts[begin : begin + step]))
        return out

    def prefill_hlo(self, prompt: list[int]) -> str:
        """Optimised HLO of the prefill program for `prompt` (to inspect what XLA computes)."""
        cfg = self.config
        plan = _plan([len(prompt)], cfg, self.layout)
        cache = _empty_cache(self.model, plan.rows, plan.prompt_region + cfg.max_generation_steps)
        rows, bucket = plan.prefill_rows, plan.buckets[0]
        tokens, slots = prefill_inputs([prompt], [0], rows, bucket, cfg, plan.rows)
        lowered = self._prefill.lower(
            self._state,
            self._head,
            cache,
            jnp.asarray(tokens),
            jnp.asarray(slots),
            region=plan.prompt_region,
            pad_id=cfg.pad_id,
            hidden=self._hidden,
        )
        return lowered.compile().as_text()

    def _prefill_chunk(self, prompts: list[list[int]], plan: _Plan) -> tuple[Cache, Any, Any]:
        """Prefill every group of a chunk into a fresh decode cache (calls of `plan.prefill_rows`
        rows, real row i into cache row i); first tokens and logits in one transfer."""
        cfg = self.config
        cache = _empty_cache(self.model, plan.rows, plan.prompt_region + cfg.max_generation_steps)
        outputs = []
        for group in plan.groups:
            tokens, slots = prefill_inputs(
                [prompts[i] for i in group],
                group,
                plan.prefill_rows,
                plan.buckets[group[0]],
                cfg,
                plan.rows,
            )
            cache, token, logit = self._prefill(
                self._state,
                self._head,
                cache,
                jnp.asarray(tokens),
                jnp.asarray(slots),
                region=plan.prompt_region,
                pad_id=cfg.pad_id,
                hidden=self._hidden,
            )
            outputs.append((token, logit))
        first = np.zeros(plan.rows, np.int32)
        first_logit = np.zeros(plan.rows, np.float32)
        for group, (token, logit) in zip(plan.groups, jax.device_get(outputs), strict=True):
            first[list(group)] = token[: len(group)]
            first_logit[list(group)] = logit[: len(group)]
        return cache, first, first_logit

    def _generate_chunk(self, prompts: list[list[int]]) -> list[Generation]:
        cfg = self.config
        plan = _plan([len(p) for p in prompts], cfg, self.layout)
        with timed(self.last_timing, "prefill_seconds"):
            cache, first, first_logit = self._prefill_chunk(prompts, plan)
        lengths = np.zeros(plan.rows, np.int32)
        lengths[: len(prompts)] = [len(p) for p in prompts]
        done = np.arange(plan.rows) >= len(prompts)
        with timed(self.last_timing, "decode_seconds"):
            tokens, logits, _ = self._decode(
                self._state,
                self._head,
                cache,
                jnp.asarray(first),
                jnp.asarray(first_logit),
                jnp.asarray(done),
                jnp.asarray(lengths),
                jnp.asarray(cfg.eos_tokens, jnp.int32),
                region=plan.prompt_region,
                steps=cfg.max_generation_steps,
                hidden=self._hidden,
            )
            tokens, logits = np.asarray(tokens), np.asarray(logits)
        return [
            _finish(tokens[i], logits[i], cfg.eos_tokens, self.tokenizer.decode)
            for i in range(len(prompts))
        ]


def make_sampler(
    name: str,
    model: nnx.Module,
    tokenizer: Any,
    config: SamplerConfig,
    decode_rows: int | None = None,
    segment_steps: int | None = None,
    prefill_rows: int | None = None,
) -> Sampler:
    """`"fixed"`: the batch-invariant continuous-batching `Engine` (`decode_rows` slots, prefill
    calls of `prefill_rows` rows, decode segments of `segment_steps` steps); `"static"`: the
    static `FixedSampler` (the engine's test oracle, same prefill); `"tunix"`: stock tunix
    (negative control). Unset options take the schema's defaults (numbers, not `auto`: resolve
    `auto` first with `shapes.resolve_shapes`)."""
    if decode_rows is None:
        decode_rows = schema.default("sampling.decode_rows")
    if prefill_rows is None:
        prefill_rows = schema.default("sampling.prefill_rows")
    layout = Layout(decode_rows=decode_rows, prefill_rows=prefill_rows)
    if name == "fixed":
        from gsm8k_eval.engine import DEFAULT_SEGMENT_STEPS, Engine

        steps = DEFAULT_SEGMENT_STEPS if segment_steps is None else segment_steps
        return Engine(model, tokenizer, config, layout, steps)
    if name == "static":
        return FixedSampler(model, tokenizer, config, layout)
    if name == "tunix":
        from gsm8k_eval.stock_sampler import TunixSampler

        return TunixSampler(model, tokenizer, config)
    raise ValueError(f"unknown sampler {name!r}; expected 'fixed', 'static' or 'tunix'")
