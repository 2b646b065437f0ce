"""Timing honesty (issue 11 §6): compilation measured apart, throughput without it, resumed runs
counted from the stored per-shard times."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import clocks
import jax
import jax.numpy as jnp
import pytest
from shared_data import GSM8K_DIR

from gsm8k_eval import timing
from gsm8k_eval.evaluate import EvaluateOptions, evaluate
from gsm8k_eval.models import fetch_model


def test_union_counts_nested_and_overlapping_spans_once():
    spans = [(1.0, 5.0), (2.0, 3.0), (4.0, 7.0), (9.0, 10.0), (-3.0, -1.0)]
    assert timing._union_seconds(spans, 0.0, 9.5) == pytest.approx(6.5)
    assert timing._union_seconds([], 0.0, 1.0) == 0.0


def test_timed_subtracts_the_compile_spans_that_end_inside_the_block():
    """A scripted clock and planted spans: exact seconds, no wall clock."""
    trace = "/jax/core/compile/jaxpr_trace_duration"
    compile_ = "/jax/core/compile/backend_compile_duration"
    seconds = {"work": 1.0}
    with clocks.patched_clock(clocks.scripted(100.0, 104.0)), timing.timed(seconds, "work"):
        timing._on_span(trace, 99.0, 100.25)  # began before the block: its part inside
        timing._on_span(compile_, 100.5, 101.5)
        timing._on_span(trace, 100.75, 101.25)  # nested: counted once
        timing._on_span("/jax/other/duration", 102.0, 103.0)  # not compilation
    assert seconds == {"work": 1.0 + 4.0 - 1.25, "compile_seconds": 1.25}
    clock = clocks.patched_clock(clocks.scripted(200.0, 202.0))
    with clock, pytest.raises(RuntimeError), timing.timed(seconds, "work"):
        timing._on_span(compile_, 150.0, 201.0)  # clipped to the block
        raise RuntimeError  # a failing block is still counted
    assert seconds == {"work": 3.75 + 1.0, "compile_seconds": 2.25}


def test_timed_splits_a_compiling_block():
    """A real JAX compile is seen, and the block's seconds are split, none lost."""

    @jax.jit
    def f(x):
        return jnp.tanh(x @ x.T).sum()

    seconds: dict[str, float] = {}
    readings = clocks.clock_readings()
    with readings as clock, clocks.compiles() as programs, timing.timed(seconds, "work"):
        f(jnp.ones((33, 17))).block_until_ready()
    start, end = clock
    assert programs and 0 < seconds["compile_seconds"] <= end - start
    assert seconds["work"] + seconds["compile_seconds"] == pytest.approx(end - start, rel=1e-9)
    compiled = seconds["compile_seconds"]
    with clocks.compiles() as programs, timing.timed(seconds, "work"):
        f(jnp.ones((33, 17))).block_until_ready()  # cached: nothing compiles
    assert programs == [] and seconds["compile_seconds"] == compiled


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> EvaluateOptions:
    root = tmp_path_factory.mktemp("timing")
    model = fetch_model("random:tiny", root / "model")
    options = EvaluateOptions(
        dataset_path=GSM8K_DIR / "test.jsonl",
        model_dir=model,
        output_dir=root / "eval",
        batch_size=1,
        limit=3,
        max_generation_steps=4,
        max_prompt_length=640,
        shard_size=1,
        device="cpu",
    )
    evaluate(options)
    return options


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_throughput_excludes_compilation(run):
    summary = _summary(run.output_dir)
    shards = [json.loads(p.read_text()) for p in sorted(run.output_dir.glob("shards/*.stats.json"))]
    assert summary["compile_seconds"] == pytest.approx(sum(s["compile_seconds"] for s in shards))
    assert 0 < summary["compile_seconds"] < summary["wall_seconds"]
    generating = summary["wall_seconds"] - summary["compile_seconds"]
    assert summary["generation_seconds"] == pytest.approx(generating)
    assert summary["tokens_per_second"] == pytest.approx(summary["generated_tokens"] / generating)
    assert summary["examples_per_second"] == pytest.approx(3 / generating)
    decode = sum(s["decode_seconds"] for s in shards)
    assert summary["decode_tokens_per_second"] == pytest.approx(
        summary["generated_tokens"] / decode
    )
    # the sampler's prefill, decode and compile windows lie inside each shard's generate call
    for shard in shards:
        parts = shard["prefill_seconds"] + shard["decode_seconds"] + shard["compile_seconds"]
        assert 0 < parts <= shard["wall_seconds"], shard


def test_resumed_run_counts_the_stored_shard_times(run, tmp_path):
    out = tmp_path / "eval"
    shutil.copytree(run.output_dir, out)
    first = _summary(out)
    (out / "shards" / "shard-00002.jsonl").unlink()  # one shard to redo
    evaluate(replace(run, output_dir=out))
    resumed = _summary(out)
    assert (resumed["shards"], resumed["resumed_shards"]) == (3, 2)
    stats = [json.loads(p.read_text()) for p in sorted(out.glob("shards/*.stats.json"))]
    assert resumed["wall_seconds"] == pytest.approx(sum(s["wall_seconds"] for s in stats))
    assert resumed["compile_seconds"] == pytest.approx(sum(s["compile_seconds"] for s in stats))
    # the redone shard compiled again (a new sampler): its compile time is counted
    assert stats[2]["compile_seconds"] > 0
    assert resumed["generated_tokens"] == first["generated_tokens"]
