"""Where the engine's decode step spends its time: a `jax.profiler` trace of decode segments.

Prefills `decode_rows` two-shot GSM8K prompts into the engine's slots, warms the segment
program up, traces `--segments` segments and prints the XLA:CPU ops' time per decode step,
grouped by kind (dots, copies, fusions, ...), the number of copies in the compiled HLO and a
digest of the traced segments' tokens and logits (to compare the outputs of two checkouts: run
this script with PYTHONPATH at the other checkout's `workflow/`). `--no-trace` times the same
segments without the profiler (an A/B of two checkouts in alternating processes).

Also the memory floor of a step: a decode step reads every weight once (the tied embedding as
the output head), so it cannot take less than `weight_bytes / bandwidth`. The bandwidth is
measured here with two jitted reads of the head's table: a row sum (a plain streaming read)
and the float32 head dot alone (`[R, D] x [V, D]^T`, the engine's kernel).

    .venv/bin/python benchmarks/profile_engine.py --model-dir results/model \\
        --tokens 256 [--dtype float32] [--out profile.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from bench_sampler import best_ms, build_prompts, machine_record


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("results/model"))
    parser.add_argument("--tokens", type=int, default=256, help="max_generation_steps")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--decode-rows", type=int, default=8)
    parser.add_argument("--segment-steps", type=int, default=16)
    parser.add_argument("--segments", type=int, default=2, help="segments traced")
    parser.add_argument("--max-prompt-length", type=int, default=512)
    parser.add_argument("--shots", type=int, default=2, help="few-shot examples per prompt")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--no-trace", action="store_true", help="time the segments without the profiler"
    )
    parser.add_argument("--out", type=Path)
    return parser.parse_args(argv)


def kind(name: str) -> str:
    """Coarse class of an XLA op from its name in the trace."""
    base = re.sub(r"[._]\d+$", "", name.split(":")[0]).lower()
    for key in (
        "copy",
        "dot",
        "ynn",
        "xnn",
        "onednn",
        "dynamic-update-slice",
        "scatter",
        "transpose",
        "reduce",
        "gather",
        "while",
        "convolution",
    ):
        if key in base:
            return key
    return "fusion" if "fusion" in base else base


def op_times(trace_dir: str) -> dict[str, float]:
    """Total ns per XLA op name over the trace (host threads only, no Python)."""
    import jax

    path = next(Path(trace_dir).rglob("*.xplane.pb"))
    data = jax.profiler.ProfileData.from_file(str(path))
    totals: dict[str, float] = defaultdict(float)
    for plane in data.planes:
        for line in plane.lines:
            if "python" in line.name.lower():
                continue
            for event in line.events:
                stats = dict(event.stats)
                if "hlo_op" in stats or "hlo_module" in stats:
                    totals[event.name] += event.duration_ns
    return dict(totals)


def memory_floor(state, head_table, rows: int, reps: int = 5) -> dict[str, float]:
    """Weight bytes a step reads, read bandwidths measured on the head's table, the floor."""
    import jax
    import jax.numpy as jnp

    weight_bytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(state) if hasattr(x, "nbytes"))
    hidden = jnp.ones((rows, head_table.shape[1]), head_table.dtype)
    probes = {
        "row_sum": (jax.jit(lambda w: jnp.sum(w, axis=1)), (head_table,)),
        "head_dot": (jax.jit(lambda h, w: jnp.dot(h, w.T)), (hidden, head_table)),
    }
    out: dict[str, float] = {"weight_bytes_per_step": float(weight_bytes)}
    for name, (fn, args) in probes.items():
        ms = best_ms(fn, *args, repeats=reps)
        out[f"{name}_ms"] = ms
        out[f"{name}_gb_per_s"] = head_table.nbytes / ms / 1e6
    bandwidth = max(out["row_sum_gb_per_s"], out["head_dot_gb_per_s"])
    out["floor_ms_per_step"] = 1e3 * weight_bytes / (bandwidth * 1e9)
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import time

    import jax
    import numpy as np

    from gsm8k_eval.models import load_model
    from gsm8k_eval.sampling import Layout, SamplerConfig
    from gsm8k_eval.sampling.engine import Engine, Slots

    loaded = load_model(args.model_dir, args.dtype)
    config = SamplerConfig(args.max_prompt_length, args.tokens, pad_id=int(loaded.tokenizer.pad_id))
    engine = Engine(
        loaded.model,
        loaded.tokenizer,
        config,
        Layout(decode_rows=args.decode_rows),
        segment_steps=args.segment_steps,
    )
    engine.last_timing = dict.fromkeys(
        ("prefill_seconds", "decode_seconds", "compile_seconds"), 0.0
    )
    prompts = build_prompts(args.model_dir, args.decode_rows, args.shots)
    slots = Slots.empty(args.decode_rows)
    for slot, prompt in enumerate(prompts):
        [(first, _)] = engine._prefill_many([prompt], [slot])
        slots.last[slot], slots.step[slot], slots.length[slot] = first, 1, len(prompt)
        slots.limit[slot], slots.active[slot] = args.tokens, True
    slots, *_ = engine._run_segment(slots)  # compile + warm
    hlo = engine._compiled[("segment",)].as_text()
    copies = Counter(m.group(1) for m in re.finditer(r"= (\S+) copy\(", hlo))
    wall, steps, digest = [], 0, hashlib.sha256()

    def run_segments() -> None:
        nonlocal slots, steps
        for _ in range(args.segments):
            t0 = time.perf_counter()
            slots, tokens, logits, executed = engine._run_segment(slots)
            wall.append(time.perf_counter() - t0)
            steps += executed
            digest.update(np.asarray(tokens).tobytes() + np.asarray(logits).tobytes())

    totals: dict[str, float] = {}
    if args.no_trace:
        run_segments()
    else:
        with tempfile.TemporaryDirectory() as trace_dir:
            with jax.profiler.trace(trace_dir):
                run_segments()
            totals = op_times(trace_dir)
    per_step = {name: ns / steps / 1e6 for name, ns in totals.items()}
    by_kind: dict[str, float] = defaultdict(float)
    for name, ms in per_step.items():
        by_kind[kind(name)] += ms
    result = {
        "wall_ms_per_step": 1e3 * sum(wall) / steps,
        "traced": not args.no_trace,
        "output_digest": digest.hexdigest()[:16],  # the traced segments' tokens and logits
        "steps": steps,
        "cache_slots": args.max_prompt_length + args.tokens,
        "hlo_copies": sum(copies.values()),
        "hlo_copy_shapes": dict(copies.most_common(10)),
        "by_kind_ms": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
        "top_ops_ms": dict(sorted(per_step.items(), key=lambda kv: -kv[1])[: args.top]),
        "memory_floor": memory_floor(
            engine._state, loaded.model.embedder.input_embedding.value, args.decode_rows
        ),
        "load_average": os.getloadavg(),
        "machine": machine_record(),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    np.asarray(0)


if __name__ == "__main__":
    main()
