"""Deprecated: moved to `gsm8k_eval.sampling` (this module only re-exports it)."""

from __future__ import annotations

import warnings

from gsm8k_eval.sampling import (
    STOP_EOS,
    STOP_MAX_STEPS,
    Generation,
    Layout,
    Sampler,
    SamplerConfig,
    StaticSampler,
    bucket_for,
    make_sampler,
)

# The old name of the static sampler.
FixedSampler = StaticSampler

__all__ = [
    "STOP_EOS",
    "STOP_MAX_STEPS",
    "FixedSampler",
    "Generation",
    "Layout",
    "Sampler",
    "SamplerConfig",
    "StaticSampler",
    "bucket_for",
    "make_sampler",
]

warnings.warn(
    "gsm8k_eval.sampler is deprecated: import gsm8k_eval.sampling instead",
    DeprecationWarning,
    stacklevel=2,
)
