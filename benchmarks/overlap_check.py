"""How much of a streaming caller's work the engine hides behind its next decode segment.

`Engine.stream` dispatches the next segment before it yields the generations that ended, so
the caller's work on them (the evaluate stage builds rollout rows and writes shard files)
runs while the device decodes. This script streams the same prompts through one warm engine:
with a caller that does nothing, with a caller that waits `--wait-ms` per generation
(I/O-like: the cores stay free), optionally with one that computes for `--busy-ms`
(JSON-encoding the generation's logits over and over: it competes with XLA for the cores),
then with the idle caller again (run-to-run noise). The hidden share is
`1 - (wall - idle wall) / caller seconds` (idle wall: the faster idle run): 0 when the
caller's time adds to the wall time in full, 1 when all of it is hidden. At most one segment's
time can be hidden per round of rows ending together. The outputs of every run must be
identical (the script fails otherwise; their digest is recorded, so runs of two checkouts can
be compared). Run it from an older checkout (PYTHONPATH to its `workflow/`) for the same
numbers without the overlap.

    .venv/bin/python benchmarks/overlap_check.py --model-dir results/demo/model \
        --prompts 64 --tokens 64 --bs 8 --dtype bfloat16 --wait-ms 100 --out overlap.json"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sampler import build_prompts, one_per_bucket


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--bs", type=int, default=8)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--shots", type=int, default=0)
    parser.add_argument("--template", default="chat")
    parser.add_argument("--max-prompt-length", type=int, default=1024)
    parser.add_argument("--wait-ms", type=float, default=100.0)
    parser.add_argument("--busy-ms", type=float, default=0.0, help="0: no busy run")
    parser.add_argument("--out", type=Path)
    return parser.parse_args(argv)


Caller = Callable[[float, Any], None]


def wait(seconds: float, generation: Any) -> None:
    time.sleep(seconds)


def busy(seconds: float, generation: Any) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        json.dumps([float(x) for x in generation.token_logits])


def digest(generations: Sequence[Any]) -> str:
    """sha256 of every generation's tokens and float32 logit bits, in input order."""
    h = hashlib.sha256()
    for g in generations:
        h.update(np.asarray(g.tokens, np.int64).tobytes())
        h.update(np.asarray(g.token_logits, np.float32).tobytes())
    return h.hexdigest()[:16]


def timed(
    engine: Any, prompts: list[list[int]], bs: int, caller: Caller | None, seconds: float
) -> tuple[dict[str, Any], list[Any]]:
    """One streamed run; the caller's own time is measured, not assumed."""
    out: dict[int, object] = {}
    spent = 0.0
    start = time.perf_counter()
    for index, generation in engine.stream(prompts, max_in_flight=bs):
        out[index] = generation
        if caller is not None:
            t0 = time.perf_counter()
            caller(seconds, generation)
            spent += time.perf_counter() - t0
    wall = time.perf_counter() - start
    timing = engine.last_timing
    row = {
        "wall_s": round(wall, 3),
        "caller_s": round(spent, 3),
        "decode_s": round(timing["decode_seconds"], 3),
        "prefill_s": round(timing["prefill_seconds"], 3),
        "compile_s": round(timing["compile_seconds"], 3),
        "load_average": os.getloadavg(),
    }
    return row, [out[i] for i in range(len(prompts))]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from gsm8k_eval.models import load_model
    from gsm8k_eval.sampling import Layout, SamplerConfig
    from gsm8k_eval.sampling.engine import Engine

    loaded = load_model(args.model_dir, args.dtype)
    prompts = build_prompts(args.model_dir, args.prompts, args.shots, args.template)
    config = SamplerConfig(args.max_prompt_length, args.tokens, pad_id=int(loaded.tokenizer.pad_id))
    engine = Engine(loaded.model, loaded.tokenizer, config, Layout())
    warm = one_per_bucket(prompts, args.max_prompt_length)
    engine.generate(warm, max_in_flight=args.bs, max_new_tokens=[4] * len(warm))
    runs = {}
    reference = None
    plan = [("idle", None, 0.0), ("wait", wait, args.wait_ms / 1000)]
    if args.busy_ms:
        plan.append(("busy", busy, args.busy_ms / 1000))
    plan.append(("idle-again", None, 0.0))
    for name, caller, seconds in plan:
        row, out = timed(engine, prompts, args.bs, caller, seconds)
        row["outputs_sha256"] = digest(out)
        reference = reference or row["outputs_sha256"]
        if row["outputs_sha256"] != reference:
            raise SystemExit(f"run {name!r} changed the outputs")
        runs[name] = row
        print(name, row, flush=True)
    idle = min(runs["idle"]["wall_s"], runs["idle-again"]["wall_s"])
    for name in [n for n in ("wait", "busy") if n in runs]:
        added = runs[name]["wall_s"] - idle
        runs[name]["hidden_share"] = round(1 - added / runs[name]["caller_s"], 3)
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs}
    print(json.dumps({k: v.get("hidden_share") for k, v in runs.items()}))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
