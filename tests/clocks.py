"""Deterministic views of timing for tests, instead of wall-clock thresholds: the clock readings
`timing.timed` takes, a scripted clock, and how many programs XLA compiled."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import jax.monitoring

from gsm8k_eval import timing

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextmanager
def patched_clock(clock: Callable[[], float]) -> Iterator[None]:
    """`timing.timed` reads `clock` instead of `time.time` inside the block."""
    saved = timing.time
    timing.time = SimpleNamespace(time=clock)  # type: ignore[assignment]
    try:
        yield
    finally:
        timing.time = saved


@contextmanager
def clock_readings() -> Iterator[list[float]]:
    """The real clock readings `timing.timed` takes inside the block: a start and an end per
    timed block, in order (JAX's compile spans use the same clock, so they still line up)."""
    import time

    readings: list[float] = []

    def read() -> float:
        readings.append(time.time())
        return readings[-1]

    with patched_clock(read):
        yield readings


def scripted(*readings: float) -> Callable[[], float]:
    """A clock that returns `readings` one by one (an error if read more often)."""
    values = iter(readings)
    return lambda: next(values)


@contextmanager
def compiles() -> Iterator[list[float]]:
    """One entry (its seconds) per XLA backend compile inside the block."""
    events: list[float] = []

    def listener(event: str, start: float, end: float, **_: object) -> None:
        if event == BACKEND_COMPILE_EVENT:
            events.append(end - start)

    jax.monitoring.register_event_time_span_listener(listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_time_span_listener(listener)
