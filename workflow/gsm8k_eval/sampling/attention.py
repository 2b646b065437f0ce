"""Gemma 3 attention with a per-row KV-cache cursor (tunix 0.1.7 writes all rows at one cursor).

tunix's `Attention.block` writes the new keys and values of every row at `end_index[0]`, the
first row's cursor. `per_row_block` is the same computation, calling the block's own tunix
submodules (projections, norms; tunix's RoPE and sliding-window helpers), except that row `r`
writes at its own `end_index[r]`. With equal cursors it is bitwise the same as tunix's block.
`per_row_attention(model)` gives the attention modules of one (traced, merged) model the
subclass `PerRowAttention`; tunix's `Attention` class and every other model are untouched, and
the modules' submodules stay the same objects, so qwix LoRA still intercepts the projections.
`check_tunix_attention()` fails loudly if tunix no longer has the members this relies on.
"""

from __future__ import annotations

import inspect
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from tunix.models.gemma3 import model as gemma3
from tunix.utils import sharding_utils

from gsm8k_eval.sampling.raw_bits import from_storage, to_storage


def write_rows(buffer: jax.Array, update: jax.Array, index: jax.Array) -> jax.Array:
    """`buffer` [B, S, ...] with row b's `update` [B, T, ...] written at position `index[b]`.

    `index[b]` must be in range (no wrapping; the engine checks every cursor on the host before
    a segment, see `engine.check_cursors`). `update` is converted to the buffer's storage
    (`raw_bits`: a 16-bit float cache holds raw bits)."""
    update = to_storage(update, buffer.dtype)

    def one(row: jax.Array, new: jax.Array, at: jax.Array) -> jax.Array:
        return jax.lax.dynamic_update_slice(row, new, (at,) + (0,) * (row.ndim - 1))

    return jax.vmap(one)(buffer, update, index)


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
    if cache is None:
        return None, _attend(attn, query, key, value, segment_pos, attn_mask)
    stored_key = write_rows(cache["k"], key, cache["end_index"])
    stored_value = write_rows(cache["v"], value, cache["end_index"])
    key, value = from_storage(stored_key, key.dtype), from_storage(stored_value, value.dtype)
    out = _attend(attn, query, key, value, segment_pos, attn_mask)
    return {"v": stored_value, "k": stored_key, "end_index": cache["end_index"] + x.shape[1]}, out


class PerRowAttention(gemma3.Attention):
    """tunix's Gemma 3 attention whose `block` writes each row at its own cache cursor."""

    block = per_row_block


# What `per_row_block` uses of tunix (attributes of an Attention instance; module names).
ATTENTION_MEMBERS = (
    "use_qkv_einsum",
    "shd_config",
    "_query_norm",
    "_key_norm",
    "head_dim",
    "rope_base_frequency",
    "rope_scale_factor",
    "query_pre_attn_scalar",
    "use_gqa",
    "num_kv_heads",
    "attn_type",
    "sliding_window_size",
    "attn_vec_einsum",
)
MODULE_MEMBERS = ("apply_rope", "create_sliding_window_mask", "K_MASK", "AttentionType")
BLOCK_PARAMETERS = ("self", "x", "segment_pos", "cache", "attn_mask")


def check_tunix_attention(model: Any, module: Any = gemma3) -> None:
    """Raise a RuntimeError naming what is missing if tunix's Gemma 3 attention lacks a member
    `per_row_block` relies on, or if `model` has no tunix Gemma 3 attention module at all."""
    missing = [f"{module.__name__}.{m}" for m in MODULE_MEMBERS if not hasattr(module, m)]
    block = getattr(getattr(module, "Attention", None), "block", None)
    if block is None or tuple(inspect.signature(block).parameters) != BLOCK_PARAMETERS:
        missing.append(f"Attention.block{BLOCK_PARAMETERS}")
    attention = [m for _, m in nnx.iter_modules(model) if type(m).__name__ == "Attention"]
    if not attention:
        missing.append("Attention modules in the model")
    if attention:
        missing += [f"Attention.{m}" for m in ATTENTION_MEMBERS if not hasattr(attention[0], m)]
    if missing:
        raise RuntimeError(
            "unsupported tunix version or model: the per-row KV-cache attention needs "
            + ", ".join(missing)
        )


def per_row_attention(model: Any) -> Any:
    """`model` with its Gemma 3 attention modules switched to `PerRowAttention` (in place; call
    it on a model merged inside the traced function, never on the caller's model)."""
    switched = 0
    for _, module in nnx.iter_modules(model):
        if type(module) is gemma3.Attention:
            module.__class__ = PerRowAttention
            switched += 1
    if not switched:
        raise RuntimeError("no tunix Gemma 3 attention module to give a per-row cache cursor")
    return model
