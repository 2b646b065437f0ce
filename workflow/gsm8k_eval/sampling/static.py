"""The static batch-invariant greedy sampler `StaticSampler` (`sampler: static`), the engine's
test oracle (`FixedSampler` is its deprecated old name).

`StaticSampler` gives every prompt the same computation whatever else shares its batch:

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

`stock.TunixSampler` wraps stock tunix behind the same interface (the negative control);
`gsm8k_eval.sampling.make_sampler` builds any of them by name. See docs/sampler.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gsm8k_eval.sampling.batches import in_batches
from gsm8k_eval.sampling.step import (
    Plan,
    decode_loop,
    empty_cache,
    plan_chunk,
    prefill,
    prefill_inputs,
    supports_hidden_states,
    transposed_head,
)
from gsm8k_eval.sampling.types import Cache, Generation, Layout, SamplerConfig, finish_row
from gsm8k_eval.timing import timed


@dataclass
class StaticSampler:
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
        self._hidden = supports_hidden_states(self.model)
        self._head = transposed_head(self.model, self.layout) if self._hidden else None
        self._prefill = jax.jit(
            partial(prefill, self._graphdef),
            static_argnames=("region", "pad_id", "hidden"),
            donate_argnums=(2,),
        )
        self._decode = jax.jit(
            partial(decode_loop, self._graphdef), static_argnames=("region", "steps", "hidden")
        )

    def generate(
        self,
        prompts: list[list[int]],
        stop_sequences: Sequence[str] = (),
        max_in_flight: int | None = None,
    ) -> list[Generation]:
        """Greedy continuations of `prompts` (token ids, BOS included), one per prompt; batches
        of `max_in_flight` (default: all), cut at the first stop sequence after decoding."""
        return in_batches(self, prompts, max_in_flight, stop_sequences)

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
        plan = plan_chunk([len(prompt)], cfg, self.layout)
        cache = empty_cache(self.model, plan.rows, plan.prompt_region + cfg.max_generation_steps)
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

    def _prefill_chunk(self, prompts: list[list[int]], plan: Plan) -> tuple[Cache, Any, Any]:
        """Prefill every group of a chunk into a fresh decode cache (calls of `plan.prefill_rows`
        rows, real row i into cache row i); first tokens and logits in one transfer."""
        cfg = self.config
        cache = empty_cache(self.model, plan.rows, plan.prompt_region + cfg.max_generation_steps)
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
        plan = plan_chunk([len(p) for p in prompts], cfg, self.layout)
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
            finish_row(tokens[i], logits[i], cfg.eos_tokens, self.tokenizer.decode)
            for i in range(len(prompts))
        ]


def __getattr__(name: str) -> Any:
    """`FixedSampler`: the old name of `StaticSampler` (deprecated)."""
    if name == "FixedSampler":
        warnings.warn(
            "FixedSampler is deprecated: use gsm8k_eval.sampling.static.StaticSampler",
            DeprecationWarning,
            stacklevel=2,
        )
        return StaticSampler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
