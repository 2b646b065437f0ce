"""Shared prefill (issue 24): requests admitted together with identical prompts (the n samples
of a question) share one prefill row, its K/V copied into each of their slots and each first
token drawn with its own key. The oracle is the same engine prefilling every request on its own
(`share_prefill=False`): slot K/V, first tokens and logits, and whole samples must be bitwise
the same. A sample admitted after its siblings' prefill had its first token drawn then and
copies the prompt K/V of a slot that holds it: the same bits again. Tiny random Gemma 3, float32
and bfloat16, prefill_rows 1 and 4."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from bench_scripts import run_on_tiny
from test_engine import mismatches, random_slot, stored
from test_sampled_engine import keys_for, sampled_engine
from test_sampler import TINY, random_prompts, tiny_model

from gsm8k_eval.sampling.prefill_calls import distinct_rows, rows_saved, shared_calls
from gsm8k_eval.sampling.types import Layout

# An admission of 7 requests: question i's prompt at the positions listed (not adjacent);
# every question has several, so each call is a shared one (one program per engine).
ADMISSION = (0, 1, 0, 2, 0, 1, 2)
LENGTHS = (40, 17, 40)  # one bucket; questions 0 and 2: one length, other tokens


def test_distinct_rows_and_the_calls_they_make():
    prompts = [[2, 5], [2, 6], [2, 5], [2, 5, 7], [2, 6]]
    assert distinct_rows(prompts) == ([0, 1, 3], [0, 1, 0, 2, 1])
    assert rows_saved(prompts) == 2
    layout = Layout(decode_rows=6, prefill_rows=2, bucket_step=8)
    keys = np.arange(10, dtype=np.uint32).reshape(5, 2)
    calls = shared_calls(prompts, [4, 0, 5, 1, 2], keys, TINY, layout)
    assert [c.members for c in calls] == [(0, 1, 2, 4), (3,)]  # rows (0, 1), then row 2
    assert [c.shared for c in calls] == [True, False]  # row 2 serves one prompt: step.prefill
    assert calls[1].inputs[1].tolist() == [1, 6] and calls[1].kwargs["keys"][0].tolist() == [6, 7]
    tokens, sources, slots, key_rows = calls[0].inputs
    assert tokens.shape == (2, 8) and sources.shape == slots.shape == (6,)
    assert sources[:4].tolist() == [0, 1, 0, 1] and slots.tolist() == [4, 0, 5, 2, 6, 6]
    assert key_rows[:4].tolist() == keys[[0, 1, 2, 4]].tolist() and not key_rows[4:].any()
    with pytest.raises(ValueError, match="decode_rows"):
        shared_calls(prompts * 2, list(range(10)), np.zeros((10, 2), np.uint32), TINY, layout)


def _prefill(engine, prompts, slots, keys):
    """The engine's prefill of one admission into a zeroed cache: (the cache as host arrays,
    first tokens and logits)."""
    engine.last_timing = dict.fromkeys(("prefill_seconds", "compile_seconds"), 0.0)
    engine._cache = None
    firsts = engine._prefill_many(prompts, slots, keys)
    return jax.device_get(engine._cache), firsts


def _bits(tree) -> list[bytes]:
    return [np.asarray(x).tobytes() for x in jax.tree.leaves(tree)]


@functools.cache
def model_of(dtype: str):
    return tiny_model(dtype)


@functools.cache
def engines(dtype: str, rows: int):
    """(sharing engine, oracle engine) on one model, their programs compiled once per session."""
    model, layout = model_of(dtype), Layout(prefill_rows=rows)
    oracle = sampled_engine(model, layout=layout, share_prefill=False)
    return sampled_engine(model, layout=layout), oracle


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("rows", [1, 4])
def test_shared_prefill_equals_separate_prefill_bitwise(dtype, rows):
    """Slot K/V (the whole cache), first tokens and their float32 logits: the same bits."""
    shared, oracle = engines(dtype, rows)
    questions = random_prompts(LENGTHS, seed=5)
    questions[2][:20] = questions[0][:20]  # a shared prefix is not an identical prompt
    prompts = [questions[q] for q in ADMISSION]
    slots = np.random.default_rng(rows).permutation(8)[: len(prompts)].tolist()
    keys = keys_for(4, len(prompts))
    cache, firsts = _prefill(shared, prompts, slots, keys)
    assert shared.last_timing["prefill_rows_shared"] == 4.0
    assert shared.compiled_programs == [("prefill_shared", 64)]
    cache_ref, firsts_ref = _prefill(oracle, prompts, slots, keys)
    assert "prefill_rows_shared" not in oracle.last_timing
    assert _bits(cache) == _bits(cache_ref), (dtype, rows)
    tokens, logits = zip(*firsts, strict=True)
    tokens_ref, logits_ref = zip(*firsts_ref, strict=True)
    assert tokens == tokens_ref
    bits = lambda x: np.float32(x).view(np.uint32).tolist()  # noqa: E731
    assert bits(logits) == bits(logits_ref)
    # the samples of question 0 drew with their own keys (a shared draw would repeat one token)
    assert len({tokens[i] for i, q in enumerate(ADMISSION) if q == 0}) > 1


@pytest.mark.parametrize(("dtype", "rows"), [("bfloat16", 4)])
def test_shared_samples_equal_separate_samples(dtype, rows):
    """Whole samples (4 per question, admitted in a random order at bs 8, random slots) equal
    the oracle's one-request-per-row prefill at bs 3, and sharing did happen. (float32 and
    bfloat16 at prefill_rows 1 and float32 at 4: tests/test_sampled_engine.py compares bs 3/8,
    where samples of a question share, with bs 1, where none can.)"""
    shared, oracle = engines(dtype, rows)
    prompts = [p for p in random_prompts((3, 40, 64, 30, 17), seed=6) for _ in range(4)]
    keys = keys_for(7, 5, samples=4)
    expected = oracle.generate(prompts, max_in_flight=3, keys=keys)
    order = np.random.default_rng(rows).permutation(len(prompts))
    shared.choose_slot = random_slot(rows)
    out = shared.generate([prompts[i] for i in order], max_in_flight=8, keys=keys[order])
    assert shared.last_timing["prefill_rows_shared"] > 0
    assert not mismatches(out, [expected[i] for i in order]), (dtype, rows)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_sample_admitted_later_copies_its_siblings_kv_bitwise(dtype):
    """Question 0 prefilled into slot 2 (its second sample's first token drawn alongside,
    without a slot), then copied into slot 6: slot 6's K/V and both first tokens and logits
    equal prefilling the three requests separately. Stale values cannot leak: slot 6 held
    Inf before, and slot 2's positions past the prompt (where its decoding writes) hold NaN."""
    shared, oracle = engines(dtype, 1)
    q0, q1 = random_prompts((40, 17), seed=8)
    keys = keys_for(9, 1, samples=2)
    keys = np.stack([keys[0], np.asarray(keys_for(10, 1)[0]), keys[1]])  # q0 s0, q1, q0 s1
    cache_ref, firsts_ref = _prefill(oracle, [q0, q1, q0], [2, 5, 6], keys)
    _, firsts = _prefill(shared, [q0, q1, q0], [2, 5, None], keys)
    region = TINY.max_prompt_length

    def plant(x: jax.Array) -> jax.Array:
        return x.at[6].set(stored(jnp.inf, x, dtype)).at[2, region:].set(stored(jnp.nan, x, dtype))

    shared._cache = {
        name: {**layer, "k": plant(layer["k"]), "v": plant(layer["v"])}
        for name, layer in shared._cache.items()
    }
    planted = jax.device_get(shared._cache)
    shared._copy_many([2], [6])
    cache = jax.device_get(shared._cache)
    for name, layer in cache.items():
        for kv in ("k", "v"):
            got, want = np.asarray(layer[kv]), np.asarray(cache_ref[name][kv])
            assert got[6].tobytes() == want[6].tobytes(), (dtype, name, kv)
            before = np.asarray(planted[name][kv])
            others = [r for r in range(got.shape[0]) if r != 6]  # the source's NaNs included
            assert got[others].tobytes() == before[others].tobytes(), (dtype, name, kv)
            assert got[5].tobytes() == want[5].tobytes(), (dtype, name, kv)
    bits = lambda pairs: [(t, np.float32(x).view(np.uint32).item()) for t, x in pairs]  # noqa: E731
    assert bits(firsts) == bits(firsts_ref)
    assert shared.last_timing["prefill_rows_shared"] == 1.0  # the copy (the draw saved none)
    assert ("copy",) in shared.compiled_programs


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_samples_admitted_apart_cost_one_prefill_per_question(dtype):
    """4 questions x 4 samples at bs 3 with budgets that end rows at different steps: samples
    are admitted one or two at a time, yet every question is prefilled once (the others draw
    at its prefill and copy a sibling's K/V); whole samples equal the oracle's, bitwise."""
    shared, oracle = engines(dtype, 1)
    prompts = [p for p in random_prompts((9, 40, 23, 64), seed=11) for _ in range(4)]
    keys = keys_for(12, 4, samples=4)
    budgets = np.random.default_rng(13).integers(1, TINY.max_generation_steps + 1, 16).tolist()
    expected = oracle.generate(prompts, max_in_flight=3, max_new_tokens=budgets, keys=keys)
    out = shared.generate(prompts, max_in_flight=3, max_new_tokens=budgets, keys=keys)
    assert not mismatches(out, expected), dtype
    assert shared.last_timing["prefill_rows_shared"] == 16 - 4


