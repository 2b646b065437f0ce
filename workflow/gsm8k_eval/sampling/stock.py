"""The stock tunix sampler behind our `Sampler` interface: the negative control.

`TunixSampler` wraps `tunix.generate.sampler.Sampler` (prompt bucket = next power of two of the
batch's longest prompt, one shared KV-cache cursor), so its outputs may change with the batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
from flax import nnx

from gsm8k_eval.sampling.batches import in_batches
from gsm8k_eval.sampling.step import cache_spec
from gsm8k_eval.sampling.types import Generation, SamplerConfig, finish_row, next_power_of_two
from gsm8k_eval.timing import timed


def _stock_sampler_class() -> type:
    """tunix's `Sampler`, taking token ids instead of strings and keeping its token buffer."""
    from tunix.generate import sampler as tunix_sampler

    class _IdsSampler(tunix_sampler.Sampler):
        last_token_buffer: Any = None
        seconds: dict[str, float]

        def tokenize(self, input_string: Any) -> np.ndarray:
            return np.asarray(input_string, dtype=np.int32)

        def _timed(self, name: str, fn: Any) -> Any:
            def run(*args: Any, **kwargs: Any) -> Any:
                with timed(self.seconds, name):
                    state = jax.block_until_ready(fn(*args, **kwargs))
                self.last_token_buffer = state.token_buffer
                return state

            return run

        def install_timers(self) -> None:
            self.seconds = {}
            self._compiled_prefill_fn = self._timed("prefill_seconds", self._compiled_prefill_fn)
            self._compiled_decode_fn = self._timed("decode_seconds", self._compiled_decode_fn)

    return _IdsSampler


def sampling_arguments(config: SamplerConfig) -> dict[str, Any]:
    """tunix `Sampler.__call__` arguments: greedy at temperature 0, else its top-p mode (one
    PRNG key per call from `config.seed`, split by batch position: not batch invariant)."""
    if config.temperature <= 0:
        return {"temperature": 0.0}
    return {
        "temperature": float(config.temperature),
        "top_p": float(config.top_p),
        "top_k": int(config.top_k) or None,
        "seed": int(config.seed),
    }


@dataclass
class TunixSampler:
    """The stock `tunix.generate.sampler.Sampler` behind our interface (negative control).

    Prompts are padded to the next power of two of the batch's longest prompt (stock behaviour).
    `token_logits` is empty: stock tunix only exposes logits as a [B, L + G, V] float32 buffer.
    """

    model: nnx.Module
    tokenizer: Any
    config: SamplerConfig = field(default_factory=SamplerConfig)
    last_timing: dict[str, float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        from tunix.generate.sampler import CacheConfig

        layers, heads, head_dim, _ = cache_spec(self.model)
        cache_size = (
            next_power_of_two(self.config.max_prompt_length) + self.config.max_generation_steps
        )
        self._sampler = _stock_sampler_class()(
            self.model,
            self.tokenizer,  # its callable ids satisfy tunix's TokenizerAdapter
            CacheConfig(
                cache_size=cache_size, num_layers=layers, num_kv_heads=heads, head_dim=head_dim
            ),
        )
        self._sampler.install_timers()

    def generate(
        self,
        prompts: list[list[int]],
        stop_sequences: Sequence[str] = (),
        max_in_flight: int | None = None,
        keys: Any = None,
    ) -> list[Generation]:
        """Continuations through stock tunix (its own bucketing and cache layout), in batches
        of `max_in_flight` (default: all), cut at the first stop sequence afterwards.

        At temperature > 0 tunix samples on its own (`sampling_arguments`): `keys` are ignored,
        so its samples depend on the batch (the negative control of sampled evaluation)."""
        return in_batches(self, prompts, max_in_flight, stop_sequences)

    def _generate(self, prompts: list[list[int]]) -> list[Generation]:
        """One batch (lengths already checked by `generate`)."""
        cfg = self.config
        if not prompts:
            return []
        self._sampler.seconds = {
            "prefill_seconds": 0.0,
            "decode_seconds": 0.0,
            "compile_seconds": 0.0,
        }
        output = self._sampler(
            [list(p) for p in prompts],
            max_generation_steps=cfg.max_generation_steps,
            eos_tokens=list(cfg.eos_tokens),
            **sampling_arguments(cfg),
        )
        self.last_timing = dict(self._sampler.seconds)
        start = output.padded_prompt_tokens.shape[1]
        buffer = np.asarray(self._sampler.last_token_buffer)[:, start:]
        buffer = buffer[:, : cfg.max_generation_steps]
        empty = np.zeros(buffer.shape[1], np.float32)
        out = []
        for row in buffer[: len(prompts)]:
            generation = finish_row(row, empty, cfg.eos_tokens, self.tokenizer.decode)
            out.append(dataclasses.replace(generation, token_logits=[]))
        return out
