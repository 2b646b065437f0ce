"""One-GPU batch-invariance and throughput check of the engine (prepared for an H100/H200).

A random-weight Gemma 3 with the real 1B shape (`ModelConfig.gemma3_1b_it()` dims) in bfloat16;
every prompt alone (bs=1) vs inside batches of 8, 32, 64: tokens and float32 logits must be
bitwise equal, across processes and inside one. First every batch size runs in its own process
(as the pipeline's evaluate jobs do, each compiling and autotuning on its own) on the first
`--isolated-prompts` prompts; then all batch sizes run in this process, which is the reference.
Also times each batch size and runs a small negative control (the batch-dependent layout).
Prints one JSON object as its last stdout line (and writes it to --out).
`--sampler static` checks the static `StaticSampler` instead of the continuous-batching engine
(`fixed`, the default); for batch sizes above 8 give the engine that many slots
(`--decode-rows 64`: batch sizes above `decode_rows` are capped).

    python benchmarks/gpu_invariance_check.py --deterministic --out gpu.json  # GPU, < 8 min
    JAX_PLATFORMS=cpu python benchmarks/gpu_invariance_check.py --tiny         # CPU test

`--deterministic` adds the XLA flags that `gsm8k-eval evaluate` adds on GPUs (gsm8k_eval.device).
If invariance fails on a GPU, rerun with the XLA flags listed in docs/sampler.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "workflow")]  # gpubench, gsm8k_eval

from gpubench.common import Ids, build_model, make_prompts, without_option  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model, small run (CPU test)")
    parser.add_argument("--batch-sizes", default=None, help="default 1,8,32,64 (tiny: 1,8)")
    parser.add_argument("--prompts", type=int, default=None, help="default 64 (tiny: 8)")
    parser.add_argument("--steps", type=int, default=None, help="default 64 (tiny: 8)")
    parser.add_argument("--max-prompt-length", type=int, default=None)
    parser.add_argument("--decode-rows", type=int, default=8)
    parser.add_argument("--sampler", default="fixed", choices=("fixed", "static"))
    parser.add_argument("--segment-steps", type=int, default=None, help="engine segment length")
    parser.add_argument(
        "--prefill-rows", type=int, default=None, help="rows per prefill call (default: schema's)"
    )
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument(
        "--isolated-prompts",
        type=int,
        default=None,
        help="prompts of each own-process run (default 16, tiny: 8)",
    )
    parser.add_argument(
        "--deterministic", action="store_true", help="add the pipeline's GPU determinism flags"
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = ("1,8", 8, 8, 64, 8) if args.tiny else ("1,8,32,64", 64, 64, 512, 16)
    args.batch_sizes = args.batch_sizes or defaults[0]
    args.prompts = args.prompts or defaults[1]
    args.steps = args.steps or defaults[2]
    args.max_prompt_length = args.max_prompt_length or defaults[3]
    args.isolated_prompts = min(args.isolated_prompts or defaults[4], args.prompts)
    return args


def run_all(sampler, prompts: list[list[int]], bs: int):
    """All prompts in one call, `bs` in flight (the engine) or in batches of `bs` (static)."""
    return sampler.generate(prompts, max_in_flight=bs)


def bits(generation) -> tuple:
    import numpy as np

    logits = np.asarray(generation.token_logits, np.float32).view(np.uint32)
    return tuple(generation.tokens), tuple(logits.tolist())


def _setup(args: argparse.Namespace):
    """The model, prompts and sampler: identical in every process (fixed seeds)."""
    from gsm8k_eval.sampling import SamplerConfig, make_sampler

    model, config = build_model(args.tiny, args.dtype)
    prompts = make_prompts(args.prompts, args.max_prompt_length, config.num_embed)
    sampler_config = SamplerConfig(args.max_prompt_length, args.steps, eos_tokens=(1,))
    sampler = make_sampler(
        args.sampler,
        model,
        Ids(),
        sampler_config,
        args.decode_rows,
        args.segment_steps,
        prefill_rows=args.prefill_rows,
    )
    return model, prompts, sampler_config, sampler


def worker(args: argparse.Namespace) -> None:
    """One batch size in this process (compiled here): write its outputs' bits as JSON."""
    start = time.perf_counter()
    _, prompts, _, sampler = _setup(args)
    out = run_all(sampler, prompts[: args.isolated_prompts], args.worker)
    result = {
        "batch_size": args.worker,
        "bits": [bits(g) for g in out],
        "seconds": round(time.perf_counter() - start, 1),
    }
    args.worker_out.write_text(json.dumps(result))


