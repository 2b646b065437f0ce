"""The engine's state: a fixed number of physical slots (`Layout.decode_rows`), one KV-cache row
each, and per slot the last token, tokens generated so far (its own cache cursor), prompt
length, token budget, active flag and, when sampling, its request's key data. Shared by the
decode segment (`engine`) and the scheduler (`scheduler`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np


@dataclass
class Slots:
    """Per-slot decode state ([R] arrays), carried between segments."""

    last: Any  # int32: the token to feed next
    step: Any  # int32: tokens generated so far (the cache cursor is region + step - 1)
    length: Any  # int32: prompt length (0: empty slot)
    limit: Any  # int32: token budget of the row
    active: Any  # bool
    key: Any = None  # uint32 [R, 2]: each request's key data (sampled decoding); None: greedy

    @classmethod
    def empty(cls, rows: int, sampled: bool = False) -> Slots:
        """Host-side state of `rows` empty slots (they decode a dummy token, never read)."""
        return cls(
            last=np.zeros(rows, np.int32),
            step=np.ones(rows, np.int32),
            length=np.zeros(rows, np.int32),
            limit=np.ones(rows, np.int32),
            active=np.zeros(rows, np.bool_),
            key=np.zeros((rows, 2), np.uint32) if sampled else None,
        )

    def to_host(self) -> Slots:
        fields = (self.last, self.step, self.length, self.limit, self.active, self.key)
        return Slots(*(None if x is None else np.array(x) for x in fields))


jax.tree_util.register_dataclass(
    Slots, data_fields=["last", "step", "length", "limit", "active", "key"], meta_fields=[]
)

# A dispatched decode segment's device outputs (slots, tokens, logits, executed steps), read
# back by the engine's `_finish_segment`.
SegmentOutputs = tuple[Any, ...]


def check_cursors(slots: Slots, region: int, size: int) -> None:
    """Raise an IndexError unless every cache write of the next segment stays inside the cache
    (an idle slot rewrites its cursor; an active one advances at most to its budget).

    The cache write itself does not wrap (`attention.write_rows`), but XLA clamps an index out
    of range, which would silently overwrite another position: this check comes first."""
    step, limit = np.asarray(slots.step), np.asarray(slots.limit)
    active = np.asarray(slots.active)
    last = region + np.where(active, np.maximum(limit, step), step) - 1
    bad = np.flatnonzero((step < 1) | (last >= size))
    if bad.size:
        raise IndexError(
            f"cache cursor out of range in slots {bad.tolist()}: steps {step[bad].tolist()}, "
            f"budgets {limit[bad].tolist()}, region {region}, cache size {size}"
        )
