"""JAX's persistent compilation cache, shared by the evaluate jobs of a run.

A compiled XLA executable is stored under the cache folder keyed by the program, the compile
options, the backend and the JAX/jaxlib versions; a later job compiling the same program loads it
instead of compiling. The executable loaded is the one that was compiled, so the generated tokens
and logits do not change (tests/test_compile_cache.py checks this). JAX's thresholds are set so
that every program is cached, even the small ones of a CPU run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HIT_EVENT = "/jax/compilation_cache/cache_hits"
MISS_EVENT = "/jax/compilation_cache/cache_misses"
SAVED_EVENT = "/jax/compilation_cache/compile_time_saved_sec"


@dataclass
class CacheStats:
    """What the cache did in this process: programs loaded (hits) or compiled and stored
    (misses), and the compile seconds the hits saved (as JAX estimates them: the original
    compile time minus the time to read the entry)."""

    dir: str | None = None
    hits: int = 0
    misses: int = 0
    compile_seconds_saved: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_stats = CacheStats()
_listening = False


def _on_event(event: str, **_: object) -> None:
    if event == HIT_EVENT:
        _stats.hits += 1
    elif event == MISS_EVENT:
        _stats.misses += 1


def _on_duration(event: str, duration: float, **_: object) -> None:
    if event == SAVED_EVENT:
        _stats.compile_seconds_saved += max(float(duration), 0.0)


def enable(cache_dir: Path | None) -> CacheStats:
    """Use `cache_dir` as JAX's persistent compilation cache (before the first compile).

    None leaves the cache off. Returns the live counters of this process.
    """
    global _listening
    if cache_dir is None:
        return _stats
    import jax
    import jax.monitoring

    cache_dir = Path(cache_dir).resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(cache_dir))
    # JAX's defaults skip programs that compile in under a second and let the filesystem
    # raise the entry size floor: cache everything.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    if not _listening:
        jax.monitoring.register_event_listener(_on_event)
        jax.monitoring.register_event_duration_secs_listener(_on_duration)
        _listening = True
    _stats.dir = str(cache_dir)
    return _stats


def stats() -> CacheStats:
    """The counters of this process (all zero when the cache is off)."""
    return _stats


def combine(records: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The cache records of several jobs' summaries added up (None when none had one)."""
    present = [r for r in records if r]
    if not present:
        return None
    return {
        "dir": present[0].get("dir"),
        "hits": sum(int(r.get("hits", 0)) for r in present),
        "misses": sum(int(r.get("misses", 0)) for r in present),
        "compile_seconds_saved": sum(float(r.get("compile_seconds_saved", 0.0)) for r in present),
    }
