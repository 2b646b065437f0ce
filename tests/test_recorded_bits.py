"""Recordings of earlier commits' bits are looked up by the kind of CPU that made them."""

from __future__ import annotations

from pathlib import Path

from recorded_bits import cpu_kind, recording_for

from gsm8k_eval import cpu_kind as package

INTEL = "vendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 avx512bw\n"


def test_cpu_kind_names_the_vendor_and_the_kernel_relevant_flags(tmp_path: Path):
    (tmp_path / "cpuinfo").write_text(INTEL)
    assert cpu_kind(tmp_path / "cpuinfo") == "GenuineIntel:avx2+fma+avx512f+avx512_bf16"
    assert cpu_kind(tmp_path / "absent") == "unknown:"
    assert cpu_kind.__code__.co_filename == package.__file__  # one helper, loaded by path


def test_a_recording_is_found_by_kind_then_by_vendor_only():
    recordings = {"GenuineIntel:avx2+fma+avx512f": 1, "AuthenticAMD": 2}
    assert recording_for(recordings, "GenuineIntel:avx2+fma+avx512f") == 1
    assert recording_for(recordings, "AuthenticAMD:avx2+fma") == 2
    assert recording_for(recordings, "GenuineIntel:avx2+fma") is None
