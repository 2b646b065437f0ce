"""How the prompts admitted together become prefill calls, and the shared prefill (issue 24).

Separate (`separate_calls`, greedy and the oracle): every prompt is one row of a call of
`Layout.prefill_rows` rows (prompts of one length bucket together), its K/V scattered into its
own slot, its first token drawn from its own row.

Shared (`shared_calls` + `prefill_shared`, sampled runs): prompts whose token ids are identical
(the n samples of a question, admitted together) get one row. A call with such a row has
`prefill_rows` rows of distinct prompts and `Layout.decode_rows` destinations (every prompt of
the admission can be one, as at most `decode_rows` are admitted at once): destination d reads
row `sources[d]`, whose K/V go into slot `slots[d]` and whose float32 logits give d's first
token, drawn with d's own key as step 0. A row's K/V and logits do not depend on the other rows
of its call (the premise of the batched prefill), and the gather copies them exactly, so every
slot's K/V, first token and logit are bitwise those of prefilling each prompt separately. A call
whose rows each serve one prompt is a separate call (its draw costs `prefill_rows` rows, not
`decode_rows`). Shapes are fixed by the layout: at most two programs per bucket.

Samples admitted later: a destination may draw without a slot (its slot index out of range,
dropped), so the first tokens of a question's samples still waiting are drawn at its first
prefill; when one is admitted, the scheduler copies the prompt K/V of a slot that holds the same
prompt (`step.copy_prompt_rows`: decoding never writes below the prompt's end) instead of
prefilling again. Waiting samples are drawn only into the call's free destinations;
one that got none, or whose prompt no slot holds any more, is prefilled again (same bits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flax import nnx

from gsm8k_eval.sampling.step import (
    prefill_groups,
    prefill_inputs,
    prefill_rows,
    scatter_rows,
)
from gsm8k_eval.sampling.types import Cache, Layout, SamplerConfig, bucket_for


@dataclass(frozen=True)
class PrefillCall:
    """One prefill call: its bucket, its inputs after (state, head, cache), keyword inputs, the
    prompt index (in the admission) of each output row, in order (dummy rows follow), and
    whether it is a `prefill_shared` call (else `step.prefill`)."""

    bucket: int
    inputs: tuple[np.ndarray, ...]
    members: tuple[int, ...]
    kwargs: dict[str, np.ndarray] = field(default_factory=dict)
    shared: bool = False


def _key_rows(keys: np.ndarray, members: Sequence[int], rows: int) -> np.ndarray:
    """Key data of `rows` outputs ([rows, 2]; dummy rows get zeros, their draws are unused)."""
    out = np.zeros((rows, 2), np.uint32)
    out[: len(members)] = keys[list(members)]
    return out


def _buckets(prompts: Sequence[Sequence[int]], config: SamplerConfig, layout: Layout) -> list[int]:
    return [bucket_for(len(p), layout.bucket_step, config.max_prompt_length) for p in prompts]


def _separate_call(
    prompts: Sequence[list[int]],
    slots: Sequence[int],
    keys: np.ndarray | None,
    members: tuple[int, ...],
    bucket: int,
    config: SamplerConfig,
    layout: Layout,
) -> PrefillCall:
    """The `step.prefill` call of `members` (prompts of one bucket), each its own row."""
    inputs = prefill_inputs(
        [prompts[i] for i in members],
        [slots[i] for i in members],
        layout.prefill_rows,
        bucket,
        config,
        layout.decode_rows,
    )
    extra = {} if keys is None else {"keys": _key_rows(keys, members, layout.prefill_rows)}
    return PrefillCall(bucket, inputs, members, extra)


def separate_calls(
    prompts: Sequence[list[int]],
    slots: Sequence[int],
    keys: np.ndarray | None,
    config: SamplerConfig,
    layout: Layout,
) -> list[PrefillCall]:
    """Each prompt its own row (`step.prefill`'s inputs: tokens, slot indices[, keys])."""
    buckets = _buckets(prompts, config, layout)
    return [
        _separate_call(prompts, slots, keys, group, buckets[group[0]], config, layout)
        for group in prefill_groups(buckets, layout.prefill_rows)
    ]


def distinct_rows(prompts: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    """(firsts, owner): the index of the first prompt of each distinct token sequence, and for
    every prompt the position in `firsts` of the prompt it equals."""
    seen: dict[tuple[int, ...], int] = {}
    firsts, owner = [], []
    for i, prompt in enumerate(prompts):
        position = seen.setdefault(tuple(prompt), len(firsts))
        if position == len(firsts):
            firsts.append(i)
        owner.append(position)
    return firsts, owner


def shared_calls(
    prompts: Sequence[list[int]],
    slots: Sequence[int | None],
    keys: np.ndarray,
    config: SamplerConfig,
    layout: Layout,
) -> list[PrefillCall]:
    """One row per distinct prompt: identical prompts share their row (`prefill_shared`'s
    inputs: tokens [prefill_rows, bucket], sources, slots and keys [decode_rows]); a call
    without a shared row is a separate call (`separate_calls`'). A slot of None draws a first
    token without taking a slot (a sample admitted later copies its sibling's K/V); such a
    prompt needs an identical one with a slot."""
    dests = layout.decode_rows
    if len(prompts) > dests:
        raise ValueError(f"an admission holds at most decode_rows={dests} prompts")
    firsts, owner = distinct_rows(prompts)
    buckets = _buckets([prompts[i] for i in firsts], config, layout)
    calls = []
    for group in prefill_groups(buckets, layout.prefill_rows):
        members = tuple(i for i, o in enumerate(owner) if o in group)
        bucket = buckets[group[0]]
        if len(members) == len(group):  # no row serves two prompts
            if any(slots[i] is None for i in members):
                raise ValueError("a prompt without a slot needs an identical one with a slot")
            calls.append(_separate_call(prompts, slots, keys, members, bucket, config, layout))
            continue
        tokens, _ = prefill_inputs(
            [prompts[firsts[g]] for g in group],
            list(group),
            layout.prefill_rows,
            bucket,
            config,
            dests,
        )
        row = {g: r for r, g in enumerate(group)}
        sources = np.zeros(dests, np.int32)
        sources[: len(members)] = [row[owner[i]] for i in members]
        index = np.full(dests, dests, np.int32)  # out of range: dropped
        index[: len(members)] = [dests if slots[i] is None else slots[i] for i in members]
        inputs = (tokens, sources, index, _key_rows(keys, members, dests))
        calls.append(PrefillCall(bucket, inputs, members, shared=True))
    return calls


def prefill_shared(
    graphdef,
    state,
    head,
    cache: Cache,
    tokens,
    sources,
    slots,
    keys,
    region: int,
    pad_id: int,
    hidden: bool,
    sampling: Any,
):
    """Prefill `tokens` [P, b] (each row on its own) and fan the rows out: destination d gets
    row `sources[d]`'s K/V in slot `slots[d]` (out of range: dropped), ending at cache index
    `region` with the rest of the slot zeroed, and its first token and float32 logit drawn by
    `sampling` with key `keys[d]` as step 0 from that row's logits. Returns the cache, tokens
    and logits ([D])."""
    model = nnx.merge(graphdef, state)
    logits, small = prefill_rows(model, tokens, cache, pad_id, hidden, head)
    token, logit = sampling.choose(logits[sources], keys, 0)
    fanned = {name: {"k": kv["k"][sources], "v": kv["v"][sources]} for name, kv in small.items()}
    return scatter_rows(cache, fanned, slots, region), token, logit


def rows_saved(prompts: Sequence[Sequence[int]]) -> int:
    """Prefill rows that sharing saves: prompts minus distinct prompts."""
    return len(prompts) - len(distinct_rows(prompts)[0])
