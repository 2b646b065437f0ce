"""Deprecated: moved to `gsm8k_eval.sampling.stock` (this module only re-exports it)."""

from __future__ import annotations

import warnings

from gsm8k_eval.sampling.stock import (
    TunixSampler,
)

__all__ = ["TunixSampler"]

warnings.warn(
    "gsm8k_eval.stock_sampler is deprecated: import gsm8k_eval.sampling.stock instead",
    DeprecationWarning,
    stacklevel=2,
)
