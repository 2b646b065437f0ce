"""benchmarks/gpu_bench.py: the length-mix EOS calibration, the flag variants' plumbing (fast),
and one end-to-end `--tiny` run on the CPU (slow: several JAX processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpubench import lengthmix, variants  # noqa: E402


def recomputed_stops(outputs: list[list[int]], eos: list[int]) -> list[int]:
    """Stop lengths (EOS included) under an EOS set, computed directly."""
    stops = []
    for out in outputs:
        hits = [i for i, t in enumerate(out) if t in set(eos)]
        stops.append(hits[0] + 1 if hits else len(out))
    return stops


def test_targets_follow_the_stated_distribution() -> None:
    want = lengthmix.targets(4000, 200, 450, 768)
    assert 185 <= np.median(want) <= 215
    assert 410 <= np.percentile(want, 90) <= 490
    assert min(want) >= 16 and max(want) == 768
    assert want == lengthmix.targets(4000, 200, 450, 768), "seeded"


def test_choose_eos_hits_targets_when_outputs_allow() -> None:
    """Distinct tokens per output: every target is reachable exactly."""
    outputs = [list(range(1000 * i + 10, 1000 * i + 310)) for i in range(20)]
    want = lengthmix.targets(20, 60, 150, 300)
    eos, stops = lengthmix.choose_eos(outputs, want)
    assert stops == want
    assert recomputed_stops(outputs, eos) == stops


def test_choose_eos_accounts_for_shared_tokens() -> None:
    """Random outputs over a small vocabulary: tokens recur across prompts; the reported stops
    must be what the EOS set really produces, and closer to the targets than no EOS at all."""
    rng = np.random.default_rng(0)
    outputs = [rng.integers(3, 400, size=120).tolist() for _ in range(30)]
    want = lengthmix.targets(30, 30, 70, 120)
    eos, stops = lengthmix.choose_eos(outputs, want)
    assert recomputed_stops(outputs, eos) == stops
    err = lambda s: sum(abs(np.log(a / b)) for a, b in zip(s, want, strict=True))  # noqa: E731
    assert err(stops) < err([120] * 30)
    eos, stops, scale = lengthmix.calibrate_eos(outputs, want, 120)
    assert recomputed_stops(outputs, eos) == stops and scale >= 1.0


def test_shared_autotune_variant_dumps_then_loads(tmp_path: Path) -> None:
    file = tmp_path / "a.textproto"
    first, wait = variants.worker_flags("shared_autotune", 0, file)
    assert first == (f"--xla_gpu_dump_autotune_results_to={file}",) and wait is None
    second, wait = variants.worker_flags("shared_autotune", 1, file)
    assert second == (f"--xla_gpu_load_autotune_results_from={file}",) and wait == file
    assert variants.worker_flags("flags", 1, file) == (
        ("--xla_gpu_deterministic_ops=true", "--xla_gpu_autotune_level=0"),
        None,
    )


def test_summarize_flags_a_difference(tmp_path: Path) -> None:
    jobs = [variants.Job("none", i, tmp_path / f"{i}.json", ()) for i in range(2)]
    for i, digests in enumerate((["a", "b"], ["a", "c"])):
        result = {
            "tokens_per_s": 10.0 + i,
            "best_run": {},
            "bs1_identical": True,
            "digests": {"all": digests},
        }
        jobs[i].out.write_text(json.dumps(result))
    out = variants.summarize("none", jobs)
    assert out["invariant_across_processes"] is False and out["differ_across_processes"] == 1
    assert out["tokens_per_s"] == 11.0


@pytest.mark.slow
def test_tiny_run_end_to_end(tmp_path: Path) -> None:
    """Every section on the tiny model; one flag variant (two worker processes)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT / "workflow"))
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "gpu_bench.py"),
        "--tiny",
        "--variants",
        "flags",
        "--budget-s",
        "1500",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert not data["errors"] and not data["skipped"]
    sections = data["sections"]
    assert set(sections) == {"bandwidth", "uniform", "invariance", "lengthmix", "decode", "flags"}
    assert sections["invariance"]["invariant"] is True
    rows = {(r["sampler"], r["batch_size"]): r for r in sections["uniform"]["rows"]}
    assert set(rows) == {("fixed", 1), ("fixed", 8), ("tunix", 1), ("tunix", 8)}
    mix = {(r["sampler"], r["batch_size"]): r for r in sections["lengthmix"]["rows"]}
    assert mix["fixed", 8]["same_tokens_as_calibration"] == sections["lengthmix"]["prompts"]
    assert set(sections["decode"]["rows"]) == {"1", "8"}
    flags = sections["flags"]["variants"]["flags"]
    assert flags["invariant_across_processes"] is True
    assert sections["flags"]["comparison"]["flags_processes_equal_main_process"] is True
    assert json.loads(proc.stdout.strip().splitlines()[-1])["invariant_in_process"] is True


def test_prefill_rows_are_passed_through_when_supported(monkeypatch) -> None:
    """Each --prefill-rows value is its own engine; make_sampler gets it only when given."""
    from gpubench import common, throughput

    import gsm8k_eval.sampling as sampler_module

    calls = []

    def fake(
        name, model, tokenizer, config, decode_rows=None, segment_steps=None, prefill_rows=None
    ):
        calls.append((name, decode_rows, prefill_rows))
        return name

    monkeypatch.setattr(sampler_module, "make_sampler", fake)
    assert common.prefill_rows_supported()
    engines = throughput.engine_variants(common.EngineOptions(64), [1, 16])
    assert [label for label, _ in engines] == ["fixed-p1", "fixed-p16"]
    for _, options in engines:
        common.sampler("fixed", None, None, options)
    common.sampler("tunix", None, None, engines[1][1])
    assert calls == [("fixed", 64, 1), ("fixed", 64, 16), ("tunix", 64, None)]
    assert throughput.engine_variants(common.EngineOptions(64), []) == [
        ("fixed", common.EngineOptions(64))
    ]
