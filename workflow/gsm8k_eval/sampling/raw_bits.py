"""The decode KV cache of a 16-bit float model is stored as raw bits (uint16).

XLA:CPU computes a bfloat16 scatter (and dynamic-update-slice) in float32, converting the
whole buffer there and back at every write (for the 270M in bfloat16, 36 caches
converted twice per decode step, a fifth of the step). Writes that only move values give the same
bits on uint16, which XLA:CPU writes in place; attention reads the cache through a bitcast to the
model's dtype. The values, and so every logit, are unchanged. On a GPU (bfloat16 writes native)
the bitcasts should fuse away; not measured there yet.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def is_half(dtype: jnp.dtype) -> bool:
    """Whether `dtype` is a 16-bit float (bfloat16, float16)."""
    return jnp.dtype(dtype).itemsize == 2 and jnp.issubdtype(dtype, jnp.floating)


def storage_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """The dtype a KV cache of `dtype` values is stored in: uint16 for 16-bit floats."""
    return jnp.dtype(jnp.uint16) if is_half(dtype) else jnp.dtype(dtype)


def to_storage(x: jax.Array, storage: jnp.dtype) -> jax.Array:
    """`x` (the model's dtype) as a cache of dtype `storage` holds it: its raw bits in a uint16
    cache, itself otherwise (the cache write rejects a dtype that differs)."""
    if jnp.dtype(storage) != jnp.uint16:
        return x
    if not is_half(x.dtype):
        raise TypeError(f"a uint16 (raw-bits) cache holds 16-bit floats, got {x.dtype}")
    return jax.lax.bitcast_convert_type(x, jnp.uint16)


def from_storage(x: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """Cache contents `x` as values of the model's `dtype`."""
    if x.dtype == jnp.uint16 and is_half(dtype):
        return jax.lax.bitcast_convert_type(x, dtype)
    return x
