"""Sampled decoding in the continuous-batching engine (issue 24): every token a function of the
request's key, its step and its own float32 logits, so samples are bitwise the same at any batch
size, admission order and slot; temperature 0 is the greedy engine. Tiny random Gemma 3."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_engine import SEGMENT, mismatches, random_slot
from test_sampler import LENGTHS, TINY, StandInTokenizer, random_prompts, tiny_model

from gsm8k_eval import draw
from gsm8k_eval.sampling.engine import Engine
from gsm8k_eval.sampling.static import StaticSampler
from gsm8k_eval.sampling.stock import TunixSampler, sampling_arguments
from gsm8k_eval.sampling.types import Layout

SAMPLED = dataclasses.replace(TINY, temperature=0.8, top_k=64, top_p=0.95)


def keys_for(seed: int, count: int, samples: int = 1):
    """Key data of `count` questions x `samples` samples, question-major."""
    requests = [(f"q{i}", j) for i in range(count) for j in range(samples)]
    return draw.key_data(draw.request_keys(seed, requests))


def sampled_engine(model, config=SAMPLED, **kwargs) -> Engine:
    return Engine(model, StandInTokenizer(), config, segment_steps=SEGMENT, **kwargs)


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def sampled(request):
    """Model, prompts (each twice: two samples), keys and the outputs one at a time (bs 1)."""
    model = tiny_model(request.param)
    prompts = [p for p in random_prompts(LENGTHS, seed=1) for _ in range(2)]
    keys = keys_for(0, len(LENGTHS), samples=2)
    alone = sampled_engine(model).generate(prompts, max_in_flight=1, keys=keys)
    return request.param, model, prompts, keys, alone


@pytest.mark.parametrize("bs", [3, 8])
def test_samples_invariant_to_batch_size_order_and_slot(sampled, bs):
    dtype, model, prompts, keys, alone = sampled
    order = np.random.default_rng(bs).permutation(len(prompts))
    out = sampled_engine(model, choose_slot=random_slot(bs)).generate(
        [prompts[i] for i in order], max_in_flight=bs, keys=keys[order]
    )
    assert not mismatches(out, [alone[i] for i in order]), (dtype, bs)


def test_samples_are_sampled_not_greedy(sampled):
    """The two samples of a question differ somewhere, and differ from greedy (a sampler that
    ignored its keys, or decoded greedily, would fail here)."""
    _, model, prompts, _, alone = sampled
    greedy = sampled_engine(model, TINY).generate(prompts, max_in_flight=8)
    assert sum(a.tokens != b.tokens for a, b in zip(alone[::2], alone[1::2], strict=True)) >= 8
    assert sum(a.tokens != g.tokens for a, g in zip(alone, greedy, strict=True)) >= 16


def test_same_seed_same_samples_in_another_engine_and_another_seed_differs(sampled):
    _, model, prompts, keys, alone = sampled
    again = sampled_engine(model, layout=Layout(prefill_rows=1)).generate(
        prompts, max_in_flight=4, keys=keys
    )
    assert not mismatches(again, alone)
    other = sampled_engine(model).generate(prompts, max_in_flight=4, keys=keys_for(1, 10, 2))
    assert sum(a.tokens != b.tokens for a, b in zip(other, alone, strict=True)) >= 16


def test_batched_prefill_draws_the_same_first_tokens():
    """prefill_rows 4: one call holds several requests; each draws with its own key (first
    tokens equal one request per call, up to the prefill numerics, checked on the tokens)."""
    model = tiny_model("float32")
    prompts = [p for p in random_prompts(LENGTHS, seed=2) for _ in range(2)]
    keys = keys_for(3, len(LENGTHS), samples=2)
    layout = Layout(prefill_rows=4)
    one = sampled_engine(model, layout=layout).generate(prompts, max_in_flight=1, keys=keys)
    many = sampled_engine(model, layout=layout).generate(prompts, max_in_flight=8, keys=keys)
    assert not mismatches(many, one)


def test_temperature_zero_is_the_greedy_engine_and_ignores_keys():
    """Temperature 0 with keys equals the greedy oracle (the static sampler) bitwise."""
    model = tiny_model("float32")
    prompts = random_prompts(LENGTHS, seed=1)
    oracle = StaticSampler(model, StandInTokenizer(), TINY).generate(prompts)
    zero = dataclasses.replace(SAMPLED, temperature=0)
    out = sampled_engine(model, zero).generate(prompts, max_in_flight=3, keys=keys_for(0, 10))
    assert not mismatches(out, oracle)


def test_top_k_one_equals_greedy():
    model = tiny_model("float32")
    prompts = random_prompts(LENGTHS, seed=4)
    greedy = sampled_engine(model, TINY).generate(prompts, max_in_flight=8)
    top1 = dataclasses.replace(TINY, temperature=1.5, top_k=1)
    out = sampled_engine(model, top1).generate(prompts, max_in_flight=8, keys=keys_for(5, 10))
    assert not mismatches(out, greedy)


def teacher_forced_draws(model, prompt: list[int], generated: list[int], key) -> tuple:
    """The draws `DrawConfig.choose(logits, key, step)` of every step, from a plain forward pass
    of prompt + generated tokens (no KV cache, no engine): tokens and float32 logits."""
    import jax.numpy as jnp

    sequence = [*prompt, *generated[:-1]]
    n = len(sequence)
    mask = jnp.tril(jnp.ones((n, n), bool))[None]
    logits, _ = model(jnp.asarray([sequence]), jnp.arange(n)[None], None, mask)
    rows = logits[0, len(prompt) - 1 :].astype(jnp.float32)
    choice = draw.DrawConfig(SAMPLED.temperature, SAMPLED.top_k, SAMPLED.top_p)
    steps = np.arange(len(generated))
    token, logit = choice.choose(rows, np.repeat(key[None], len(generated), 0), steps)
    return np.asarray(token).tolist(), np.asarray(logit)


def test_every_token_is_the_draw_of_its_key_and_step():
    """Each sampled token (the prefill one is step 0) equals the draw from a teacher-forced
    forward pass with the request's own key at that step (float32: the plain forward pass's
    logits match the engine's to ~1e-6, far from flipping a draw)."""
    model = tiny_model("float32")
    prompts = random_prompts((3, 40, 90), seed=8)
    keys = keys_for(9, len(prompts))
    out = sampled_engine(model).generate(prompts, max_in_flight=3, keys=keys)
    for i, generation in enumerate(out):
        tokens, logits = teacher_forced_draws(model, prompts[i], generation.tokens, keys[i])
        assert tokens == generation.tokens, i
        np.testing.assert_allclose(logits, generation.token_logits, rtol=1e-4, atol=1e-4)


