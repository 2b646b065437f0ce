"""Continuous-batching greedy engine, bit-for-bit batch invariant.

Reads as state → prefill → decode segment → scheduler:

* **State** (`slots.Slots`). A fixed number of physical slots (`Layout.decode_rows`), one
  KV-cache row each, of `max_prompt_length + max_generation_steps` positions (a bfloat16
  model's cache holds raw bits, `raw_bits`: XLA:CPU writes those in place; so does its embedding
  table on a CPU, `embedder`: XLA:CPU gathers those without a float32 copy). Every prompt ends
  at cache index `max_prompt_length` (as in the static `StaticSampler`), so its keys sit at
  indices that depend on that prompt only. Per slot: last token, tokens generated so far (its
  own cache cursor), prompt length, token budget, active flag.
* **Prefill.** Prompts admitted together are grouped by length bucket; each group is prefilled
  in calls of exactly `Layout.prefill_rows` rows (the static sampler's program; dummy rows fill
  the rest), each row's K/V scattered into its own free slot (any slot: a slot index per row)
  and the rest of that slot zeroed; the cache is donated. All first tokens and logits of one
  admission come back in one host transfer.
* **Decode segment.** One jitted `while_loop` of at most `segment_steps` greedy steps over all
  slots. The model is called per row under `jax.vmap` (batch 1 inside), so tunix's shared cache
  cursor `cache['end_index'][0]` becomes each row's own cursor and each row writes its K/V at its
  own position; projections, norms, RoPE and MLP are tunix's own modules (qwix LoRA still
  intercepts them). The float32 head runs on the last hidden state of all rows at once.
* **Scheduler** (`scheduler.schedule`). Between segments the host reads the new tokens, ends
  rows at EOS, a stop sequence or their token budget, refills free slots with the next prompts
  and dispatches the next segment (`_start_segment`, asynchronous), then yields each finished
  generation (`Engine.stream`; `generate` collects them in input order) while it runs.
* **Sampling** (temperature > 0, `SamplerConfig`): each slot also carries its request's key
  data (uint32 [2], `draw.request_keys`); step s of a row is drawn by `draw.DrawConfig.choose`
  with `step_keys(key, s)` from that row's float32 logits alone (the prefill token is step 0).
  Requests admitted together with identical prompts (the n samples of a question) share one
  prefill row, its K/V copied into each of their slots (`prefill_calls`, bitwise the same as
  prefilling each); the first tokens of its samples still waiting are drawn then too, and each
  of them, once admitted, copies the prompt K/V from a slot that holds it. At temperature 0
  the slots carry no key and the programs are the greedy ones.

No shape depends on the batch: one segment program, one prefill program per bucket (two
in sampled runs) and, sampled, one K/V copy program serve
every batch size, admission order and slot. See docs/sampler.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gsm8k_eval import schema
from gsm8k_eval.draw import DrawConfig, key_data
from gsm8k_eval.sampling.attention import check_tunix_attention, per_row_attention
from gsm8k_eval.sampling.embedder import engine_split
from gsm8k_eval.sampling.prefill_calls import (
    prefill_shared,
    rows_saved,
    separate_calls,
    shared_calls,
)
from gsm8k_eval.sampling.scheduler import Requests, new_timing, schedule
from gsm8k_eval.sampling.slots import SegmentOutputs, Slots, check_cursors
from gsm8k_eval.sampling.step import (
    copy_prompt_rows,
    empty_cache,
    greedy,
    last_logits,
    prefill,
    supports_hidden_states,
    transposed_head,
)
from gsm8k_eval.sampling.types import (
    Cache,
    Generation,
    Layout,
    SamplerConfig,
    check_lengths,
)

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_STEPS: int = schema.default("sampling.segment_steps")


# -- decode segment ------------------------------------------------------------------------------


def _segment(
    graphdef,
    state,
    head,
    cache: Cache,
    slots: Slots,
    eos,
    *,
    region: int,
    steps: int,
    hidden: bool,
    sampling: DrawConfig | None = None,
):
    """Up to `steps` decode steps on every slot (greedy; drawn by `sampling` from each row's
    key and step when the slots carry keys); stops early when no slot is active.

    Returns the cache, the slots, the tokens and float32 logits emitted at each step ([R, steps];
    an active row emits from step 0 until it stops) and the number of steps executed.
    """
    rows = slots.last.shape[0]
    size = next(iter(cache.values()))["k"].shape[1]
    key_index = jnp.arange(size)[None, :]
    start = region - slots.length  # first valid cache index of each row

    def body(carry):
        i, s, cache, tokens, logits = carry
        model = per_row_attention(nnx.merge(graphdef, state))
        write = region + s.step - 1  # each row's own cursor
        cache = {name: {**layer, "end_index": write} for name, layer in cache.items()}
        mask = ((key_index >= start[:, None]) & (key_index <= write[:, None]))[:, None, :]
        positions = (s.length + s.step - 1)[:, None]
        out, cache = last_logits(model, s.last[:, None], positions, cache, mask, hidden, head)
        token, logit = greedy(out) if s.key is None else sampling.choose(out, s.key, s.step)
        emit = s.active
        step = s.step + emit
        s = Slots(
            last=jnp.where(emit, token, s.last),
            step=step,
            length=s.length,
            limit=s.limit,
            active=emit & ~jnp.isin(token, eos) & (step < s.limit),
            key=s.key,
        )
        tokens = tokens.at[:, i].set(jnp.where(emit, token, 0))
        logits = logits.at[:, i].set(jnp.where(emit, logit, 0.0))
        return i + 1, s, cache, tokens, logits

    def cond(carry):
        return (carry[0] < steps) & jnp.any(carry[1].active)

    init = (
        jnp.int32(0),
        slots,
        cache,
        jnp.zeros((rows, steps), jnp.int32),
        jnp.zeros((rows, steps), jnp.float32),
    )
    executed, slots, cache, tokens, logits = jax.lax.while_loop(cond, body, init)
    return cache, slots, tokens, logits, executed


# -- requests ------------------------------------------------------------------------------------


def request_key_rows(keys: Any, count: int, sampled: bool) -> np.ndarray | None:
    """The key data of `count` prompts as uint32 [count, 2] when sampling, else None."""
    if not sampled:
        return None
    if keys is None:
        raise ValueError("temperature > 0 needs one key per prompt (keys=draw.request_keys)")
    data = key_data(keys) if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key) else keys
    data = np.asarray(data, np.uint32)
    if data.shape != (count, 2):
        raise ValueError(f"need key data of shape ({count}, 2), got {data.shape}")
    return data


def _lowest_free(free: list[int]) -> int:
    return min(free)


@dataclass
class Engine:
    """Continuous-batching batch-invariant greedy sampler (`make_sampler("fixed", ...)`).

    `generate(prompts, stop_sequences, max_in_flight)`: at most `max_in_flight` prompts
    (default and cap: `layout.decode_rows`) occupy slots at once; a finished slot is refilled
    with the next prompt between decode segments of `segment_steps` steps. Outputs never depend
    on `max_in_flight`, on the order of admission or on the slot a prompt lands in. `stream`
    yields the same generations as their rows end. `share_prefill` (sampled runs only):
    identical prompts admitted together share one prefill row; False prefills each on its own
    (the oracle; the same bits).
    """

    model: nnx.Module
    tokenizer: Any
    config: SamplerConfig = field(default_factory=SamplerConfig)
    layout: Layout = field(default_factory=Layout)
    segment_steps: int = DEFAULT_SEGMENT_STEPS
    choose_slot: Callable[[list[int]], int] = _lowest_free  # tests vary it
    share_prefill: bool = True
    last_timing: dict[str, float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if not self.layout.batch_invariant:
            raise ValueError("the engine is batch invariant by design; use StaticSampler")
        if self.segment_steps < 1:
            raise ValueError(f"segment_steps must be >= 1, got {self.segment_steps}")
        check_tunix_attention(self.model)
        self._hidden = supports_hidden_states(self.model)
        self._head = transposed_head(self.model, self.layout) if self._hidden else None
        self._graphdef, self._state = engine_split(self.model, self._head is not None)
        cfg = self.config
        self._region = cfg.max_prompt_length
        self._eos = jnp.asarray(cfg.eos_tokens, jnp.int32)
        self._draw = DrawConfig(cfg.temperature, cfg.top_k, cfg.top_p)
        self._shared = self.share_prefill and self._draw.sampled
        fixed = dict(region=self._region, pad_id=cfg.pad_id, hidden=self._hidden)
        self._prefill_jit = jax.jit(
            partial(prefill, self._graphdef, **fixed, sampling=self._draw), donate_argnums=(2,)
        )
        self._shared_jit = jax.jit(
            partial(prefill_shared, self._graphdef, **fixed, sampling=self._draw),
            donate_argnums=(2,),
        )
        self._segment_jit = jax.jit(
            partial(
                _segment,
                self._graphdef,
                region=self._region,
                steps=self.segment_steps,
                hidden=self._hidden,
                sampling=self._draw,
            ),
            donate_argnums=(2,),
        )
        self._copy_jit = jax.jit(
            partial(copy_prompt_rows, region=self._region), donate_argnums=(0,)
        )
        self._compiled: dict[Any, Any] = {}
        self._cache: Cache | None = None

    @property
    def shares_prefill(self) -> bool:
        """Whether identical prompts share a prefill (sampled runs with `share_prefill`)."""
        return self._shared

    # programs, compiled ahead of time so that compile time is measured on its own

    def _program(self, key: Any, jitted: Any, *args: Any, **kwargs: Any) -> Any:
        if key not in self._compiled:
            t0 = time.perf_counter()
            self._compiled[key] = jitted.lower(*args, **kwargs).compile()
            self.last_timing["compile_seconds"] += time.perf_counter() - t0
        return self._compiled[key]

    @property
    def compiled_programs(self) -> list[Any]:
        """Keys of the programs compiled so far: ("segment",), ("prefill", bucket) and, for a
        shared prefill, ("prefill_shared", bucket) and ("copy",)."""
        return sorted(self._compiled, key=str)

    def _take_cache(self) -> Cache:
        cache, self._cache = self._cache, None
        if cache is None:
            size = self._region + self.config.max_generation_steps
            cache = empty_cache(self.model, self.layout.decode_rows, size, raw_bits=True)
        return cache

    def _prefill_many(
        self, prompts: Sequence[list[int]], slots: Sequence[int | None], keys: Any = None
    ) -> list[tuple[int, float]]:
        """Prefill `prompts` into `slots` (distinct free slots), those of one bucket together in
        calls of `layout.prefill_rows` rows (identical prompts sharing a row when sampled and
        `share_prefill`; then a slot of None only draws the first token); first tokens and
        logits, in input order (drawn with the prompts' key data `keys`, uint32 [N, 2], when
        sampling)."""
        make = shared_calls if self._shared else separate_calls
        calls = make(prompts, slots, keys, self.config, self.layout)
        if self._shared:
            placed = [p for p, slot in zip(prompts, slots, strict=True) if slot is not None]
            self._count_shared(rows_saved(placed))
        outputs = []
        firsts: list[tuple[int, float]] = [(0, 0.0)] * len(prompts)
        with self._timed_as_prefill():
            for call in calls:
                args = (self._state, self._head, self._take_cache(), *call.inputs)
                jitted = self._shared_jit if call.shared else self._prefill_jit
                key = ("prefill_shared" if call.shared else "prefill", call.bucket)
                program = self._program(key, jitted, *args, **call.kwargs)
                self._cache, token, logit = program(*args, **call.kwargs)
                outputs.append((token, logit))
            for call, (token, logit) in zip(calls, jax.device_get(outputs), strict=True):
                for row, i in enumerate(call.members):
                    firsts[i] = (int(token[row]), float(logit[row]))
        return firsts

    def _copy_many(self, sources: Sequence[int], slots: Sequence[int]) -> None:
        """Copy the prompt K/V of slot `sources[i]` into slot `slots[i]` (a sample admitted
        after its siblings' prefill: bitwise what prefilling it would write)."""
        rows = self.layout.decode_rows
        src, dst = np.zeros(rows, np.int32), np.full(rows, rows, np.int32)
        src[: len(sources)], dst[: len(slots)] = sources, slots
        with self._timed_as_prefill():
            args = (self._take_cache(), src, dst)
            self._cache = self._program(("copy",), self._copy_jit, *args)(*args)
        self._count_shared(len(slots))

    @contextmanager
    def _timed_as_prefill(self) -> Iterator[None]:
        """Add the block's wall time, less any compiling inside it, to `prefill_seconds`."""
        t0 = time.perf_counter()
        compile_before = self.last_timing["compile_seconds"]
        yield
        compiling = self.last_timing["compile_seconds"] - compile_before
        self.last_timing["prefill_seconds"] += time.perf_counter() - t0 - compiling

    def _count_shared(self, rows: int) -> None:
        saved = self.last_timing.get("prefill_rows_shared", 0.0) + rows
        self.last_timing["prefill_rows_shared"] = saved

    def _start_segment(self, slots: Slots) -> SegmentOutputs:
        """Dispatch a decode segment on `slots` (asynchronous: the host may work meanwhile);
        its outputs are read by `_finish_segment`. The segment gets a copy of `slots`, so the
        caller's arrays stay free to change while it runs (on a CPU, JAX may read numpy
        arguments in place)."""
        check_cursors(slots, self._region, self._region + self.config.max_generation_steps)
        args = (self._state, self._head, self._take_cache(), slots.to_host(), self._eos)
        program = self._program(("segment",), self._segment_jit, *args)
        t0 = time.perf_counter()
        self._cache, *outputs = program(*args)
        self.last_timing["decode_seconds"] += time.perf_counter() - t0
        return tuple(outputs)

    def _finish_segment(self, outputs: SegmentOutputs) -> tuple[Slots, np.ndarray, np.ndarray, int]:
        """A dispatched segment's slots, tokens, logits and executed steps, on the host.
        `decode_seconds` counts the dispatch and this wait, so device time hidden behind the
        host's work in between (the stream's caller) is not counted."""
        t0 = time.perf_counter()
        slots, tokens, logits, executed = jax.device_get(outputs)
        self.last_timing["decode_seconds"] += time.perf_counter() - t0
        return slots.to_host(), np.asarray(tokens), np.asarray(logits), int(executed)

    def _run_segment(self, slots: Slots) -> tuple[Slots, np.ndarray, np.ndarray, int]:
        """One decode segment, dispatched and read back (profiling and tests)."""
        return self._finish_segment(self._start_segment(slots))

    def generate(
        self,
        prompts: list[list[int]],
        stop_sequences: Sequence[str] = (),
        max_in_flight: int | None = None,
        max_new_tokens: Sequence[int] | None = None,
        keys: Any = None,
    ) -> list[Generation]:
        """Continuations of `prompts` (token ids, BOS included), in input order: greedy, or,
        at temperature > 0, drawn with each prompt's key data (`keys`, uint32 [N, 2], from
        `draw.request_keys`; required then, ignored at temperature 0).

        `max_new_tokens`: optional per-prompt budgets (each at most `max_generation_steps`).
        A `ValueError` for a too-long or empty prompt is raised before anything is computed.
        """
        results: list[Generation | None] = [None] * len(prompts)
        for index, generation in self.stream(
            prompts, stop_sequences, max_in_flight, max_new_tokens, keys
        ):
            results[index] = generation
        return list(results)

    def stream(
        self,
        prompts: list[list[int]],
        stop_sequences: Sequence[str] = (),
        max_in_flight: int | None = None,
        max_new_tokens: Sequence[int] | None = None,
        keys: Any = None,
    ) -> Iterator[tuple[int, Generation]]:
        """`generate`'s generations as (input index, generation), each as soon as its row ends
        (completion order; the bits are `generate`'s). Arguments are checked here, before
        anything is computed. `last_timing` is reset now and its counters (seconds, row-steps)
        grow while the stream is consumed; one stream at a time per engine."""
        cfg, rows = self.config, self.layout.decode_rows
        check_lengths([len(p) for p in prompts], cfg.max_prompt_length)
        keys = request_key_rows(keys, len(prompts), self._draw.sampled)
        limits = list(max_new_tokens or [cfg.max_generation_steps] * len(prompts))
        if len(limits) != len(prompts) or not all(
            1 <= n <= cfg.max_generation_steps for n in limits
        ):
            raise ValueError(f"max_new_tokens must give 1..{cfg.max_generation_steps} per prompt")
        if max_in_flight and max_in_flight > rows:
            log.warning(
                "batch size %d > decode_rows %d: %d prompts in flight at a time",
                max_in_flight,
                rows,
                rows,
            )
        self.last_timing = new_timing()
        stops = tuple(s for s in stop_sequences if s)
        requests = Requests(prompts, limits, keys, stops)
        return schedule(self, requests, min(max_in_flight or rows, rows))