class RecordsAdmissions:
    """Wraps an engine's `_prefill_many` and `_copy_many` to log the slots of each call, and
    `_start_segment` to log each decode segment (`events`: all three in order)."""

    def __init__(self, engine, monkeypatch):
        self.events: list[tuple[str, list]] = []
        for name in ("_prefill_many", "_copy_many", "_start_segment"):
            original = getattr(engine, name)
            monkeypatch.setattr(engine, name, self._logged(name, original))

    @property
    def calls(self) -> list[tuple[str, list]]:
        """Prefills and copies only."""
        return [e for e in self.events if e[0] != "_start_segment"]

    def _logged(self, name, original):
        def call(*args, **kwargs):
            slots = [] if name == "_start_segment" else list(args[1])  # destination slots
            self.events.append((name, slots))
            return original(*args, **kwargs)

        return call


def _small(dtype: str, rows: int, **kwargs):
    layout = Layout(decode_rows=rows, prefill_rows=1)
    shared = sampled_engine(model_of(dtype), layout=layout, **kwargs)
    oracle = sampled_engine(model_of(dtype), layout=layout, share_prefill=False)
    return shared, oracle


def _both(shared, oracle, prompts, budgets, seed: int) -> tuple[list, list]:
    """Both engines' samples at bs 2 (one key per request from `seed`): (shared, oracle)."""
    keys = keys_for(seed, len(prompts))
    run = dict(max_in_flight=2, max_new_tokens=budgets, keys=keys)
    return shared.generate(prompts, **run), oracle.generate(prompts, **run)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_sibling_copies_before_its_source_slot_is_refilled(dtype, monkeypatch):
    """Question A's first sample ends in slot 0; in the next admission A's second sample (drawn
    at A's prefill) goes to slot 2 and a new question to slot 0, the copy's source: the copy
    reads slot 0 before the prefill overwrites it (swapped, A's sample would get the other
    question's prompt K/V)."""
    order = iter([0, 1, 2, 0])
    shared, oracle = _small(dtype, 3, choose_slot=lambda free: next(order))
    spy = RecordsAdmissions(shared, monkeypatch)
    a, b, x = random_prompts((40, 17, 30), seed=14)
    prompts, budgets = [a, b, a, x], [2, 3, 10, 10]
    out, expected = _both(shared, oracle, prompts, budgets, seed=15)
    prefill, copy = "_prefill_many", "_copy_many"
    assert spy.calls == [(prefill, [0, 1, None]), (copy, [2]), (prefill, [0])]
    at = spy.events.index((copy, [2]))
    assert spy.events[at + 1] == (prefill, [0])  # one admission: no segment between them
    assert not mismatches(out, expected), dtype


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_sibling_whose_prompt_left_every_slot_is_prefilled_again(dtype, monkeypatch):
    """A's second sample had its first token drawn at A's prefill, but by its admission the
    only slot holding A was refilled with another question: it is prefilled again (no copy),
    and its sample is the oracle's bit for bit."""
    shared, oracle = _small(dtype, 3)
    spy = RecordsAdmissions(shared, monkeypatch)
    a, b, c = random_prompts((40, 17, 30), seed=16)
    prompts, budgets = [a, b, c, a], [2, 20, 3, 10]
    out, expected = _both(shared, oracle, prompts, budgets, seed=17)
    prefill = "_prefill_many"
    assert spy.calls == [(prefill, [0, 1, None]), (prefill, [0]), (prefill, [0])]
    assert not mismatches(out, expected), dtype
    assert shared.last_timing["prefill_rows_shared"] == 0


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_with_two_rows_some_siblings_share_and_some_are_prefilled_again(dtype):
    """decode_rows 2 leaves few free rows to draw waiting siblings in: some samples copy a
    sibling's prompt K/V, others are prefilled again (no free row at their sibling's prefill,
    or no slot holds their prompt any more); all equal the oracle's, bitwise (3 questions x 3
    samples, random budgets)."""
    shared, oracle = _small(dtype, 2)
    prompts = [p for _ in range(3) for p in random_prompts((40, 17, 30), seed=18)]
    budgets = np.random.default_rng(20).integers(1, TINY.max_generation_steps + 1, 9).tolist()
    out, expected = _both(shared, oracle, prompts, budgets, seed=19)
    assert not mismatches(out, expected), dtype
    assert 0 < shared.last_timing["prefill_rows_shared"] < 9 - 3


