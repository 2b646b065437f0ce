"""The length-mix workload: EOS at GSM8K-like positions for the engine and stock tunix alike.

Stock tunix has one `max_generation_steps` per batch and stops a row only at an EOS id, so both
samplers get the same stopping rule, an EOS *set* chosen by calibration:

1. targets: one stop length per prompt from a lognormal (median, 90th percentile given, clipped
   to 16..cap), seeded;
2. calibration: the engine's greedy outputs of every prompt up to `cap` tokens (EOS = token 1);
3. EOS set: greedy choice of tokens, each first occurring in some prompt's output near that
   prompt's target, kept only if it lowers the total |log(stop / target)| over all prompts
   (a token also stops every other prompt at its first occurrence there); as that pulls stops
   short, a few rounds aim at stretched targets and the closest round wins (`calibrate_eos`).

The achieved stop positions (what both samplers should produce) are recorded with the targets.
The engine gets no per-request budget: it stops at the EOS set like stock tunix. Stock tunix's
bfloat16 numerics differ from the engine's, so its outputs can leave the calibrated path; its
own stop positions and agreement are recorded, and tokens/s always counts its own tokens.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import numpy as np

from gpubench.common import EngineOptions, log, measuring, sampler, stats, tokens_digest
from gpubench.throughput import Guard, ratios, run_timed, warmup_prompts


def mix_estimate(name: str, bs: int, prompts: int, cap: int) -> float:
    """Rough H200 seconds of a warm-up plus timed run (time guard only): stock tunix compiles
    and decodes every batch to its longest row (~2.6 ms a step); the engine ~3 ms a step."""
    if name == "tunix":
        return 20.0 + (-(-prompts // bs) + 1) * cap * 0.0026
    return 8.0 + prompts * 0.3 * cap * 0.003 / bs


def targets(n: int, median: float, p90: float, cap: int, seed: int = 7) -> list[int]:
    """Lognormal stop lengths with the given median and 90th percentile, clipped to 16..cap."""
    sigma = math.log(p90 / median) / 1.2815515655446004
    draw = np.random.default_rng(seed).lognormal(math.log(median), sigma, n)
    return [int(x) for x in np.clip(np.round(draw), min(16, cap), cap)]


def first_positions(outputs: list[list[int]]) -> list[dict[int, int]]:
    """Per output: token -> index of its first occurrence."""
    firsts = []
    for out in outputs:
        seen: dict[int, int] = {}
        for i, t in enumerate(out):
            seen.setdefault(int(t), i)
        firsts.append(seen)
    return firsts


def choose_eos(
    outputs: list[list[int]], want: list[int], passes: int = 2
) -> tuple[list[int], list[int]]:
    """EOS ids and the resulting stop lengths (see module docstring); lengths count the EOS."""
    firsts = first_positions(outputs)
    where: dict[int, list[tuple[int, int]]] = {}
    for j, seen in enumerate(firsts):
        for token, pos in seen.items():
            where.setdefault(token, []).append((j, pos))
    stop = [len(o) for o in outputs]
    err = lambda j, s: abs(math.log(s / want[j]))  # noqa: E731
    chosen: list[int] = []
    for _ in range(passes):
        for i in np.argsort(want)[::-1]:  # longest first: measurably closer
            i = int(i)
            window = max(4, want[i] // 8)
            best, best_delta = None, -1e-9
            for k in range(max(0, want[i] - 1 - window), min(stop[i] - 1, want[i] + window)):
                token = int(outputs[i][k])
                if firsts[i][token] != k or token in chosen:
                    continue
                delta = sum(
                    err(j, pos + 1) - err(j, stop[j])
                    for j, pos in where[token]
                    if pos + 1 < stop[j]
                )
                if delta < best_delta:
                    best, best_delta = token, delta
            if best is not None:
                chosen.append(best)
                for j, pos in where[best]:
                    stop[j] = min(stop[j], pos + 1)
    return chosen, stop


def calibrate_eos(outputs: list[list[int]], want: list[int], cap: int, rounds: int = 3) -> tuple:
    """`choose_eos` aiming at stretched targets: an EOS id also stops other prompts early, so
    the stops fall short of the targets; each round scales the aim by median(want) / median(stops)
    and the round closest to `want` wins (mean |log(stop / target)| plus the |log ratio| of the
    medians and of the 90th percentiles)."""
    best, scale = None, 1.0
    for _ in range(rounds):
        aim = [min(cap, max(1, round(w * scale))) for w in want]
        eos, stop = choose_eos(outputs, aim)
        error = float(np.mean([abs(math.log(s / w)) for s, w in zip(stop, want, strict=True)]))
        error += sum(
            abs(math.log(np.percentile(stop, q) / np.percentile(want, q))) for q in (50, 90)
        )
        if best is None or error < best[0]:
            best = (error, eos, stop, scale)
        scale *= float(np.median(want)) / float(np.median(stop))
    return best[1], best[2], best[3]


def run(
    model: Any,
    base_config: Any,
    prompts: list[list[int]],
    sizes: list[int],
    bs1_prompts: int,
    engines: list[tuple[str, EngineOptions]],
    mix: dict[str, float],
    lock: Any,
    guard: Guard,
) -> dict[str, Any]:
    """Calibrate, choose the EOS set, then time every engine and stock tunix at `sizes`."""
    cap = int(mix["cap"])
    want = targets(len(prompts), mix["median"], mix["p90"], cap)
    slots = 2 * len(prompts) + 1  # EOS list length fixed: calibration and timed runs share programs
    calib_config = replace(base_config, max_generation_steps=cap, eos_tokens=(1,) * slots)
    options = engines[-1][1]  # the reference engine (last prefill row count)
    calib = sampler("fixed", model, calib_config, options)
    log(f"length-mix calibration: {len(prompts)} prompts up to {cap} tokens")
    with measuring(lock):
        t0 = time.perf_counter()
        outs = calib.generate(prompts, max_in_flight=options.decode_rows)
        calib_s = time.perf_counter() - t0
    eos, stop, scale = calibrate_eos([g.tokens for g in outs], want, cap)
    config = replace(calib_config, eos_tokens=(1, *eos, *[1] * (slots - 1 - len(eos))))
    result = describe(want, stop, mix, len(eos), calib_s, bs1_prompts) | {"aim_scale": scale}
    log(f"length-mix stops: {result['stop_positions']} ({len(eos)} EOS ids)")
    pairs = zip(outs, stop, strict=True)
    expected = [tokens_digest(replace(g, tokens=g.tokens[:s])) for g, s in pairs]
    rows = []
    for label, name, opts in [
        *[(lb, "fixed", o) for lb, o in engines],
        ("tunix", "tunix", options),
    ]:
        s = sampler(name, model, config, opts)
        for bs in sizes:
            part = prompts[:bs1_prompts] if bs == 1 else prompts
            if not guard(mix_estimate(name, bs, len(part), cap)):
                rows.append({"sampler": label, "batch_size": bs, "skipped": "time"})
                continue
            row, out = run_timed(s, part, bs, warmup_prompts(name, part, bs), lock)
            same = sum(tokens_digest(g) == e for g, e in zip(out, expected, strict=False))
            row |= {"stop_positions": stats([len(g.tokens) for g in out])}
            rows.append({"sampler": label, **row, "same_tokens_as_calibration": same})
            speed = row["tokens_per_s"]
            log(f"length-mix {label} bs={bs}: {speed} tok/s, {same}/{len(part)} as calibrated")
    return result | {"rows": rows, "ratios": ratios(rows, sizes, engines)}


def describe(
    want: list[int], stop: list[int], mix: dict, eos_ids: int, calib_s: float, bs1_prompts: int
) -> dict[str, Any]:
    """What the workload is: targets, achieved stop positions and how close they came."""
    pairs = list(zip(stop, want, strict=True))
    return {
        "method": "EOS set chosen by calibration (benchmarks/gpubench/lengthmix.py docstring)",
        "prompts": len(want),
        "target_distribution": {"kind": "lognormal clipped to 16..cap", **mix},
        "targets": stats(want),
        "stop_positions": stats(stop),
        "eos_ids": eos_ids,
        "mean_abs_log_error": round(float(np.mean([abs(math.log(s / w)) for s, w in pairs])), 3),
        "within_25_percent": int(sum(abs(s - w) <= 0.25 * w for s, w in pairs)),
        "calibration_seconds": round(calib_s, 2),
        "bs1_prompts": bs1_prompts,
    }
