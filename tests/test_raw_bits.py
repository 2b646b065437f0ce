"""A bfloat16 model's KV cache is stored as raw bits (uint16): the same values, written in place.

XLA:CPU computes a bfloat16 scatter in float32, converting the whole cache there and back at
every write; the uint16 view is written in place (`gsm8k_eval.sampling.raw_bits`). The values
must be exactly those a bfloat16 cache would hold, and the decode program must not convert any
cache back from float32 (the cost this removes).
"""

from __future__ import annotations

import re

import jax.numpy as jnp
import numpy as np
import pytest
from test_engine import engine
from test_sampler import LENGTHS, random_prompts, tiny_model

from gsm8k_eval.sampling.attention import write_rows
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
