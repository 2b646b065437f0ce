"""Wall time split into JAX compilation and the rest, so throughput can leave compilation out.

JAX reports every trace, lowering and backend compile as a time span through `jax.monitoring`;
`timed` subtracts the union of the spans that ended inside a block from the block's wall time.
Samplers fill `last_timing` with `prefill_seconds`, `decode_seconds` (compilation excluded) and
`compile_seconds` this way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager

COMPILE_KEY = "compile_seconds"
COMPILE_EVENTS = frozenset(
    {
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    }
)
_spans: list[tuple[float, float]] = []
_installed = False


def _on_span(event: str, start: float, end: float, **_: object) -> None:
    if event in COMPILE_EVENTS:
        _spans.append((start, end))


def install() -> None:
    """Start recording compilation spans (idempotent; imports JAX)."""
    global _installed
    if not _installed:
        import jax.monitoring

        jax.monitoring.register_event_time_span_listener(_on_span)
        _installed = True


@contextmanager
def timed(timing: MutableMapping[str, float], key: str) -> Iterator[None]:
    """Add the block's wall seconds without compilation to `timing[key]`, and the compilation
    seconds to `timing["compile_seconds"]`."""
    install()
    first = len(_spans)
    start = time.time()
    try:
        yield
    finally:
        end = time.time()
        compiling = min(_union_seconds(_spans[first:], start, end), end - start)
        timing[key] = timing.get(key, 0.0) + (end - start) - compiling
        timing[COMPILE_KEY] = timing.get(COMPILE_KEY, 0.0) + compiling


def _union_seconds(spans: list[tuple[float, float]], low: float, high: float) -> float:
    """Length of the union of `spans` clipped to [low, high] (nested spans counted once)."""
    total, reach = 0.0, low
    for start, end in sorted((max(s, low), min(e, high)) for s, e in spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total
