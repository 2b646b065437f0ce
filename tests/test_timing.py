"""Timing honesty (issue 11 §6): compilation measured apart, throughput without it, resumed runs
counted from the stored per-shard times."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

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


def test_timed_splits_a_compiling_block():
    @jax.jit
    def f(x):
        return jnp.tanh(x @ x.T).sum()

    seconds: dict[str, float] = {}
    began = time.time()
    with timing.timed(seconds, "work"):
        f(jnp.ones((33, 17))).block_until_ready()
        time.sleep(0.05)
    elapsed = time.time() - began
    assert seconds["compile_seconds"] > 0
    assert seconds["work"] >= 0.05
    assert seconds["work"] + seconds["compile_seconds"] == pytest.approx(elapsed, abs=0.01)
    compiled = seconds["compile_seconds"]
    with timing.timed(seconds, "work"):
        f(jnp.ones((33, 17))).block_until_ready()  # cached: nothing compiles
    assert seconds["compile_seconds"] == compiled


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
    # prefill + decode + compile account for the wall time of the generate calls
    parts = sum(s["prefill_seconds"] + s["decode_seconds"] + s["compile_seconds"] for s in shards)
    assert parts == pytest.approx(summary["wall_seconds"], rel=0.1)


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
