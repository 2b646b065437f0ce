"""The engine's copy of a bfloat16 model holds its embedding table as raw bits (uint16).

XLA:CPU computes a bfloat16 gather in float32: every compiled decode segment converts the whole
table (262,144 x 640 for the 270M) to float32 once, for the lookup of one token per row (about a
tenth of a 270M bfloat16 step on a 2-core CPU). A gather of the table's bits moves the same
values; `RawBitsEmbedder.encode` then views them as the model's dtype and scales them exactly as
tunix's `Embedder.encode` does, so the embeddings, and every logit, are unchanged.

`engine_split(model, separate_head)` gives the engine a split model whose embedder is a
`RawBitsEmbedder` holding the bits; the caller's model is untouched. It applies only where the
table is a 16-bit float on a CPU and feeds nothing but the lookup (the head is its own
transposed copy). On a GPU the engine keeps the table as it is: a gather there should move
bfloat16 as it is (not measured: no GPU was lent to this work), and the copy would cost device
memory. tests/test_raw_bits.py checks `encode` and `decode` against tunix's own, bit for bit.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from tunix.models.gemma3 import model as gemma3
from tunix.utils import sharding_utils

from gsm8k_eval.sampling.raw_bits import from_storage, is_half, storage_dtype, to_storage


class RawBitsEmbedder(gemma3.Embedder):
    """tunix's Gemma 3 embedder whose `input_embedding` holds the raw bits of a `value_dtype`
    table (set by `engine_split`)."""

    value_dtype: jnp.dtype

    def table(self) -> jax.Array:
        """The table as values of the model's dtype."""
        return from_storage(self.input_embedding.value, self.value_dtype)

    @jax.named_scope("embedder_encode")
    def encode(self, x: jax.Array) -> jax.Array:
        """tunix's `Embedder.encode`, gathering bits: the same embeddings."""
        x = from_storage(self.input_embedding.value[(x,)], self.value_dtype)
        x *= jnp.sqrt(x.shape[-1]).astype(x.dtype)
        return sharding_utils.shard(x, self.shd_config.act_btd)

    @jax.named_scope("embedder_decode")
    def decode(self, x: jax.Array) -> jax.Array:
        """tunix's `Embedder.decode` on the table's values."""
        return jnp.dot(x, self.table().T)


def embedding_table(model: nnx.Module) -> jax.Array:
    """The tied embedding table of a tunix model as values, whether or not it holds raw bits."""
    embedder = model.embedder
    if isinstance(embedder, RawBitsEmbedder):
        return embedder.table()
    return embedder.input_embedding.value


def gathers_in_float32(table: Any) -> bool:
    """Whether XLA would convert the whole of `table` to float32 for a gather: a 16-bit float
    table on a CPU (seen on XLA:CPU; a GPU is expected to gather bfloat16 as it is)."""
    return is_half(table.dtype) and {d.platform for d in table.devices()} == {"cpu"}


def engine_split(model: nnx.Module, separate_head: bool) -> tuple[nnx.GraphDef, nnx.State]:
    """`nnx.split(model)`, where an embedding table that `gathers_in_float32` is held as raw
    bits by a `RawBitsEmbedder` if `separate_head` (the output head is its own copy of the
    table, see `step.transposed_head`): then the table feeds the token lookup only. Otherwise
    (no separate head, another dtype or device, no tunix Embedder) the plain split. `model` is
    untouched; the bits are a copy of the table (its size again in memory)."""
    embedder = getattr(model, "embedder", None)
    if not separate_head or type(embedder) is not gemma3.Embedder:
        return nnx.split(model)
    values = embedder.input_embedding.value
    if not gathers_in_float32(values):
        return nnx.split(model)
    copy = nnx.clone(model)  # new modules and variables over the same arrays
    copy.embedder.__class__ = RawBitsEmbedder
    copy.embedder.value_dtype = values.dtype
    copy.embedder.input_embedding.value = to_storage(values, storage_dtype(values.dtype))
    return nnx.split(copy)
