"""Tests for gsm8k_eval.draw: keys, filtering and tie rules, row invariance, the distribution."""

from __future__ import annotations

import hashlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import chisquare

from gsm8k_eval.draw import (
    draw,
    filter_logits,
    greedy,
    question_words,
    request_key,
    request_keys,
    seed_key,
    step_keys,
)

V = 1024
SETTINGS = [(0.7, 50, 0.95), (1.0, 0, 0.9), (0.5, 5, 1.0), (1.3, 0, 1.0)]
FILTER = jax.jit(filter_logits)  # a traced top-k: the full-sort path
DRAW = jax.jit(draw)
FILTER_K = jax.jit(filter_logits, static_argnums=2)  # a Python top-k: the lax.top_k path
DRAW_K = jax.jit(draw, static_argnums=3)
PATHS = {"sort": (FILTER, DRAW), "top_k": (FILTER_K, DRAW_K)}
STATIC_SETTINGS = [(0.7, 50, 0.95), (1.0, 5, 0.5), (0.5, 3, 1.0), (1.3, 200, 0.9)]  # top_k > 0
# every setting through the sort, the static ones (top_k > 0) also through lax.top_k
CASES = [(s, "sort") for s in SETTINGS] + [
    (s, "top_k") for s in dict.fromkeys(SETTINGS + STATIC_SETTINGS) if s[1]
]
P_OK = 1e-3  # chi-square: the right distribution must give p > P_OK ...
P_WRONG = 1e-6  # ... and a wrong temperature p < P_WRONG
LOGITS10 = np.array([2.0, 1.7, 1.3, 1.1, 0.6, 0.2, -0.3, -0.8, -1.5, -2.5], np.float32)
DRAWS = 20_000


def _data(key: jax.Array) -> list[int]:
    return [int(w) for w in jax.random.key_data(key)]


def _row(rng: np.random.Generator, ties: bool = True) -> np.ndarray:
    row = (rng.standard_normal(V) * 3).astype(np.float32)
    if ties:  # exact ties among the largest values exercise the tie rules
        top = np.argsort(row)[-8:]
        row[top[:4]] = row[top[4]]
    return row


