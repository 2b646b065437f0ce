"""Deprecated: moved to `gsm8k_eval.sampling.step` (this module only re-exports it)."""

from __future__ import annotations

import warnings

from gsm8k_eval.sampling.step import (
    Cache,
    prefill_groups,
    prefill_inputs,
)

__all__ = ["Cache", "prefill_groups", "prefill_inputs"]

warnings.warn(
    "gsm8k_eval.step is deprecated: import gsm8k_eval.sampling.step instead",
    DeprecationWarning,
    stacklevel=2,
)
