"""Throughput sections: copy bandwidth, uniform and length-mix workloads, decode-step times.

Every timed run follows a warm-up on the same shapes (compilation excluded; the warm-up's wall
time and the sampler's `compile_seconds` are recorded separately). Tokens/s counts useful tokens:
each generation up to and including its EOS token.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from gpubench.common import (
    EngineOptions,
    digest,
    log,
    measuring,
    sampler,
    timing_of,
)

Guard = Callable[[float], bool]  # guard(seconds_needed): True when there is time for it


def copy_bandwidth(gib: float = 2.0) -> dict[str, Any]:
    """Device memory bandwidth from a large on-device elementwise copy (read + write)."""
    import jax
    import jax.numpy as jnp

    n = int(gib * 2**30) // 2
    x = jnp.zeros((n,), jnp.bfloat16)
    fn = jax.jit(lambda a: a + jnp.bfloat16(1))
    jax.block_until_ready(fn(x))
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(x))
        times.append(time.perf_counter() - t0)
    moved = 2 * n * 2
    return {
        "bytes_moved": moved,
        "best_s": min(times),
        "gb_per_s": round(moved / min(times) / 1e9, 1),
    }


def run_timed(
    sampler_: Any,
    prompts: list[list[int]],
    bs: int,
    warmup: list[list[int]],
    lock: Any,
    budgets: list[int] | None = None,
) -> tuple[dict[str, Any], list[Any]]:
    """Warm up on `warmup`, then one timed `generate` of all prompts with `bs` in flight."""
    engine = "max_new_tokens" in inspect.signature(sampler_.generate).parameters  # not stock
    # Device work holds `lock` (concurrent flag-variant workers then measure undisturbed);
    # the engine's warm-up is compilation plus a few steps, so it runs outside it.
    with measuring(None if engine else lock):
        t0 = time.perf_counter()
        if engine:
            few = min(8, sampler_.config.max_generation_steps)
            sampler_.generate(warmup, max_in_flight=bs, max_new_tokens=[few] * len(warmup))
        else:
            sampler_.generate(warmup, max_in_flight=bs)
        warm = time.perf_counter() - t0
        compile_s = timing_of(sampler_).get("compile_seconds")
        extra = {"max_new_tokens": budgets} if budgets and engine else {}
        with measuring(lock if engine else None):
            t0 = time.perf_counter()
            out = sampler_.generate(prompts, max_in_flight=bs, **extra)
            seconds = time.perf_counter() - t0
    timing = timing_of(sampler_)
    useful = sum(len(g.tokens) for g in out)
    row = {
        "batch_size": bs,
        "prompts": len(prompts),
        "seconds": round(seconds, 4),
        "useful_tokens": useful,
        "tokens_per_s": round(useful / seconds, 1),
        "prefill_s": timing.get("prefill_seconds"),
        "decode_s": timing.get("decode_seconds"),
        "slot_utilization": timing.get("slot_utilization"),
        "warmup_s": round(warm, 2),
        "warmup_compile_s": compile_s,
    }
    return row, out


def warmup_prompts(name: str, prompts: list[list[int]], bs: int, bucket_step: int = 64) -> list:
    """Stock: the first batch (same shapes as the timed ones). Engine: a batch's worth of prompts
    plus one per prefill bucket, so the timed run never compiles."""
    if name == "tunix":  # and the last, partial batch: another shape
        tail = prompts[len(prompts) - len(prompts) % bs :] if len(prompts) % bs else []
        return prompts[:bs] + tail
    first = {}
    for p in prompts:
        first.setdefault((len(p) - 1) // bucket_step, p)
    head = prompts[: max(bs, 8)]
    return head + [p for p in first.values() if p not in head]


def engine_variants(base: EngineOptions, prefill_rows: Sequence[int] | None) -> list[tuple]:
    """(label, options) of each engine to measure: one per prefill row count, if given."""
    if not prefill_rows:
        return [("fixed", base)]
    return [(f"fixed-p{p}", replace(base, prefill_rows=p)) for p in prefill_rows]


def uniform(
    model: Any,
    config: Any,
    prompts: list[list[int]],
    sizes: Sequence[int],
    bs1_prompts: int,
    engines: list[tuple[str, EngineOptions]],
    lock: Any,
    guard: Guard,
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Engine(s) and stock tunix at each batch size on the same prompts (bs 1: the first
    `bs1_prompts` only). Returns the rows and the engines' outputs per (label, bs)."""
    rows, outputs = [], {}
    for label, name, options in [
        *[(lb, "fixed", o) for lb, o in engines],
        ("tunix", "tunix", engines[0][1]),
    ]:
        s = sampler(name, model, config, options)
        for bs in sizes:
            if label.startswith("fixed-p") and bs == 1 and label != engines[-1][0]:
                continue  # bs 1 only with the last prefill row count (time)
            part = prompts[:bs1_prompts] if bs == 1 else prompts
            if not guard(estimate_run(name, bs, len(part))):
                rows.append({"sampler": label, "batch_size": bs, "skipped": "time"})
                continue
            row, out = run_timed(s, part, bs, warmup_prompts(name, part, bs), lock)
            rows.append({"sampler": label, **row})
            outputs[f"{label}/bs{bs}"] = out
            log(f"uniform {label} bs={bs}: {row['tokens_per_s']} tok/s ({row['seconds']} s)")
    return {"rows": rows, "ratios": ratios(rows, sizes, engines)}, outputs


