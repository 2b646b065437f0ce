"""Bits recorded from an earlier commit, per kind of CPU (no gsm8k_eval import: the recording
script runs this with an old checkout's package).

XLA:CPU picks its float kernels by the CPU's vector extensions, so float32 bits recorded on an
AMD EPYC (AVX-512 with BF16) differ from an Intel Xeon (AVX-512 with FP16, AMX) for the same
program. A recording is therefore kept per `cpu_kind()`; bits within one machine are what the
tests compare.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

# Extensions XLA:CPU's kernels (Eigen, YNNPACK, oneDNN) dispatch on.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16")


def cpu_kind(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """`vendor:flag+flag...` of this CPU (the ISA flags it has), e.g. `GenuineIntel:avx2+fma`."""
    text = cpuinfo.read_text() if cpuinfo.exists() else ""
    vendor = re.search(r"^vendor_id\s*:\s*(\S+)", text, re.M)
    flags = re.search(r"^flags\s*:(.*)$", text, re.M)
    present = set(flags.group(1).split()) if flags else set()
    return (
        (vendor.group(1) if vendor else "unknown")
        + ":"
        + "+".join(f for f in ISA_FLAGS if f in present)
    )


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
