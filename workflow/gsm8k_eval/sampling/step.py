"""The model step on a fixed layout, shared by the static sampler and the engine: padding, the
KV cache, the float32 head, greedy choice and the batched prefill (calls of a fixed row count,
each row's K/V scattered into its own slot), the plan of a static chunk and the static decode
loop. Nothing here depends on the batch."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gsm8k_eval.sampling.embedder import RawBitsEmbedder, embedding_table
from gsm8k_eval.sampling.raw_bits import storage_dtype, to_storage
from gsm8k_eval.sampling.types import (
    Cache,
    Layout,
    SamplerConfig,
    bucket_for,
    next_power_of_two,
)


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
    tokens = left_pad([*prompts, *[[]] * (rows - len(prompts))], bucket, config.pad_id)
    index = np.full(rows, dummy, np.int32)
    index[: len(slots)] = slots
    return tokens, index


def left_pad(prompts: Sequence[Sequence[int]], length: int, pad_id: int) -> np.ndarray:
    """Prompts as int32 rows of `length`, left-padded with `pad_id`."""
    out = np.full((len(prompts), length), pad_id, dtype=np.int32)
    for i, prompt in enumerate(prompts):
        if prompt:
            out[i, length - len(prompt) :] = prompt
    return out


def cache_spec(model: nnx.Module) -> tuple[int, int, int, jnp.dtype]:
    """(num_layers, num_kv_heads, head_dim, dtype) of a tunix decoder's KV cache."""
    cfg = model.config
    embedder = getattr(model, "embedder", None)
    table = getattr(embedder, "input_embedding", None)
    if isinstance(embedder, RawBitsEmbedder):  # the engine's: the table holds raw bits
        dtype = embedder.value_dtype
    elif table is not None:
        dtype = table.value.dtype
    else:
        dtype = jax.tree.leaves(nnx.state(model, nnx.Param))[0].dtype
    return cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, dtype


def empty_cache(model: nnx.Module, rows: int, size: int, raw_bits: bool = False) -> Cache:
    """A zeroed decode KV cache of `rows` rows and `size` positions per layer; with `raw_bits`
    (the engine's), a 16-bit float model's cache holds uint16 bit patterns (module `raw_bits`).
    The per-row attention, the prefill scatter and the K/V copy handle both; tunix's own block,
    which the static oracle decodes with, needs the model's dtype."""
    layers, heads, head_dim, dtype = cache_spec(model)
    shape = (rows, size, heads, head_dim)
    dtype = storage_dtype(dtype) if raw_bits else dtype
    return {
        f"layer_{i}": {
            "k": jnp.zeros(shape, dtype),
            "v": jnp.zeros(shape, dtype),
            "end_index": jnp.zeros((rows,), jnp.int32),
        }
        for i in range(layers)
    }


def supports_hidden_states(model: nnx.Module) -> bool:
    """Whether the model can return hidden states and has a tied embedding (the float32 head)."""
    try:
        params = inspect.signature(model.__call__).parameters
    except (TypeError, ValueError):
        return False
    table = getattr(getattr(model, "embedder", None), "input_embedding", None)
    return "output_hidden_states" in params and table is not None


def last_logits(model: nnx.Module, tokens, positions, cache, mask, use_hidden: bool, head):
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
        head = embedding_table(model).T
    return jnp.dot(hidden, head, preferred_element_type=jnp.float32).astype(jnp.float32), cache


def transposed_head(model: nnx.Module, layout: Any) -> jax.Array | None:
    """The head as a [D, V] copy when `layout.transposed_head` asks (None: only for bfloat16)."""
    table = model.embedder.input_embedding.value
    wanted = layout.transposed_head
    if wanted is None:
        wanted = table.dtype == jnp.bfloat16
    return jnp.asarray(table.T) if wanted else None


