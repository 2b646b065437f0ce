"""The sampler family, bottom to top: `types` (what every sampler shares), `raw_bits` and
`embedder` (16-bit floats held as bits where XLA:CPU would convert them), `step` (the model
step on a fixed layout), `attention` (per-row cache cursors), `stops`, `batches`, `slots` and
`scheduler` (the engine's state and loop); the samplers `static.StaticSampler` (the engine's
test oracle), `engine.Engine` (continuous batching) and `stock.TunixSampler` (stock tunix, the
negative control); `make_sampler` on top builds any of them by name. See docs/sampler.md."""

from __future__ import annotations

from typing import Any

from flax import nnx

from gsm8k_eval import schema
from gsm8k_eval.sampling.static import StaticSampler
from gsm8k_eval.sampling.types import (
    STOP_EOS,
    STOP_MAX_STEPS,
    Generation,
    Layout,
    Sampler,
    SamplerConfig,
    bucket_for,
)

__all__ = [
    "STOP_EOS",
    "STOP_MAX_STEPS",
    "Generation",
    "Layout",
    "Sampler",
    "SamplerConfig",
    "StaticSampler",
    "bucket_for",
    "make_sampler",
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
    static `StaticSampler` (the engine's test oracle, same prefill); `"tunix"`: stock tunix
    (negative control). Unset options take the schema's defaults (numbers, not `auto`: resolve
    `auto` first with `shapes.resolve_shapes`)."""
    if decode_rows is None:
        decode_rows = schema.default("sampling.decode_rows")
    if prefill_rows is None:
        prefill_rows = schema.default("sampling.prefill_rows")
    layout = Layout(decode_rows=decode_rows, prefill_rows=prefill_rows)
    if name == "fixed":
        from gsm8k_eval.sampling.engine import DEFAULT_SEGMENT_STEPS, Engine

        steps = DEFAULT_SEGMENT_STEPS if segment_steps is None else segment_steps
        return Engine(model, tokenizer, config, layout, steps)
    if name == "static":
        return StaticSampler(model, tokenizer, config, layout)
    if name == "tunix":
        from gsm8k_eval.sampling.stock import TunixSampler

        return TunixSampler(model, tokenizer, config)
    raise ValueError(f"unknown sampler {name!r}; expected 'fixed', 'static' or 'tunix'")
