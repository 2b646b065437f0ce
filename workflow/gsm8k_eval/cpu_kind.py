"""Which kind of CPU this is, as far as XLA:CPU's float kernels are known to care.

XLA:CPU picks its float kernels (Eigen, YNNPACK, oneDNN) by the CPU's vector extensions, so the
same program gives other float32 bits on an AMD EPYC (AVX-512 with BF16) than on an Intel Xeon
(AVX-512 with FP16, AMX): seen in tests/test_engine.py's recorded bits. The shard fingerprint
holds the kind on a CPU, so shards or parts made on another kind are never mixed. No gsm8k_eval
imports: tests/recorded_bits.py loads this file by path, also under an old checkout's package.
"""

from __future__ import annotations

import re
from pathlib import Path

# Extensions XLA:CPU's kernels dispatch on.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16")


def cpu_kind(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """`vendor:flag+flag...` of this CPU (the ISA flags it has), e.g. `GenuineIntel:avx2+fma`;
    `unknown:` where `cpuinfo` cannot be read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        text = ""
    vendor = re.search(r"^vendor_id\s*:\s*(\S+)", text, re.M)
    flags = re.search(r"^flags\s*:(.*)$", text, re.M)
    present = set(flags.group(1).split()) if flags else set()
    return (
        (vendor.group(1) if vendor else "unknown")
        + ":"
        + "+".join(f for f in ISA_FLAGS if f in present)
    )
