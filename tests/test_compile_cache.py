"""The persistent JAX compilation cache (`evaluate --compilation-cache`): a warm cache loads
programs instead of compiling them and changes no bit of the rollouts (tokens and per-step
logits), and the cache folder is not part of the results' fingerprint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    # JAX stores each program's compile time in whole seconds, so on a fast machine the tiny
    # model's programs record 0 and the saving estimate is 0: only its sign is checked, never
    # a timing (compile seconds vary with the machine's load).
    assert warm["compilation_cache"]["compile_seconds_saved"] >= 0


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
