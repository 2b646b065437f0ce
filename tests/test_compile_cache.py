"""The persistent JAX compilation cache (`evaluate --compilation-cache`): a warm cache loads
programs instead of compiling them and changes no bit of the rollouts (tokens and per-step
logits), and the cache folder is not part of the results' fingerprint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gsm8k_eval import compile_cache

LIMIT = 3


def _evaluate(model: Path, dataset: Path, out: Path, *extra: str) -> dict:
    command = [sys.executable, "-m", "gsm8k_eval", "evaluate", "--dataset", str(dataset)]
    command += ["--model-dir", str(model), "--batch-size", "2", "--limit", str(LIMIT)]
    command += ["--max-new-tokens", "8", "--shard-size", "2", "--device", "cpu"]
    command += ["--output-dir", str(out), *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "generation.json").read_text())  # summary.json is score's


@pytest.fixture(scope="module")
def runs(tmp_path_factory, gsm8k_dir):
    from gsm8k_eval.models import fetch_model

    work = tmp_path_factory.mktemp("compile-cache")
    model = fetch_model("random:tiny", work / "model")
    dataset = gsm8k_dir / "test.jsonl"
    cache = work / "jax-cache"
    return {
        "none": (_evaluate(model, dataset, work / "none"), work / "none"),
        "cold": (
            _evaluate(model, dataset, work / "cold", "--compilation-cache", str(cache)),
            work / "cold",
        ),
        "warm": (
            _evaluate(model, dataset, work / "warm", "--compilation-cache", str(cache)),
            work / "warm",
        ),
        "resumed": (
            _evaluate(model, dataset, work / "none", "--compilation-cache", str(cache)),
            work / "none",
        ),
    }


def test_warm_cache_loads_every_program_and_saves_compile_time(runs):
    none, cold, warm = runs["none"][0], runs["cold"][0], runs["warm"][0]
    assert none["compilation_cache"] == {
        "dir": None,
        "hits": 0,
        "misses": 0,
        "compile_seconds_saved": 0.0,
    }
    assert cold["compilation_cache"]["misses"] > 0 and cold["compilation_cache"]["hits"] == 0
    assert warm["compilation_cache"]["hits"] == cold["compilation_cache"]["misses"]
    assert warm["compilation_cache"]["misses"] == 0
    # (compile_seconds_saved is JAX's estimate from compile times it stores in whole seconds:
    # 0 for the tiny model on a fast machine, machine-dependent otherwise, so the counting is
    # checked on planted events below, not here.)


def test_counters_add_up_the_cache_events(monkeypatch):
    """Hits, misses and saved seconds from planted `jax.monitoring` events; a negative saving
    (reading the entry took longer than compiling) counts as none; other events are ignored."""
    stats = compile_cache.CacheStats(dir="/cache")
    monkeypatch.setattr(compile_cache, "_stats", stats)
    for event in (compile_cache.HIT_EVENT, compile_cache.HIT_EVENT, compile_cache.MISS_EVENT):
        compile_cache._on_event(event)
    compile_cache._on_event("/jax/other")
    compile_cache._on_duration(compile_cache.SAVED_EVENT, 1.5)
    compile_cache._on_duration(compile_cache.SAVED_EVENT, -0.25)
    compile_cache._on_duration("/jax/other_sec", 7.0)
    assert compile_cache.stats().as_dict() == {
        "dir": "/cache",
        "hits": 2,
        "misses": 1,
        "compile_seconds_saved": 1.5,
    }
    other = {"dir": "/cache", "hits": 0, "misses": 4, "compile_seconds_saved": 0.5}
    assert compile_cache.combine([None, stats.as_dict(), other]) == {
        "dir": "/cache",
        "hits": 2,
        "misses": 5,
        "compile_seconds_saved": 2.0,
    }
    assert compile_cache.combine([None, None]) is None


def test_cache_changes_no_token_or_logit(runs):
    reference = (runs["none"][1] / "generations.jsonl").read_bytes()
    rows = [json.loads(line) for line in reference.decode().splitlines()]
    assert len(rows) == LIMIT and all(row["tokens"] and row["token_logits"] for row in rows)
    for name in ("cold", "warm"):
        assert (runs[name][1] / "generations.jsonl").read_bytes() == reference, name


def test_cache_folder_is_not_in_the_fingerprint(runs):
    digests = {runs[name][0]["fingerprint_sha256"] for name in ("none", "cold", "warm")}
    assert len(digests) == 1
    resumed = runs["resumed"][0]  # the no-cache run's folder, rerun with the cache on
    assert resumed["resumed_shards"] == resumed["shards"] == 2