def test_greedy_engine_does_not_share():
    """Greedy runs keep the separate prefill (their programs unchanged): nothing is shared."""
    engine = sampled_engine(model_of("float32"), TINY)
    _, firsts = _prefill(engine, random_prompts((5,), seed=0) * 3, [0, 1, 2], None)
    assert "prefill_rows_shared" not in engine.last_timing and len(set(firsts)) == 1
    assert engine.compiled_programs == [("prefill", 64)]


def test_sampled_benchmark_runs_and_checks_its_samples(tmp_path):
    """benchmarks/bench_sampled.py's plumbing on the tiny model (its numbers mean something on
    the 270M only): greedy, shared and separate prefill rows, no compilation inside a timed
    call; it exits non-zero if sharing changed a sample."""
    import json

    out = run_on_tiny(
        "bench_sampled.py",
        tmp_path,
        ["--questions", "2", "--samples", "3", "--tokens", "4", "--bs", "2",
         "--decode-rows", "4", "--segment-steps", "2", "--shots", "0",
         "--max-prompt-length", "1024", "--dtype", "float32", "--full-sort"],
    )  # fmt: skip
    data = json.loads(out.read_text())
    rows = {row["variant"]: row for row in data["rows"]}
    assert [rows[v]["requests"] for v in ("greedy", "sampled", "sampled-separate")] == [2, 6, 6]
    shared = [rows[v]["prefill_rows_shared"] for v in ("sampled", "sampled-separate")]
    assert shared[0] > 0 == shared[1]
    assert data["ratios"]["sampled / greedy samples/s"] > 0
    assert data["ratios"]["lax.top_k / full sort samples/s"] > 0
    assert 0 <= rows["sampled-full-sort"]["same_as_sampled"] <= 6
    # the warm-up compiled every program (shared rows, rows of their own and, at bs 2, where a
    # question's third sample is drawn at its prefill and admitted later, the K/V copy): none is
    # compiled inside a timed call
    assert [row["compile_seconds"] for row in data["rows"]] == [0.0] * 4