def greedy(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Each row's argmax token and its float32 logit."""
    token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return token, jnp.take_along_axis(logits, token[:, None], axis=-1)[:, 0]


def prefill_rows(model: nnx.Module, tokens, layers, pad_id: int, hidden: bool, head):
    """The float32 last-position logits ([P, V]) of left-padded `tokens` [P, b], each row on its
    own, and their K/V (one [P, b, ...] cache per layer of `layers`, the decode cache)."""
    rows, length = tokens.shape
    valid = tokens != pad_id
    positions = jnp.maximum(jnp.cumsum(valid, axis=-1) - 1, 0)
    causal = jnp.tril(jnp.ones((length, length), dtype=jnp.bool_))
    mask = valid[:, None, :] & causal[None]
    dtype = cache_spec(model)[3]  # tunix's own block writes the prompt: the model's dtype
    small = {
        name: {
            "k": jnp.zeros((rows, length, *layer["k"].shape[2:]), dtype),
            "v": jnp.zeros((rows, length, *layer["v"].shape[2:]), dtype),
            "end_index": jnp.zeros((rows,), jnp.int32),
        }
        for name, layer in layers.items()
    }
    return last_logits(model, tokens, positions, small, mask, hidden, head)


def scatter_rows(cache: Cache, small: Cache, slots, region: int) -> Cache:
    """Row i of `small` (K/V of length b) into decode-cache slot `slots[i]`, ending at cache
    index `region`, the rest of that slot zeroed; out-of-range slot indices are dropped."""
    length = next(iter(small.values()))["k"].shape[1]
    size = next(iter(cache.values()))["k"].shape[1]
    pad = ((0, 0), (region - length, size - region), (0, 0), (0, 0))

    def scatter(buffer: jax.Array, new: jax.Array) -> jax.Array:
        return buffer.at[slots].set(jnp.pad(to_storage(new, buffer.dtype), pad), mode="drop")

    return {
        name: {
            "k": scatter(layer["k"], small[name]["k"]),
            "v": scatter(layer["v"], small[name]["v"]),
            "end_index": layer["end_index"],
        }
        for name, layer in cache.items()
    }


def copy_prompt_rows(cache: Cache, sources, slots, region: int) -> Cache:
    """Slot `sources[i]`'s prompt K/V (cache indices below `region`) into slot `slots[i]`, the
    rest of that slot zeroed: what `scatter_rows` wrote there for the same prompt (decoding
    writes at `region` and after only). Reads happen before writes; out-of-range slot indices
    are dropped."""
    size = next(iter(cache.values()))["k"].shape[1]
    prompt = (jnp.arange(size) < region)[None, :, None, None]

    def copy(buffer: jax.Array) -> jax.Array:
        rows = jnp.where(prompt, buffer[sources], jnp.zeros((), buffer.dtype))
        return buffer.at[slots].set(rows, mode="drop")

    return {
        name: {"k": copy(layer["k"]), "v": copy(layer["v"]), "end_index": layer["end_index"]}
        for name, layer in cache.items()
    }


def prefill(
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
    logits, small = prefill_rows(model, tokens, cache, pad_id, hidden, head)
    token, logit = greedy(logits) if keys is None else sampling.choose(logits, keys, 0)
    return scatter_rows(cache, small, slots, region), token, logit


@dataclass(frozen=True)
class Plan:
    """The shapes of one chunk of a batch."""

    rows: int  # decode rows (chunk padded with dummy rows)
    prompt_region: int  # cache index where every prompt ends
    buckets: tuple[int, ...]  # prefill length of each real row
    groups: tuple[tuple[int, ...], ...]  # real-row indices prefilled together (one bucket)
    prefill_rows: int  # rows of every prefill call (a group padded with dummy rows)


def plan_chunk(lengths: Sequence[int], config: SamplerConfig, layout: Layout) -> Plan:
    """The shapes of one chunk of a static batch (batch dependent without `batch_invariant`)."""
    n = len(lengths)
    if not layout.batch_invariant:
        bucket = next_power_of_two(max(lengths))
        return Plan(n, bucket, (bucket,) * n, (tuple(range(n)),), n)
    buckets = tuple(bucket_for(k, layout.bucket_step, config.max_prompt_length) for k in lengths)
    groups = prefill_groups(buckets, layout.prefill_rows)
    return Plan(layout.decode_rows, config.max_prompt_length, buckets, groups, layout.prefill_rows)


@dataclass
class DecodeState:
    """Loop carry of the decode while_loop."""

    step: jax.Array
    last: jax.Array  # [R] last token
    done: jax.Array  # [R]
    tokens: jax.Array  # [R, G]
    logits: jax.Array  # [R, G] float32
    cache: Cache


jax.tree_util.register_dataclass(
    DecodeState, data_fields=["step", "last", "done", "tokens", "logits", "cache"], meta_fields=[]
)


def decode_loop(
    graphdef, state, head, cache, first, first_logit, done, lengths, eos, region, steps, hidden
):
    """Greedy decode loop: step 0 holds the prefill token; stops when all rows are done."""
    rows = first.shape[0]
    size = next(iter(cache.values()))["k"].shape[1]
    start = region - lengths  # first valid cache index of each row
    key_index = jnp.arange(size)[None, :]

    def body(s: DecodeState) -> DecodeState:
        model = nnx.merge(graphdef, state)
        write = region + s.step - 1
        cache = {
            name: {**layer, "end_index": jnp.full((rows,), write, jnp.int32)}
            for name, layer in s.cache.items()
        }
        positions = (lengths + s.step - 1)[:, None]
        mask = ((key_index >= start[:, None]) & (key_index <= write))[:, None, :]
        logits, cache = last_logits(model, s.last[:, None], positions, cache, mask, hidden, head)
        token, logit = greedy(logits)
        token = jnp.where(s.done, jnp.int32(0), token)
        return DecodeState(
            step=s.step + 1,
            last=token,
            done=s.done | jnp.isin(token, eos),
            tokens=s.tokens.at[:, s.step].set(token),
            logits=s.logits.at[:, s.step].set(jnp.where(s.done, 0.0, logit)),
            cache=cache,
        )

    def cond(s: DecodeState) -> jax.Array:
        return (s.step < steps) & ~jnp.all(s.done)

    init = DecodeState(
        step=jnp.int32(1),
        last=first,
        done=done | jnp.isin(first, eos),
        tokens=jnp.zeros((rows, steps), jnp.int32).at[:, 0].set(first),
        logits=jnp.zeros((rows, steps), jnp.float32).at[:, 0].set(first_logit),
        cache=cache,
    )
    final = jax.lax.while_loop(cond, body, init)
    return final.tokens, final.logits, final.step