def _embed(row: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """`row` at a random position among `size - 1` random neighbours."""
    batch = np.stack([_row(rng) for _ in range(size)])
    where = int(rng.integers(size))
    batch[where] = row
    return batch, where


# --- keys -------------------------------------------------------------------------------------


def test_request_key_pinned_and_stable() -> None:
    # Pinned: a change of the derivation (hash, word order, fold order) changes every sample.
    assert _data(request_key(0, "q1", 0)) == [2061525835, 812290162]
    digest = hashlib.sha256(b"q1").digest()
    assert question_words("q1") == (
        int.from_bytes(digest[:4], "big"),
        int.from_bytes(digest[4:8], "big"),
    )
    assert _data(request_key(7, "gsm8k-12", 3)) == _data(request_key(7, "gsm8k-12", 3))
    others = [request_key(8, "gsm8k-12", 3), request_key(7, "gsm8k-13", 3)]
    others.append(request_key(7, "gsm8k-12", 4))
    assert all(_data(k) != _data(request_key(7, "gsm8k-12", 3)) for k in others)


def test_seed_key_matches_jax_below_2_32_and_takes_64_bits() -> None:
    for seed in (0, 1, 2**32 - 1):
        assert _data(seed_key(seed)) == _data(jax.random.key(seed, impl="threefry2x32"))
    assert _data(seed_key(2**32 + 5)) == [1, 5]  # jax.random.key would wrap it to [0, 5]
    for bad in (-1, 2**64):
        with pytest.raises(ValueError):
            seed_key(bad)
    with pytest.raises(ValueError):
        request_key(0, "q", -1)


def test_request_keys_and_raw_keys_match_typed() -> None:
    keys = request_keys(3, [("a", 0), ("b", 1)])
    assert _data(keys[1]) == _data(request_key(3, "b", 1))
    chain = seed_key(3)  # the documented derivation, one fold_in at a time
    for word in (*question_words("b"), 1):
        chain = jax.random.fold_in(chain, word)
    assert _data(chain) == _data(keys[1])
    raw = jax.random.key_data(keys)
    assert np.array_equal(
        jax.random.key_data(step_keys(raw, 5)), jax.random.key_data(step_keys(keys, 5))
    )
    keys = request_keys(3, [("q", i) for i in range(8)])
    logits = np.random.default_rng(0).standard_normal((8, V)).astype(np.float32)
    want = DRAW(logits, keys, 0.8)[0]
    assert np.array_equal(draw(logits, jax.random.key_data(keys), 0.8)[0], want)


# --- filtering and tie rules ------------------------------------------------------------------


def _filtered(logits: list[float], temperature: float, top_k: int, top_p: float) -> np.ndarray:
    """FILTER of one short row, padded with -inf to 8 entries (one compiled shape)."""
    row = np.full((1, 8), -np.inf, np.float32)
    row[0, : len(logits)] = logits
    return np.asarray(FILTER(row, temperature, top_k, top_p))[0, : len(logits)]


def _kept(logits: list[float], temperature: float, top_k: int, top_p: float) -> list[int]:
    return np.flatnonzero(np.isfinite(_filtered(logits, temperature, top_k, top_p))).tolist()


def test_top_k_keeps_every_tie_at_the_kth_value() -> None:
    assert _kept([3.0, 2.0, 2.0, 2.0, 1.0], 1.0, 2, 1.0) == [0, 1, 2, 3]
    assert _kept([1.0, 3.0, 2.0, 0.0], 1.0, 2, 1.0) == [1, 2]
    assert _kept([1.0, 3.0, 2.0, 0.0], 1.0, 0, 1.0) == [0, 1, 2, 3]  # 0: off
    assert _kept([1.0, 3.0, 2.0, 0.0], 1.0, 4, 1.0) == [0, 1, 2, 3]


def test_top_p_smallest_nucleus_ties_kept_top_always() -> None:
    probs = np.log([0.5, 0.3, 0.15, 0.05]).tolist()
    assert _kept(probs, 1.0, 0, 0.6) == [0, 1]
    assert _kept(probs, 1.0, 0, 0.85) == [0, 1, 2]
    assert _kept(probs, 1.0, 0, 1e-6) == [0]  # the top token is always kept
    assert _kept(probs, 1.0, 0, 1.0) == [0, 1, 2, 3]
    tied = np.log([0.4, 0.2, 0.2, 0.2]).tolist()  # the nucleus ends inside a tie: keep all 3
    assert _kept(tied, 1.0, 0, 0.5) == [0, 1, 2, 3]


def test_top_p_applies_to_what_top_k_kept_after_temperature() -> None:
    probs = np.log([0.4, 0.3, 0.2, 0.1]).tolist()
    assert _kept(probs, 1.0, 0, 0.55) == [0, 1]
    assert _kept(probs, 1.0, 2, 0.55) == [0]  # renormalised over top-2: 4/7 >= 0.55
    assert _kept(probs, 0.2, 0, 0.55) == [0]  # sharper: the top token alone holds > 0.55
    out = _filtered(probs, 0.5, 0, 1.0)
    assert np.array_equal(out, np.array(probs, np.float32) / np.float32(0.5))


def test_bad_parameters_raise() -> None:
    row = np.zeros((1, 4), np.float32)
    for t, k, p in [(-0.1, 0, 1.0), (1.0, 0, 0.0), (1.0, 0, 1.5)]:
        with pytest.raises(ValueError):
            filter_logits(row, t, k, p)
    with pytest.raises(TypeError):
        filter_logits(row, 1.0, 2.0, 1.0)


# --- batch invariance -------------------------------------------------------------------------


@pytest.mark.parametrize(("setting", "path"), CASES)
def test_filter_row_bitwise_independent_of_batch(setting, path: str) -> None:
    FILTER = PATHS[path][0]
    rng = np.random.default_rng(1)
    row = _row(rng)
    alone = np.asarray(FILTER(row[None], *setting))[0]
    assert 0 < np.isfinite(alone).sum() < V or setting[1:] == (0, 1.0)
    for size in (3, 8):
        batch, where = _embed(row, size, rng)
        got = np.asarray(FILTER(batch, *setting))[where]
        assert np.array_equal(got.view(np.uint32), alone.view(np.uint32)), size


@pytest.mark.parametrize(("setting", "path"), CASES)
def test_draw_row_bitwise_independent_of_batch(setting, path: str) -> None:
    DRAW = PATHS[path][1]
    rng = np.random.default_rng(2)
    rows = [_row(rng) for _ in range(4)]
    keys = [request_key(11, f"q{i}", i % 2) for i in range(4)]
    alone = [DRAW(r[None], k[None], *setting) for r, k in zip(rows, keys, strict=True)]
    for size in (3, 8):
        for (token, logit), row, key in zip(alone, rows, keys, strict=True):
            batch, where = _embed(row, size, rng)
            others = request_keys(99, [(f"n{size}", i) for i in range(size)])
            got = DRAW(batch, others.at[where].set(key), *setting)
            assert int(got[0][where]) == int(token[0])
            assert np.asarray(got[1])[where].view(np.uint32) == np.asarray(logit).view(np.uint32)


def test_same_request_same_token_other_seed_other_samples() -> None:
    base = _tokens(5, "gsm8k-7", 2, LOGITS10 * 0)  # uniform over 10 tokens
    assert np.array_equal(base, _tokens(5, "gsm8k-7", 2, LOGITS10 * 0))
    for seed, question, sample in ((6, "gsm8k-7", 2), (5, "gsm8k-8", 2), (5, "gsm8k-7", 3)):
        other = _tokens(seed, question, sample, LOGITS10 * 0)
        assert 0.88 < np.mean(base != other) < 0.92  # independent uniform draws: 0.9
    assert np.bincount(base, minlength=10).min() > 0.09 * DRAWS  # the steps differ too


# --- greedy -----------------------------------------------------------------------------------


def test_temperature_zero_is_greedy_argmax_bitwise() -> None:
    rng = np.random.default_rng(3)
    logits = np.stack([_row(rng) for _ in range(8)])
    keys = request_keys(0, [("q", i) for i in range(8)])
    want = jnp.argmax(logits, axis=-1)
    for tokens, logit in (draw(logits, keys, 0.0), DRAW(logits, keys, 0.0, 50, 0.9)):
        assert np.array_equal(np.asarray(tokens), np.asarray(want))
        assert np.array_equal(np.asarray(logit), np.asarray(greedy(jnp.asarray(logits))[1]))


def test_small_temperature_tends_to_greedy() -> None:
    rng = np.random.default_rng(4)
    logits = rng.permuted(np.tile(np.arange(V, dtype=np.float32) * 0.01, (8, 1)), axis=1)
    keys = request_keys(1, [("q", i) for i in range(8)])
    want = np.argmax(logits, axis=-1)
    assert np.array_equal(np.asarray(DRAW(logits, keys, 1e-5)[0]), want)
    assert not np.array_equal(np.asarray(DRAW(logits, keys, 5.0)[0]), want)


# --- distribution -----------------------------------------------------------------------------


def _expected(temperature: float, top_k: int, top_p: float) -> np.ndarray:
    """float64 reference: softmax(logits / T) over the top-k, then the smallest nucleus."""
    scaled = LOGITS10.astype(np.float64) / temperature
    order = np.argsort(-scaled)[: top_k or len(scaled)]
    probs = np.exp(scaled[order] - scaled[order].max())
    probs /= probs.sum()
    mass_before = np.concatenate([[0.0], np.cumsum(probs)[:-1]])
    kept = order[mass_before < top_p] if top_p < 1 else order
    out = np.zeros(len(scaled))
    out[kept] = np.exp(scaled[kept] - scaled[kept].max())
    return out / out.sum()


def _tokens(seed: int, question: str, sample: int, logits: np.ndarray, *setting) -> np.ndarray:
    """DRAWS tokens of one request at steps 0..DRAWS-1, all on the same logits."""
    key = request_key(seed, question, sample)
    keys = step_keys(jnp.broadcast_to(key, (DRAWS,)), jnp.arange(DRAWS))
    batch = jnp.broadcast_to(jnp.asarray(logits), (DRAWS, len(logits)))
    return np.asarray(DRAW(batch, keys, *(setting or (1.0,)))[0])


def _counts(temperature: float, top_k: int, top_p: float) -> np.ndarray:
    tokens = _tokens(2024, "chi2", 0, LOGITS10, temperature, top_k, top_p)
    return np.bincount(tokens, minlength=len(LOGITS10))


def _chi2_p(counts: np.ndarray, expected: np.ndarray) -> float:
    support = expected > 0
    assert counts[~support].sum() == 0, "a filtered-out token was drawn"
    return float(chisquare(counts[support], expected[support] * counts.sum()).pvalue)


@pytest.mark.parametrize("setting", [(0.7, 0, 1.0), (0.7, 6, 1.0), (0.7, 6, 0.9), (1.3, 0, 0.8)])
def test_draws_follow_filtered_softmax(setting: tuple[float, int, float]) -> None:
    expected = _expected(*setting)
    assert 2 <= np.count_nonzero(expected) <= 10
    assert _chi2_p(_counts(*setting), expected) > P_OK


def test_wrong_temperature_fails_the_chi_square() -> None:
    """The test above can fail: draws at T = 1 judged against T = 0.7 (same top-k support)."""
    assert _chi2_p(_counts(1.0, 6, 1.0), _expected(0.7, 6, 1.0)) < P_WRONG
    assert _chi2_p(_counts(0.7, 6, 1.0), _expected(0.7, 6, 1.0)) > P_OK


# --- the static top-k path (jax.lax.top_k instead of a full sort) -----------------------------


@pytest.mark.parametrize(("temperature", "top_k", "top_p"), STATIC_SETTINGS)
def test_static_top_k_keeps_what_the_full_sort_keeps(temperature, top_k, top_p) -> None:
    """Rows with exact ties among their largest values and planted ties at the k-th value (more
    than top_k returns): both paths keep the same tokens with the same values."""
    rng = np.random.default_rng(top_k)
    rows = np.stack([_row(rng) for _ in range(32)])
    for r in range(0, 32, 4):  # 3 more copies of the k-th largest value in every fourth row
        kth = np.sort(rows[r])[::-1][top_k - 1]
        rows[r, rng.choice(np.flatnonzero(rows[r] < kth), 3, replace=False)] = kth
    rows[1, 2:] = -np.inf  # fewer finite values than top_k: the k-th value is -inf
    for p in (top_p, 1.0):
        fast = np.asarray(FILTER_K(rows, temperature, top_k, p))
        assert np.array_equal(fast, np.asarray(FILTER(rows, temperature, top_k, p)))
    assert (np.isfinite(fast).sum(axis=1)[::4] >= top_k + 3).all()  # the planted ties kept


def test_static_top_k_tie_rules_and_nucleus() -> None:
    def kept(logits: list[float], top_k: int, top_p: float) -> list[int]:
        row = np.full((1, 8), -np.inf, np.float32)
        row[0, : len(logits)] = logits
        return np.flatnonzero(np.isfinite(FILTER_K(row, 1.0, top_k, top_p)[0])).tolist()

    assert kept([3.0, 2.0, 2.0, 2.0, 1.0], 2, 1.0) == [0, 1, 2, 3]
    assert kept([1.0, 3.0, 2.0, 0.0], 2, 1.0) == [1, 2]
    probs = np.log([0.4, 0.3, 0.2, 0.1]).tolist()
    assert kept(probs, 2, 0.55) == [0] and kept(probs, 3, 0.55) == [0, 1]
    # the ties beyond the k values lax.top_k returns count in the nucleus' mass: over
    # [0.4, 0.2, 0.2, 0.2] (top-2 keeps all three 0.2s) 0.4 alone is not >= 0.5 of the mass
    tied = np.log([0.4, 0.2, 0.2, 0.2]).tolist()
    # (0.36 x 2.5 = 0.9 < 1.0, clear of the boundary: a total counting a tie twice, >= 3.0,
    # would keep the 0.2s too)
    assert kept(tied, 2, 0.5) == [0, 1, 2, 3] and kept(tied, 2, 0.36) == [0]


def test_a_python_top_k_takes_the_lax_top_k_path() -> None:
    """The fast path is the one taken (both paths keep the same set, so only this can tell)."""
    row = jnp.zeros((2, V), jnp.float32)

    def primitives(fn, *args) -> set[str]:
        return set(re.findall(r"= (\w+)\[", str(jax.make_jaxpr(fn)(row, *args))))

    fast = primitives(lambda x: filter_logits(x, 0.7, 5, 0.9))
    assert "top_k" in fast and "sort" not in fast
    traced = primitives(lambda x, k: filter_logits(x, 0.7, k, 0.9), 5)
    assert "sort" in traced and "top_k" not in traced


def test_static_top_k_draws_follow_filtered_softmax() -> None:
    key = request_key(2024, "chi2", 0)
    keys = step_keys(jnp.broadcast_to(key, (DRAWS,)), jnp.arange(DRAWS))
    batch = jnp.broadcast_to(jnp.asarray(LOGITS10), (DRAWS, len(LOGITS10)))
    counts = np.bincount(np.asarray(DRAW_K(batch, keys, 0.7, 6, 0.9)[0]), minlength=10)
    assert _chi2_p(counts, _expected(0.7, 6, 0.9)) > P_OK
    wrong = np.bincount(np.asarray(DRAW_K(batch, keys, 1.0, 6, 1.0)[0]), minlength=10)
    assert _chi2_p(wrong, _expected(0.7, 6, 1.0)) < P_WRONG


def test_draw_benchmark_runs_every_part() -> None:
    """benchmarks/bench_draw.py's plumbing on a small vocabulary (numbers: docs/benchmarks.md)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_draw.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--rows", "2", "--vocab", "256", "--top-k", "5",
         "--repeats", "1"],
        capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "ms" not in line]
    assert len(rows) == 5 and all(float(r.split("|")[2]) >= 0 for r in rows), proc.stdout
