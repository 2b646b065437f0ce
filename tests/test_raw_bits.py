"""A bfloat16 model's KV cache and embedding table are held as raw bits (uint16) by the engine.

XLA:CPU computes a bfloat16 scatter in float32, converting the whole cache there and back at
every write; the uint16 view is written in place (`gsm8k_eval.sampling.raw_bits`). It computes a
bfloat16 gather in float32 too, converting the whole embedding table for a one-token lookup
(`gsm8k_eval.sampling.embedder`). The values must be exactly those of bfloat16, and the
compiled programs must not do the conversions this removes.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from test_engine import engine, mismatches
from test_sampler import (
    LENGTHS,
    TINY,
    VOCAB,
    StandInTokenizer,
    random_prompts,
    randomize,
    tiny_model,
)
from tunix.models.gemma3 import model as gemma3

from gsm8k_eval.checkpoints import LoraConfig
from gsm8k_eval.sampling import StaticSampler
from gsm8k_eval.sampling.attention import write_rows
from gsm8k_eval.sampling.embedder import (
    RawBitsEmbedder,
    embedding_table,
    engine_split,
    gathers_in_float32,
)
from gsm8k_eval.sampling.raw_bits import from_storage, storage_dtype, to_storage


def test_a_bfloat16_write_stores_the_values_bits():
    rng = np.random.default_rng(0)
    values = rng.standard_normal((3, 6, 2)).astype(jnp.bfloat16)
    values[1, 2, 0] = np.nan  # payloads and signs survive: the write moves bits only
    values[2, 4, 1] = -0.0
    update = rng.standard_normal((3, 2, 2)).astype(jnp.bfloat16)
    update.view(np.uint16)[0, 1, 0] = 0x7F81  # a signalling NaN: a float32 round trip quiets it
    index = np.array([0, 4, 1])
    stored = to_storage(jnp.asarray(values), storage_dtype(jnp.bfloat16))
    assert stored.dtype == jnp.uint16
    out = np.asarray(from_storage(write_rows(stored, jnp.asarray(update), index), jnp.bfloat16))
    expected = values.copy()
    for row, at in enumerate(index):
        expected[row, at : at + 2] = update[row]
    assert out.dtype == jnp.bfloat16
    assert out.view(np.uint16).tobytes() == expected.view(np.uint16).tobytes()


def test_float32_caches_are_stored_as_they_are():
    assert storage_dtype(jnp.float32) == jnp.float32
    with pytest.raises(TypeError, match="16-bit floats"):
        to_storage(jnp.zeros(2, jnp.float32), jnp.uint16)


def test_the_bfloat16_decode_program_never_converts_a_cache_back():
    """No op in the compiled segment turns float32 into a whole bfloat16 cache (the float32
    round trip of every cache write: two per cache and step before the raw bits)."""
    sampler = engine(tiny_model("bfloat16"))
    sampler.generate(random_prompts(LENGTHS[:3], seed=1), max_in_flight=3)
    cache = next(iter(sampler._cache.values()))["k"]
    assert cache.dtype == jnp.uint16
    rows, size = cache.shape[:2]
    hlo = sampler._compiled[("segment",)].as_text()
    back = re.findall(rf"= bf16\[{rows},{size},[^=]*? convert\(", hlo)
    assert not back, back[:3]


# -- the embedding table --------------------------------------------------------------------------


def embedders(model):
    """(tunix's embedder of `model`, the embedder of the engine's split of it)."""
    return model.embedder, nnx.merge(*engine_split(model, separate_head=True)).embedder


def test_the_raw_bits_embedder_gives_tunix_embeddings_and_logits_bit_for_bit():
    model = tiny_model("bfloat16")
    tunix_embedder, raw = embedders(model)
    assert type(raw) is RawBitsEmbedder and raw.input_embedding.value.dtype == jnp.uint16
    tokens = jnp.asarray(np.random.default_rng(2).integers(0, VOCAB, (3, 7)), jnp.int32)
    hidden = jnp.asarray(np.random.default_rng(3).standard_normal((3, 64)), jnp.bfloat16)
    for name, x in (("encode", tokens), ("decode", hidden)):
        ours = jax.jit(lambda e, x, name=name: getattr(e, name)(x))(raw, x)
        theirs = jax.jit(lambda e, x, name=name: getattr(e, name)(x))(tunix_embedder, x)
        assert ours.dtype == theirs.dtype == jnp.bfloat16, name
        assert np.asarray(ours).tobytes() == np.asarray(theirs).tobytes(), name
    table = embedding_table(nnx.merge(*engine_split(model, separate_head=True)))
    assert np.asarray(table).tobytes() == np.asarray(model.embedder.input_embedding.value).tobytes()


def test_engine_split_leaves_the_callers_model_and_other_tables_alone():
    model = tiny_model("bfloat16")
    embedders(model)
    assert type(model.embedder) is gemma3.Embedder
    assert model.embedder.input_embedding.value.dtype == jnp.bfloat16
    float32 = tiny_model("float32")
    assert type(embedders(float32)[1]) is gemma3.Embedder  # float32 gathers natively
    without_head = nnx.merge(*engine_split(model, separate_head=False)).embedder
    assert type(without_head) is gemma3.Embedder  # the head reads the table


class _Device:
    def __init__(self, platform: str) -> None:
        self.platform = platform


class _Table:
    def __init__(self, dtype, platform: str) -> None:
        self.dtype, self._platform = jnp.dtype(dtype), platform

    def devices(self) -> set:
        return {_Device(self._platform)}


def test_only_a_16_bit_table_on_a_cpu_is_held_as_bits():
    assert gathers_in_float32(jnp.zeros((4, 2), jnp.bfloat16))  # this CPU
    assert gathers_in_float32(_Table(jnp.float16, "cpu"))
    assert not gathers_in_float32(_Table(jnp.float32, "cpu"))
    assert not gathers_in_float32(_Table(jnp.bfloat16, "gpu"))


def test_the_bfloat16_programs_never_convert_the_embedding_table():
    """No op in the compiled prefill or segment makes a whole [V, D] table (a float32 convert
    in each program before the raw-bits table: XLA:CPU's bfloat16 gather); the table is only
    passed in."""
    sampler = engine(tiny_model("bfloat16"))
    sampler.generate(random_prompts(LENGTHS[:3], seed=1), max_in_flight=3)
    assert len(sampler._compiled) >= 2
    for key, program in sampler._compiled.items():
        table = re.findall(rf"= \w+\[{VOCAB},64\]\S* (\S+?)\(", program.as_text())
        assert table and set(table) <= {"parameter", "get-tuple-element"}, (key, table)


def test_a_bfloat16_lora_model_in_the_engine_equals_the_static_oracle():
    """qwix's LoRA interception and the raw-bits table together: the same bits as the static
    oracle (tunix's own embedder and block)."""
    import qwix

    base = tiny_model("bfloat16", seed=4)
    provider = qwix.LoraProvider(module_path=LoraConfig().module_path, rank=4, alpha=8.0)
    lora = qwix.apply_lora_to_model(base, provider, rngs=nnx.Rngs(0), **base.get_model_input())
    randomize(lora, seed=5, variables=nnx.LoRAParam)
    prompts = random_prompts(LENGTHS[:5], seed=6)
    oracle = StaticSampler(lora, StandInTokenizer(), TINY).generate(prompts)
    sampler = engine(lora)
    assert type(nnx.merge(sampler._graphdef, sampler._state).embedder) is RawBitsEmbedder
    assert not mismatches(sampler.generate(prompts, max_in_flight=3), oracle)
    plain = StaticSampler(base, StandInTokenizer(), TINY).generate(prompts)
    assert any(a.tokens != b.tokens for a, b in zip(oracle, plain, strict=True))  # LoRA acts
