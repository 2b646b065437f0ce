"""The sampler's fixed shapes for a device kind: where `auto` in `sampling.decode_rows`,
`sampling.prefill_rows` and `sampling.segment_steps` is resolved, in one place.

A CPU gets the schema's numeric defaults, so every result recorded on a CPU keeps its bits. An
accelerator gets more rows (a decode step is overhead-bound: on an H200 a 64-row step of the 1B
model costs about what a 1-row step does), batched prefill and longer segments.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gsm8k_eval import schema

AUTO = "auto"
SHAPE_KEYS = ("decode_rows", "prefill_rows", "segment_steps")
ACCELERATOR_SHAPES = {"decode_rows": 64, "prefill_rows": 8, "segment_steps": 64}


def resolve_shapes(platform: str) -> dict[str, int]:
    """`decode_rows`, `prefill_rows` and `segment_steps` for a JAX platform ("cpu", "cuda",
    "rocm", "gpu", "tpu"): the schema's defaults on a CPU, `ACCELERATOR_SHAPES` elsewhere."""
    if platform == "cpu":
        return {key: schema.default(f"sampling.{key}") for key in SHAPE_KEYS}
    return dict(ACCELERATOR_SHAPES)


def resolved(values: dict[str, Any], platform: str) -> dict[str, Any]:
    """`values` with every shape key that is `auto` replaced by the platform's number."""
    auto = resolve_shapes(platform)
    return {
        key: auto[key] if key in SHAPE_KEYS and value == AUTO else value
        for key, value in values.items()
    }


def resolve_options(options: Any, platform: str) -> Any:
    """A dataclass of options (e.g. `EvaluateOptions`) with its `auto` shape fields resolved."""
    fields = {f.name for f in dataclasses.fields(options)} & set(SHAPE_KEYS)
    current = {name: getattr(options, name) for name in fields}
    changed = {k: v for k, v in resolved(current, platform).items() if v != current[k]}
    return dataclasses.replace(options, **changed) if changed else options