def test_sampled_engine_needs_keys():
    model = tiny_model("float32")
    with pytest.raises(ValueError, match="one key per prompt"):
        sampled_engine(model).generate(random_prompts((3,), seed=0))
    with pytest.raises(ValueError, match="shape"):
        sampled_engine(model).generate(random_prompts((3,), seed=0), keys=keys_for(0, 2))


def test_static_sampler_refuses_temperature():
    with pytest.raises(ValueError, match="greedily"):
        StaticSampler(tiny_model("float32"), StandInTokenizer(), SAMPLED)


def test_stock_tunix_gets_its_own_sampling_arguments():
    assert sampling_arguments(TINY) == {"temperature": 0.0}
    assert sampling_arguments(SAMPLED) == {
        "temperature": 0.8,
        "top_p": 0.95,
        "top_k": 64,
        "seed": 0,
    }
    top_p_only = dataclasses.replace(SAMPLED, top_k=0, seed=3)
    assert sampling_arguments(top_p_only)["top_k"] is None


def test_stock_tunix_samples_move_with_the_batch():
    """The negative control: stock tunix at the same settings, batched differently."""
    model = tiny_model("float32")
    prompts = random_prompts(LENGTHS, seed=1)
    sampler = TunixSampler(model, StandInTokenizer(), SAMPLED)
    whole = sampler.generate(prompts, max_in_flight=10)
    pairs = sampler.generate(prompts, max_in_flight=2)
    assert sum(a.tokens != b.tokens for a, b in zip(whole, pairs, strict=True)) >= 5
