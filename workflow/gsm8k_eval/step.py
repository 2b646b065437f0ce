"""The model step on a fixed layout, shared by the static sampler and the engine: padding, the
KV cache, the float32 head, greedy choice and the batched prefill (calls of a fixed row count,
each row's K/V scattered into its own slot). Nothing here depends on the batch."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Cache = dict[str, dict[str, jax.Array]]


def prefill_groups(buckets: Sequence[int], rows: int) -> tuple[tuple[int, ...], ...]:
    """Indices of `buckets` prefilled together: same bucket, at most `rows` per call, in order."""
    by_bucket: dict[int, list[int]] = {}
    for i, bucket in enumerate(buckets):
        by_bucket.setdefault(bucket, []).append(i)
    return tuple(
        tuple(members[k : k + rows])
        for members in by_bucket.values()
        for k in range(0, len(members), rows)
    )


def prefill_inputs(
    prompts: Sequence[Sequence[int]], slots: Sequence[int], rows: int, bucket: int, config, dummy
) -> tuple[np.ndarray, np.ndarray]:
    """Tokens [rows, bucket] and slot indices [rows] of one prefill call; dummy rows (all pad)
    get slot index `dummy`, out of the cache's range, so their K/V are dropped."""
    if not 0 < len(prompts) <= rows or len(slots) != len(prompts):
        raise ValueError(f"a prefill call takes 1..{rows} prompts, got {len(prompts)}")
    tokens = _left_pad([*prompts, *[[]] * (rows - len(prompts))], bucket, config.pad_id)
    index = np.full(rows, dummy, np.int32)
    index[: len(slots)] = slots
    return tokens, index


def _left_pad(prompts: Sequence[Sequence[int]], length: int, pad_id: int) -> np.ndarray:
    out = np.full((len(prompts), length), pad_id, dtype=np.int32)
    for i, prompt in enumerate(prompts):
        if prompt:
            out[i, length - len(prompt) :] = prompt
    return out


def _cache_spec(model: nnx.Module) -> tuple[int, int, int, jnp.dtype]:
    """(num_layers, num_kv_heads, head_dim, dtype) of a tunix decoder's KV cache."""
    cfg = model.config
    embedder = getattr(model, "embedder", None)
    table = getattr(embedder, "input_embedding", None)
    if table is not None:
        dtype = table.value.dtype
    else:
        dtype = jax.tree.leaves(nnx.state(model, nnx.Param))[0].dtype
    return cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, dtype


def _empty_cache(model: nnx.Module, rows: int, size: int) -> Cache:
    layers, heads, head_dim, dtype = _cache_spec(model)
    shape = (rows, size, heads, head_dim)
    return {
        f"layer_{i}": {
            "k": jnp.zeros(shape, dtype),
            "v": jnp.zeros(shape, dtype),
            "end_index": jnp.zeros((rows,), jnp.int32),
        }
        for i in range(layers)
    }


def _supports_hidden_states(model: nnx.Module) -> bool:
    try:
        params = inspect.signature(model.__call__).parameters
    except (TypeError, ValueError):
        return False
    table = getattr(getattr(model, "embedder", None), "input_embedding", None)
    return "output_hidden_states" in params and table is not None


def _last_logits(model: nnx.Module, tokens, positions, cache, mask, use_hidden: bool, head):
    """Float32 logits of the last position ([B, V]) and the updated cache.

    With `use_hidden`, the model's own [B, T, V] logits are unused, so XLA drops them, and the
    last hidden state goes through the tied embedding (or `head`, its [D, V] transposed copy)
    with float32 accumulation. The call goes through `model.__call__`, so qwix LoRA interception
    still applies.
    """
    if not use_hidden:
        logits, cache = model(tokens, positions, cache, mask)
        return logits[:, -1].astype(jnp.float32), cache
    _, cache = model(tokens, positions, cache, mask, output_hidden_states=True)
    hidden = nnx.pop(model, nnx.Intermediate)["all_hidden_states"].value[-1][:, -1]
    if head is None:
        head = model.embedder.input_embedding.value.T
    return jnp.dot(hidden, head, preferred_element_type=jnp.float32).astype(jnp.float32), cache


def _transposed_head(model: nnx.Module, layout: Any) -> jax.Array | None:
    """The head as a [D, V] copy when `layout.transposed_head` asks (None: only for bfloat16)."""
    table = model.embedder.input_embedding.value
    wanted = layout.transposed_head
    if wanted is None:
        wanted = table.dtype == jnp.bfloat16
    return jnp.asarray(table.T) if wanted else None


def _greedy(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return token, jnp.take_along_axis(logits, token[:, None], axis=-1)[:, 0]


def _prefill(
    graphdef,
    state,
    head,
    cache: Cache,
    tokens,
    slots,
    region: int,
    pad_id: int,
    hidden: bool,
    keys=None,
    sampling=None,
):
    """Prefill `tokens` [P, b], each row on its own, and scatter row i's K/V into decode-cache
    slot `slots[i]`, ending at cache index `region`; the rest of that slot is zeroed, so nothing
    of a previous occupant survives. Rows whose slot index is out of range are dropped (dummy
    rows). Returns the cache and each row's first token and float32 logit ([P]): greedy, or,
    with `keys` (uint32 [P, 2]), drawn by `sampling` (a `draw.DrawConfig`) as decode step 0."""
    model = nnx.merge(graphdef, state)
    rows, length = tokens.shape
    valid = tokens != pad_id
    positions = jnp.maximum(jnp.cumsum(valid, axis=-1) - 1, 0)
    causal = jnp.tril(jnp.ones((length, length), dtype=jnp.bool_))
    mask = valid[:, None, :] & causal[None]
    small = {
        name: {
            "k": jnp.zeros((rows, length, *layer["k"].shape[2:]), layer["k"].dtype),
            "v": jnp.zeros((rows, length, *layer["v"].shape[2:]), layer["v"].dtype),
            "end_index": jnp.zeros((rows,), jnp.int32),
        }
        for name, layer in cache.items()
    }
    logits, small = _last_logits(model, tokens, positions, small, mask, hidden, head)
    token, logit = _greedy(logits) if keys is None else sampling.choose(logits, keys, 0)
    size = next(iter(cache.values()))["k"].shape[1]
    pad = ((0, 0), (region - length, size - region), (0, 0), (0, 0))

    def scatter(buffer: jax.Array, new: jax.Array) -> jax.Array:
        return buffer.at[slots].set(jnp.pad(new, pad), mode="drop")

    cache = {
        name: {
            "k": scatter(layer["k"], small[name]["k"]),
            "v": scatter(layer["v"], small[name]["v"]),
            "end_index": layer["end_index"],
        }
        for name, layer in cache.items()
    }
    return cache, token, logit
