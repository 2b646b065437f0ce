"""The engine's scheduler: prompts stream through a fixed set of slots, and each prompt's
generation is yielded as soon as its row ends (completion order).

Between decode segments the host reads the new tokens, ends rows at EOS, a stop sequence or
their token budget, refills the free slots with the next prompts (admission in input order,
at most `in_flight` at once) and dispatches the next segment; only then are the finished
generations yielded, so the caller's work on them (rollout rows, shard files) runs while the
device decodes. When the engine shares prefills (sampled runs), a question's samples not yet
admitted get their first tokens at its prefill and, once admitted, copy the prompt K/V from a
slot that still holds it (`Siblings`). Nothing here runs the model: the engine's
`_prefill_many`, `_copy_many`, `_start_segment` and `_finish_segment` do (see `SlotEngine`).
The engine's running counters (`last_timing`) are kept current while streaming, so a caller
can apportion them between yields (evaluation/shards.py)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from gsm8k_eval.sampling.slots import SegmentOutputs, Slots
from gsm8k_eval.sampling.stops import settle
from gsm8k_eval.sampling.types import Generation, Layout, SamplerConfig

TIMING_KEYS = (
    "prefill_seconds",
    "decode_seconds",
    "compile_seconds",
    "useful_row_steps",
    "executed_row_steps",
    "slot_utilization",
)


class SlotEngine(Protocol):
    """What the scheduler needs from the engine."""

    config: SamplerConfig
    layout: Layout
    tokenizer: Any
    choose_slot: Callable[[list[int]], int]
    last_timing: dict[str, float]
    shares_prefill: bool

    def _prefill_many(
        self, prompts: Sequence[list[int]], slots: Sequence[int | None], keys: Any = None
    ) -> list[tuple[int, float]]: ...

    def _copy_many(self, sources: Sequence[int], slots: Sequence[int]) -> None: ...

    def _start_segment(self, slots: Slots) -> SegmentOutputs: ...

    def _finish_segment(
        self, outputs: SegmentOutputs
    ) -> tuple[Slots, np.ndarray, np.ndarray, int]: ...


@dataclass(frozen=True)
class Requests:
    """Validated prompts with their token budgets, key data (uint32 [N, 2] when sampling, else
    None) and stop sequences."""

    prompts: Sequence[list[int]]
    limits: Sequence[int]
    keys: np.ndarray | None
    stops: tuple[str, ...]


@dataclass
class _Running:
    """A prompt occupying a slot."""

    index: int
    tokens: list[int]
    logits: list[float]
    limit: int
    checked: int = 0  # tokens already known to contain no stop sequence


@dataclass
class Siblings:
    """Requests with identical prompts (a question's samples) across admissions: which
    requests share each prompt, which prompt each slot's cache holds (until the slot is
    refilled: decoding never writes below the prompt's end), which requests were admitted, and
    the first tokens drawn for requests still waiting."""

    by_prompt: dict[tuple[int, ...], list[int]]
    held: dict[int, tuple[int, ...]] = field(default_factory=dict)
    admitted: set[int] = field(default_factory=set)
    ready: dict[int, tuple[int, float]] = field(default_factory=dict)

    @classmethod
    def of(cls, prompts: Sequence[list[int]]) -> Siblings:
        by_prompt: dict[tuple[int, ...], list[int]] = {}
        for index, prompt in enumerate(prompts):
            by_prompt.setdefault(tuple(prompt), []).append(index)
        return cls(by_prompt)

    def holder(self, prompt: tuple[int, ...]) -> int | None:
        """A slot whose cache holds `prompt`'s K/V, if any."""
        return next((slot for slot, held in self.held.items() if held == prompt), None)

    def waiting(self, prompts: Sequence[tuple[int, ...]], room: int) -> list[int]:
        """Up to `room` requests not yet admitted, without a first token, whose prompt is one
        of `prompts` (their first tokens can be drawn at this prefill)."""
        out = []
        for prompt in dict.fromkeys(prompts):
            for index in self.by_prompt[prompt]:
                if index not in self.admitted and index not in self.ready and len(out) < room:
                    out.append(index)
        return out


def new_timing() -> dict[str, float]:
    """The engine's counters at the start of a call (`slot_utilization` 1.0 until a step)."""
    return {**dict.fromkeys(TIMING_KEYS, 0.0), "slot_utilization": 1.0}


def schedule(
    engine: SlotEngine, requests: Requests, in_flight: int
) -> Iterator[tuple[int, Generation]]:
    """(input index, generation) of every request, each as soon as its row ends.

    Each round reads the segment in flight, refills the freed slots and dispatches the next
    segment before handing the finished generations to the caller, so the caller's work
    overlaps the device's."""
    pending = deque(range(len(requests.prompts)))
    running: dict[int, _Running] = {}
    slots = Slots.empty(engine.layout.decode_rows, requests.keys is not None)
    siblings = Siblings.of(requests.prompts) if engine.shares_prefill else None
    segment: SegmentOutputs | None = None  # the decode segment in flight
    while pending or running:
        done = []
        if segment is not None:
            slots, done = _decode(engine, requests, running, slots, segment)
        while pending and len(running) < in_flight:  # again if a prompt ended at its first token
            done += _admit(engine, requests, pending, running, slots, in_flight, siblings)
        segment = engine._start_segment(slots) if running else None
        for index, generation in done:
            _count(engine.last_timing, useful=max(len(generation.tokens) - 1, 0))
            yield index, generation


def _count(timing: dict[str, float], useful: int = 0, executed: int = 0) -> None:
    timing["useful_row_steps"] += float(useful)
    timing["executed_row_steps"] += float(executed)
    steps = timing["executed_row_steps"]
    timing["slot_utilization"] = timing["useful_row_steps"] / steps if steps else 1.0


def _settle(engine: SlotEngine, requests: Requests, run: _Running) -> Generation | None:
    """The row's generation if it has ended, else None (remembering what was checked)."""
    done = settle(
        run.tokens,
        run.logits,
        run.limit,
        engine.config.eos_tokens,
        requests.stops,
        engine.tokenizer.decode,
        run.checked,
    )
    if done is None:
        run.checked = len(run.tokens)
    return done


def _admit(
    engine: SlotEngine,
    requests: Requests,
    pending: deque[int],
    running: dict[int, _Running],
    slots: Slots,
    in_flight: int,
    siblings: Siblings | None = None,
) -> list[tuple[int, Generation]]:
    """Prefill the next prompts into free slots (up to `in_flight` running), or copy a
    sibling's prompt K/V; those that end at their first token come back finished, the others
    occupy their slot."""
    admitted = []
    free = [r for r in range(engine.layout.decode_rows) if r not in running]
    while pending and len(running) + len(admitted) < in_flight:
        slot = engine.choose_slot(free)
        free.remove(slot)
        admitted.append((pending.popleft(), slot))
    if siblings is None:
        firsts = _prefill(engine, requests, admitted)
    else:
        firsts = _place_siblings(engine, requests, admitted, siblings)
    done = []
    keys = requests.keys
    for index, slot in admitted:
        first, logit = firsts[index]
        run = _Running(index, [first], [logit], requests.limits[index])
        generation = _settle(engine, requests, run)
        if generation is not None:
            done.append((index, generation))
            continue
        running[slot] = run
        if keys is not None:
            slots.key[slot] = keys[index]
        slots.last[slot], slots.step[slot] = first, 1
        slots.length[slot], slots.limit[slot] = len(requests.prompts[index]), run.limit
        slots.active[slot] = True
    return done


def _prefill(
    engine: SlotEngine, requests: Requests, admitted: Sequence[tuple[int, int | None]]
) -> dict[int, tuple[int, float]]:
    """First token and logit of each admitted (index, slot) by prefill (slot None: drawn only)."""
    indices = [i for i, _ in admitted]
    keys = None if requests.keys is None else requests.keys[indices]
    firsts = engine._prefill_many(
        [requests.prompts[i] for i in indices], [s for _, s in admitted], keys
    )
    return dict(zip(indices, firsts, strict=True))


def _place_siblings(
    engine: SlotEngine,
    requests: Requests,
    admitted: Sequence[tuple[int, int]],
    siblings: Siblings,
) -> dict[int, tuple[int, float]]:
    """`_prefill` with sharing across admissions: a request whose first token was drawn at a
    sibling's prefill copies the prompt K/V of a slot holding it (all copies before any
    prefill, which may refill such a slot); the others are prefilled, with the first tokens of
    their waiting siblings drawn alongside."""
    prompt = {i: tuple(requests.prompts[i]) for i, _ in admitted}
    copies, fresh = [], []
    for index, slot in admitted:
        source = siblings.holder(prompt[index])
        if index in siblings.ready and source is not None:
            copies.append((index, slot, source))
        else:
            siblings.ready.pop(index, None)
            fresh.append((index, slot))
    firsts = {}
    if copies:
        engine._copy_many([src for _, _, src in copies], [slot for _, slot, _ in copies])
        firsts = {index: siblings.ready.pop(index) for index, _, _ in copies}
    siblings.admitted.update(prompt)
    if fresh:
        room = engine.layout.decode_rows - len(fresh)
        waiting = siblings.waiting([prompt[i] for i, _ in fresh], room)
        drawn = _prefill(engine, requests, [*fresh, *((i, None) for i in waiting)])
        siblings.ready.update({i: drawn.pop(i) for i in waiting})
        firsts.update(drawn)
    for index, slot in admitted:
        siblings.held[slot] = prompt[index]
    return firsts


def _decode(
    engine: SlotEngine,
    requests: Requests,
    running: dict[int, _Running],
    slots: Slots,
    segment: SegmentOutputs,
) -> tuple[Slots, list[tuple[int, Generation]]]:
    """Read the decode segment in flight (dispatched on `slots`): the new tokens appended to
    each running row, the rows that ended freed and returned; raises if it made no progress."""
    before = slots.step.copy()
    slots, tokens, logits, steps = engine._finish_segment(segment)
    _count(engine.last_timing, executed=steps * engine.layout.decode_rows)
    if not steps or not np.any(slots.step > before):
        raise RuntimeError(f"a decode segment made no progress ({steps} steps)")
    done = []
    for slot, run in list(running.items()):
        n = int(slots.step[slot] - before[slot])
        run.tokens += tokens[slot, :n].tolist()
        run.logits += logits[slot, :n].tolist()
        generation = _settle(engine, requests, run)
        if generation is not None:
            done.append((run.index, generation))
            del running[slot]
            slots.active[slot] = False
    return slots, done
