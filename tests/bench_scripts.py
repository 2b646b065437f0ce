"""Runs a script of benchmarks/ on the tiny random model, as a test checks its plumbing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gsm8k_eval.models import fetch_model

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_on_tiny(script: str, tmp_path: Path, args: list[str]) -> Path:
    """Run `benchmarks/<script>` with `--model-dir` (random:tiny) and `--out`, on the CPU;
    fail with its output unless it exits 0. Returns the JSON it wrote."""
    model_dir = fetch_model("random:tiny", tmp_path / "model")
    out = tmp_path / f"{Path(script).stem}.json"
    command = [sys.executable, str(BENCHMARKS / script), "--model-dir", str(model_dir), *args]
    proc = subprocess.run(
        [*command, "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out
