"""Deprecated: moved to `gsm8k_eval.sampling.stops` (this module only re-exports it)."""

from __future__ import annotations

import warnings

from gsm8k_eval.sampling.stops import (
    STOP_SEQUENCE,
    WINDOW_TOKENS,
    apply_stops,
    cut_at_stop,
    first_stop,
    settle,
)

__all__ = ["STOP_SEQUENCE", "WINDOW_TOKENS", "apply_stops", "cut_at_stop", "first_stop", "settle"]

warnings.warn(
    "gsm8k_eval.stops is deprecated: import gsm8k_eval.sampling.stops instead",
    DeprecationWarning,
    stacklevel=2,
)