def estimate_run(name: str, bs: int, prompts: int) -> float:
    """Rough seconds of a warm-up plus timed run on the H200 (for the time guard only)."""
    compile_s = 25.0 if name == "tunix" else 5.0
    return compile_s + (8.0 if bs == 1 else 3.0) * max(prompts / 64, 0.25)


def ratios(rows: list[dict], sizes: Sequence[int], engines: list[tuple]) -> dict[str, float]:
    """Engine tokens/s over stock tunix's at the same batch size."""
    speed = {(r["sampler"], r["batch_size"]): r.get("tokens_per_s") for r in rows}
    out = {}
    for label, _ in engines:
        for bs in sizes:
            a, b = speed.get((label, bs)), speed.get(("tunix", bs))
            if a and b:
                out[f"{label} bs{bs} / tunix bs{bs}"] = round(a / b, 3)
    return out


def in_process_invariance(
    model: Any,
    config: Any,
    prompts: list[list[int]],
    options: EngineOptions,
    reference: list[Any] | None,
    count: int,
    steps: int,
) -> dict[str, Any]:
    """The first `count` prompts at bs 1 (budget `steps`) against the same prompts' first `steps`
    tokens and logit bits in the bs-64 (all rows) run; that run is made here if not given."""
    s = sampler("fixed", model, config, options)
    if reference is None:
        reference = s.generate(prompts, max_in_flight=options.decode_rows)
    alone = s.generate(prompts[:count], max_in_flight=1, max_new_tokens=[steps] * count)
    want = [digest(g, steps) for g in reference[:count]]
    got = [digest(g) for g in alone]
    differ = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
    return {
        "prompts": count,
        "tokens_compared": steps,
        "batch_sizes": [1, options.decode_rows],
        "identical": count - len(differ),
        "differ": differ,
        "invariant": not differ,
        "distinct_outputs": len(set(digest(g) for g in reference)),
        "digests_bs_all": [digest(g) for g in reference],
    }


def decode_steps(
    model: Any,
    config: Any,
    base: EngineOptions,
    rows_list: Sequence[int],
    prompts: list,
    guard: Guard,
    lock: Any = None,
) -> dict[str, Any]:
    """Milliseconds per decode step of the engine's segment program at each row count: all rows
    busy for `max_generation_steps`, decode seconds over executed steps (best of 3 runs)."""
    out = {}
    for rows in rows_list:
        if not guard(12.0):
            out[str(rows)] = {"skipped": "time"}
            continue
        try:
            s = _engine_with_rows(model, config, base, rows)
        except Exception as error:
            out[str(rows)] = {"error": f"{type(error).__name__}: {error}"[:300]}
            continue
        batch = [prompts[i % len(prompts)] for i in range(rows)]
        n = config.max_generation_steps
        s.generate(batch, max_in_flight=rows, max_new_tokens=[min(8, n)] * rows)  # compiles
        best = steps = None
        with measuring(lock):
            for _ in range(3):
                s.generate(batch, max_in_flight=rows, max_new_tokens=[n] * rows)
                t = timing_of(s)
                steps = t.get("executed_row_steps", rows * (n - 1)) / rows
                ms = 1e3 * t["decode_seconds"] / max(steps, 1)
                best = ms if best is None else min(best, ms)
        out[str(rows)] = {"ms_per_step": round(best, 3), "steps_per_run": int(steps)}
        log(f"decode step at {rows} rows: {best:.3f} ms")
    return out


def _engine_with_rows(model: Any, config: Any, base: EngineOptions, rows: int) -> Any:
    """An engine with `rows` slots; 1 row bypasses Layout's >= 2 check (timing only)."""
    prefill = None if base.prefill_rows is None else min(base.prefill_rows, rows)
    base = replace(base, prefill_rows=prefill)
    if rows >= 2:
        return sampler("fixed", model, config, replace(base, decode_rows=rows))
    two = sampler("fixed", model, config, replace(base, decode_rows=2))
    layout = replace(two.layout, decode_rows=2)
    object.__setattr__(layout, "decode_rows", 1)
    fields = {"layout": layout}
    return replace(two, **fields)
