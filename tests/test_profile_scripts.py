"""The engine's measurement scripts run end to end on the tiny model (their numbers only mean
something on the real model: docs/benchmarks.md, docs/sampler.md)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import numpy as np
import pytest

from gsm8k_eval.provenance import machine

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "benchmarks"


class Generation(NamedTuple):
    """The two fields of a sampler's generation the slot-count comparison reads."""

    tokens: list[int]
    token_logits: list[float]


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
    assert len(result["output_digest"]) == 16
    floor = result["memory_floor"]
    assert floor["weight_bytes_per_step"] > 0
    assert floor["floor_ms_per_step"] > 0 and floor["head_dot_ms"] > 0
    assert result["traced"] and result["by_kind_ms"]
    assert result["machine"] == machine(REPO)  # the CPU kind and this checkout's commit


def test_profile_engine_without_the_profiler_gives_the_same_digest(tiny_model_dir, tmp_path):
    """`--no-trace` (A/B timing) runs the same segments: the same outputs as traced."""
    digests = []
    for extra in ((), ("--no-trace",)):
        out = tmp_path / f"profile{len(extra)}.json"
        _run("profile_engine.py", "--model-dir", str(tiny_model_dir), "--tokens", "8",
             "--segment-steps", "2", "--segments", "2", "--shots", "0", "--dtype", "bfloat16",
             "--max-prompt-length", "1024", "--out", str(out), *extra)  # fmt: skip
        result = json.loads(out.read_text())
        digests.append(result["output_digest"])
    assert not result["traced"] and not result["by_kind_ms"] and result["steps"] > 0
    assert digests[0] == digests[1]


def test_prefill_batching_check_runs_in_bfloat16_on_the_engines_raw_bits_cache(
    tiny_model_dir, tmp_path
):
    """A prompt's outputs in a 2-row call do not depend on its row or call-mates (compared as
    K/V bytes of the engine's cache: raw bits in bfloat16)."""
    out = tmp_path / "prefill.json"
    _run("prefill_batching_check.py", "--model-dir", str(tiny_model_dir), "--prompts", "8",
         "--rows", "2", "--dtype", "bfloat16", "--shots", "0", "--max-prompt-length", "512",
         "--repeats", "1", "--out", str(out))  # fmt: skip
    result = json.loads(out.read_text())
    batched = {k: v for k, v in result["equal_to_padded_call"].items() if k.startswith("2 rows")}
    assert len(batched) == 4 and all(batched.values()), result["equal_to_padded_call"]
    assert len(result["all_rows_equal_to_alone"]) == 2
    assert result["seconds_per_prompt"]["2 rows"] > 0


def test_slot_count_check_compares_slot_counts_and_head_variants(tiny_model_dir, tmp_path):
    out = tmp_path / "slots.json"
    _run("slot_count_check.py", "--model-dir", str(tiny_model_dir), "--prompts", "3",
         "--tokens", "4", "--rows", "2", "--dtypes", "float32", "--shots", "0",
         "--max-prompt-length", "1024", "--out", str(out))  # fmt: skip
    result = json.loads(out.read_text())
    (engine,) = result["engine"]
    assert (engine["dtype"], engine["rows"]) == ("float32", 2)
    # whether 2 and 8 slots round alike depends on the machine; the verdicts must agree
    assert engine["logit_bits_equal"] is (engine["max_logit_difference"] == 0.0), engine
    if not engine["tokens_equal"]:
        assert not engine["logit_bits_equal"], engine
    head = result["head_float32"]
    assert set(head["rows"]) == {"1", "2", "8", "16"}
    for variant in ("dv_layout", "vocabulary_split_4"):
        row = head[variant]
        assert row["ms"] > 0 and row["bits_equal"] is (row["max_difference"] == 0.0), row


def _script(name: str) -> ModuleType:
    """A measurement script imported as a module (its folder on the path for its imports)."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPTS))
    return module


def test_slot_count_comparison_flags_a_token_or_a_logit_bit():
    """The slot-count verdict on planted generations: equal, one logit bit off, a token off."""
    compare = _script("slot_count_check").compare_rows
    reference = [Generation([5, 7], [1.5, -2.0]), Generation([9], [0.25])]
    same = [Generation([5, 7], [1.5, -2.0]), Generation([9], [0.25])]
    one_bit = np.nextafter(np.float32(0.25), np.float32(1.0))
    bit_off = [Generation([5, 7], [1.5, -2.0]), Generation([9], [float(one_bit)])]
    token_off = [Generation([5, 8], [1.5, -1.0]), Generation([9], [0.25])]
    assert compare("float32", 2, same, reference) == {
        "dtype": "float32",
        "rows": 2,
        "tokens_equal": True,
        "logit_bits_equal": True,
        "max_logit_difference": 0.0,
    }
    row = compare("float32", 2, bit_off, reference)
    assert (row["tokens_equal"], row["logit_bits_equal"]) == (True, False)
    assert row["max_logit_difference"] == float(one_bit) - 0.25 > 0
    row = compare("bfloat16", 3, token_off, reference)
    assert (row["tokens_equal"], row["logit_bits_equal"], row["max_logit_difference"]) == (
        False,
        False,
        1.0,
    )


def test_machine_record_names_the_measured_package_or_says_what_is_missing(monkeypatch):
    """The benchmarks record the checkout of the gsm8k_eval package they import (under an A/B,
    the old worktree's); a package without provenance.machine gives None fields, not a crash."""
    import gsm8k_eval.provenance as provenance

    bench = _script("bench_sampler")
    assert bench.machine_record() == machine(REPO / "workflow" / "gsm8k_eval")
    monkeypatch.delattr(provenance, "machine")
    assert bench.machine_record() == {
        "cpu": None, "checkout": None, "missing": "gsm8k_eval.provenance.machine"
    }  # fmt: skip
