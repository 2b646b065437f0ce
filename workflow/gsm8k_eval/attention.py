"""Gemma 3 attention with a per-row KV-cache cursor (tunix 0.1.7 writes all rows at one cursor).

tunix's `Attention.block` writes the new keys and values of every row at `end_index[0]`, the
first row's cursor. `per_row_block` is the same computation, calling the block's own tunix
submodules (projections, norms; tunix's RoPE and sliding-window helpers), except that row `r`
writes at its own `end_index[r]`. With equal cursors it is bitwise the same as tunix's block.
`per_row_cache_update()` installs it while a function is traced; the model is otherwise
untouched, so qwix LoRA still intercepts its projections.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import jax.numpy as jnp
from tunix.models.gemma3 import model as gemma3
from tunix.utils import sharding_utils


def write_rows(buffer: jax.Array, update: jax.Array, index: jax.Array) -> jax.Array:
    """`buffer` [B, S, ...] with row b's `update` [B, T, ...] written at position `index[b]`."""

    def one(row: jax.Array, new: jax.Array, at: jax.Array) -> jax.Array:
        return jax.lax.dynamic_update_slice(row, new, (at,) + (0,) * (row.ndim - 1))

    return jax.vmap(one)(buffer, update, index % buffer.shape[1])


def _project(attn: gemma3.Attention, x: jax.Array, positions: jax.Array):
    """Queries (scaled), keys and values of `x` with RoPE, as tunix computes them."""
    if attn.use_qkv_einsum:
        query, key, value = attn.qkv_einsum(x)
    else:
        query = attn.q_einsum(x)
        key, value = attn.kv_einsum(x)
    query = sharding_utils.shard(query, attn.shd_config.act_btnh)
    key = sharding_utils.shard(key, attn.shd_config.act_btnh)
    value = sharding_utils.shard(value, attn.shd_config.act_btnh)
    query = attn._query_norm(query)
    key = attn._key_norm(key)
    rope = dict(
        head_dim=attn.head_dim,
        base_frequency=attn.rope_base_frequency,
        scale_factor=attn.rope_scale_factor,
    )
    query = gemma3.apply_rope(query, positions, **rope)
    key = gemma3.apply_rope(key, positions, **rope)
    return query * attn.query_pre_attn_scalar, key, value


def _attend(attn: gemma3.Attention, query, key, value, positions, mask) -> jax.Array:
    """Masked softmax attention and output projection, as tunix computes them."""
    if attn.use_gqa:
        b, t, kg, h = query.shape
        query = query.reshape((b, t, attn.num_kv_heads, kg // attn.num_kv_heads, h))
        logits = jnp.einsum("BTKGH,BSKH->BTKGS", query, key)
        b, t, k, g, s = logits.shape
        logits = logits.reshape((b, t, k * g, s))
    else:
        logits = jnp.einsum("BTNH,BSNH->BTNS", query, key)
    if attn.attn_type == gemma3.AttentionType.LOCAL_SLIDING:
        if positions.shape[1] == 1:
            window = gemma3.create_sliding_window_mask(mask, attn.sliding_window_size)
        else:
            ones = jnp.ones_like(mask)
            size = attn.sliding_window_size
            window = jnp.triu(ones, -size + 1) * jnp.tril(ones, size - 1)
        mask = window * mask
    logits = jnp.where(jnp.expand_dims(mask, -2), logits, gemma3.K_MASK)
    probs = jax.nn.softmax(logits, axis=-1).astype(key.dtype)
    if attn.use_gqa:
        b, t, kg, h = probs.shape
        probs = probs.reshape((b, t, attn.num_kv_heads, kg // attn.num_kv_heads, h))
        encoded = jnp.einsum("BTKGS,BSKH->BTKGH", probs, value)
        b, t, k, g, h = encoded.shape
        encoded = encoded.reshape((b, t, k * g, h))
    else:
        encoded = jnp.einsum("BTNS,BSNH->BTNH", probs, value)
    out = attn.attn_vec_einsum(encoded)
    return sharding_utils.shard(out, attn.shd_config.act_btd)


def per_row_block(attn: gemma3.Attention, x, segment_pos, cache, attn_mask):
    """tunix's `Attention.block`, each row writing its K/V at its own `cache['end_index']`."""
    query, key, value = _project(attn, x, segment_pos)
    if cache is not None:
        key = write_rows(cache["k"], key, cache["end_index"])
        value = write_rows(cache["v"], value, cache["end_index"])
    out = _attend(attn, query, key, value, segment_pos, attn_mask)
    if cache is None:
        return None, out
    return {"v": value, "k": key, "end_index": cache["end_index"] + x.shape[1]}, out


@contextlib.contextmanager
def per_row_cache_update() -> Iterator[None]:
    """Within this block, tunix Gemma 3 attention uses `per_row_block` (use while tracing)."""
    original = gemma3.Attention.block
    gemma3.Attention.block = per_row_block
    try:
        yield
    finally:
        gemma3.Attention.block = original
