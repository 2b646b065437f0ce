"""Deprecated: moved to `gsm8k_eval.sampling.engine` (this module only re-exports it)."""

from __future__ import annotations

import warnings

from gsm8k_eval.sampling.engine import (
    DEFAULT_SEGMENT_STEPS,
    Engine,
    Slots,
    check_cursors,
)

__all__ = ["DEFAULT_SEGMENT_STEPS", "Engine", "Slots", "check_cursors"]

warnings.warn(
    "gsm8k_eval.engine is deprecated: import gsm8k_eval.sampling.engine instead",
    DeprecationWarning,
    stacklevel=2,
)
