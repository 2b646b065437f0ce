"""The engine's measurement scripts run end to end on the tiny model (their numbers only mean
something on the real model: docs/benchmarks.md, docs/sampler.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from gsm8k_eval.models import fetch_model

    return fetch_model("random:tiny", tmp_path_factory.mktemp("tiny") / "model")


def _run(script: str, *args: str) -> None:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args],
        capture_output=True, text=True, env=env, timeout=900, cwd=SCRIPTS,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_profile_engine_reports_ops_and_the_memory_floor(tiny_model_dir, tmp_path):
    out = tmp_path / "profile.json"
    _run("profile_engine.py", "--model-dir", str(tiny_model_dir), "--tokens", "8",
         "--segment-steps", "2", "--segments", "1", "--shots", "0",
         "--max-prompt-length", "1024", "--out", str(out))  # fmt: skip
    result = json.loads(out.read_text())
    assert result["steps"] > 0 and result["wall_ms_per_step"] > 0
    floor = result["memory_floor"]
    assert floor["weight_bytes_per_step"] > 0
    assert floor["floor_ms_per_step"] > 0 and floor["head_dot_ms"] > 0


def test_slot_count_check_compares_slot_counts_and_head_variants(tiny_model_dir, tmp_path):
    out = tmp_path / "slots.json"
    _run("slot_count_check.py", "--model-dir", str(tiny_model_dir), "--prompts", "3",
         "--tokens", "4", "--rows", "2", "--dtypes", "float32", "--shots", "0",
         "--max-prompt-length", "1024", "--out", str(out))  # fmt: skip
    result = json.loads(out.read_text())
    (engine,) = result["engine"]
    assert (engine["dtype"], engine["rows"]) == ("float32", 2)
    assert isinstance(engine["tokens_equal"], bool) and engine["max_logit_difference"] >= 0
    head = result["head_float32"]
    assert set(head["rows"]) == {"1", "2", "8", "16"}
    assert head["rows"]["8"]["row0_bits_equal_to_8_rows"] is True  # the reference itself
    assert head["vocabulary_split_4"]["ms"] > 0 and "bits_equal" in head["dv_layout"]