def run_isolated(args: argparse.Namespace, argv: list[str]) -> list[dict]:
    """Every batch size in its own process, one after another, before this process starts JAX
    (so no process holds the GPU's memory while another runs)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="gpu-invariance-") as tmp:
        for bs in batch_sizes(args):
            out = Path(tmp) / f"bs{bs}.json"
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                *argv,
                "--worker",
                str(bs),
                "--worker-out",
                str(out),
            ]
            subprocess.run(command, check=True, timeout=600)
            results.append(json.loads(out.read_text()))
    return results


def compare_isolated(isolated: list[dict], reference: list[tuple]) -> dict:
    """Each own-process run against this process's first batch size, prompt by prompt."""
    mismatches = [
        {"batch_size": run["batch_size"], "prompt": i}
        for run in isolated
        for i, got in enumerate(run["bits"])
        if (tuple(got[0]), tuple(got[1])) != reference[i]
    ]
    return {
        "prompts": len(isolated[0]["bits"]) if isolated else 0,
        "batch_sizes": [run["batch_size"] for run in isolated],
        "invariant": bool(isolated) and not mismatches,
        "mismatches": mismatches,
        "seconds": {str(run["batch_size"]): run["seconds"] for run in isolated},
    }


def batch_sizes(args: argparse.Namespace) -> list[int]:
    return [int(s) for s in args.batch_sizes.split(",")]


def check(args: argparse.Namespace, isolated: list[dict]) -> dict:
    import jax

    start = time.perf_counter()
    model, prompts, sampler_config, sampler = _setup(args)
    sizes = batch_sizes(args)
    sampler.generate(prompts[: max(sizes)])  # compile every bucket and the decode program
    reference, throughput, mismatches = None, [], []
    for bs in sizes:
        t0 = time.perf_counter()
        out = run_all(sampler, prompts, bs)
        seconds = time.perf_counter() - t0
        tokens = sum(len(g.tokens) for g in out)
        throughput.append(
            {
                "batch_size": bs,
                "seconds": round(seconds, 3),
                "tokens": tokens,
                "tokens_per_s": round(tokens / seconds, 1),
                "slot_utilization": sampler.last_timing.get("slot_utilization"),
            }
        )
        if reference is None:
            reference = [bits(g) for g in out]
        mismatches += [
            {"batch_size": bs, "prompt": i} for i, g in enumerate(out) if bits(g) != reference[i]
        ]
    control = negative_control(model, prompts[:8], sampler_config)
    across = compare_isolated(isolated, reference)
    return {
        "device": str(jax.devices()[0]),
        "platform": jax.default_backend(),
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "model": "tiny" if args.tiny else "gemma3_1b dims (random weights)",
        "dtype": args.dtype,
        "prompts": len(prompts),
        "steps": args.steps,
        "max_prompt_length": args.max_prompt_length,
        "decode_rows": args.decode_rows,
        "prefill_rows": sampler.layout.prefill_rows,
        "sampler": args.sampler,
        "invariant": not mismatches and across["invariant"],
        "invariant_in_process": not mismatches,
        "mismatches": mismatches,
        "separate_processes": across,
        "throughput": throughput,
        "negative_control": control,
        "distinct_outputs": len(set(reference)),
        "total_seconds": round(time.perf_counter() - start, 1),
    }


def negative_control(model, prompts, config) -> dict:
    """The batch-dependent layout (stock-like): bs=1 vs bs=8 on the same prompts."""
    from gsm8k_eval.sampling import Layout, StaticSampler

    sampler = StaticSampler(model, Ids(), config, Layout(batch_invariant=False))
    alone = [bits(sampler.generate([p])[0]) for p in prompts]
    batched = [bits(g) for g in sampler.generate(prompts)]
    differ = sum(a != b for a, b in zip(alone, batched, strict=True))
    return {"prompts": len(prompts), "differ_bs1_vs_bs8": differ}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.deterministic:
        from gsm8k_eval.device import GPU_DETERMINISM_FLAGS, merge_xla_flags

        flags = merge_xla_flags(os.environ.get("XLA_FLAGS", ""), GPU_DETERMINISM_FLAGS)
        os.environ["XLA_FLAGS"] = flags  # the workers inherit it
    if args.worker is not None:
        worker(args)
        return
    started = time.perf_counter()
    isolated = run_isolated(args, without_option(argv, "--out"))
    result = check(args, isolated)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(result, sort_keys=True)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
