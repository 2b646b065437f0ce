"""Deprecated: moved to `gsm8k_eval.sampling.attention` (this module only re-exports it)."""

from __future__ import annotations

import warnings

from gsm8k_eval.sampling.attention import (
    ATTENTION_MEMBERS,
    BLOCK_PARAMETERS,
    MODULE_MEMBERS,
    PerRowAttention,
    check_tunix_attention,
    per_row_attention,
    per_row_block,
    write_rows,
)

__all__ = [
    "ATTENTION_MEMBERS",
    "BLOCK_PARAMETERS",
    "MODULE_MEMBERS",
    "PerRowAttention",
    "check_tunix_attention",
    "per_row_attention",
    "per_row_block",
    "write_rows",
]

warnings.warn(
    "gsm8k_eval.attention is deprecated: import gsm8k_eval.sampling.attention instead",
    DeprecationWarning,
    stacklevel=2,
)
