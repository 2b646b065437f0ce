"""Bits recorded from an earlier commit, per kind of CPU (no gsm8k_eval import: the recording
script runs this with an old checkout's package).

XLA:CPU picks its float kernels by the CPU's vector extensions, so float32 bits recorded on an
AMD EPYC (AVX-512 with BF16) differ from an Intel Xeon (AVX-512 with FP16, AMX) for the same
program. A recording is therefore kept per `cpu_kind()` (this tree's `gsm8k_eval/cpu_kind.py`,
loaded by path); bits within one machine are what the tests compare.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

_SPEC = importlib.util.spec_from_file_location(
    "recorded_bits_cpu_kind",
    Path(__file__).resolve().parents[1] / "workflow" / "gsm8k_eval" / "cpu_kind.py",
)
_MODULE = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_MODULE)
cpu_kind = _MODULE.cpu_kind


def recording_for(recordings: dict[str, Any], kind: str) -> Any | None:
    """The recording made on CPUs of `kind`, else one made on its vendor with its flags not
    recorded (a key without ':'), else None."""
    if kind in recordings:
        return recordings[kind]
    return recordings.get(kind.split(":")[0])


def bits(generations: list[Any]) -> list[dict]:
    """Tokens, float32 logit bits and stop reason of each generation (JSON-able)."""
    return [
        {
            "tokens": g.tokens,
            "logit_bits": np.asarray(g.token_logits, np.float32).view(np.uint32).tolist(),
            "stop_reason": g.stop_reason,
        }
        for g in generations
    ]
