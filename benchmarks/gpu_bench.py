"""One prepared GPU benchmark of the engine (`fixed`) vs stock tunix (issue 21 item 6): one JSON.

Random-weight Gemma 3 with the real 1B shape (bfloat16), in sections (`--sections`):

* bandwidth: device copy bandwidth, and the weight-bandwidth bound of one decode step;
* uniform: engine (per `--prefill-rows` value) and stock tunix at bs 1, 32, 64 (64 prompts x 128
  new tokens, prompts of 129-256 random tokens; bs 1 on the first `--bs1-prompts`);
* invariance: bs 1 vs all rows in this process (tokens + float32 logit bits); across processes:
  the `flags` variant's two processes, and both against this process;
* lengthmix: >= 256 prompts whose EOS fires at GSM8K-like positions for both samplers
  (gpubench/lengthmix.py), at `--mix-batch-sizes`;
* decode: milliseconds per engine decode step at 1, 8, 64, 128 rows;
* flags: XLA determinism flag variants, each in two own processes (gpubench/variants.py).

This process runs with the pipeline's GPU determinism flags (gsm8k_eval.device). Progress lines
go to stdout; the JSON (`gpu_bench.json` under `--out`, default $OUT or ./gpu-bench-out) is
rewritten after every section, and a section is skipped when the time left (`--budget-s`) is
below its estimate, so a timeout still leaves the data measured so far.

    benchmarks/gpu_bench.sh                          # GPU box (installs wheels, see docs/gpu.md)
    JAX_PLATFORMS=cpu python benchmarks/gpu_bench.py --tiny   # CPU, tiny model (the test)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "workflow")]

from gpubench import common  # noqa: E402
from gpubench.common import EngineOptions, elapsed, log  # noqa: E402

SECTIONS = ("bandwidth", "uniform", "invariance", "lengthmix", "decode", "flags")
# Rough H200 seconds of each section (time guard): compile dominates.
ESTIMATES = {
    "bandwidth": 5,
    "uniform": 100,
    "invariance": 8,
    "lengthmix": 120,
    "decode": 30,
    "flags": 110,
}
GPU = dict(
    batch_sizes="1,32,64", decode_rows=64, prompts=64, tokens=128, max_prompt_length=256,
    bs1_prompts=16, inv_prompts=16, inv_steps=64, mix_prompts=256, mix_cap=768, mix_median=200,
    mix_p90=450, mix_batch_sizes="32,64", mix_bs1_prompts=16, step_rows="1,8,64,128",
    budget_s=450, parallel=5, mem_fraction=0.5, worker_mem_fraction=0.08,
)  # fmt: skip
TINY = dict(
    batch_sizes="1,8", decode_rows=8, prompts=8, tokens=12, max_prompt_length=64,
    bs1_prompts=3, inv_prompts=4, inv_steps=8, mix_prompts=12, mix_cap=32, mix_median=10,
    mix_p90=22, mix_batch_sizes="8", mix_bs1_prompts=3, step_rows="1,8",
    budget_s=240, parallel=2, mem_fraction=0.5, worker_mem_fraction=0.1,
)  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny model, small sizes (CPU test)")
    p.add_argument(
        "--sections", default=",".join(SECTIONS), help="comma list of " + ",".join(SECTIONS)
    )
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu-bench-out"))
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    p.add_argument(
        "--prefill-rows",
        default="",
        help="engine prefill row counts, e.g. 1,16; the last is the reference engine "
        "(bs 1, invariance, calibration, decode steps, flag variants)",
    )
    p.add_argument("--segment-steps", type=int, default=None, help="engine segment length")
    p.add_argument("--variants", default=None, help="flag variants (default: gpubench.variants)")
    p.add_argument("--no-compile-cache", action="store_true", help="no persistent cache here")
    for key, value in GPU.items():
        kind = type(value) if not isinstance(value, str) else str
        p.add_argument(
            "--" + key.replace("_", "-"), type=kind, default=None, help=f"GPU default {value}"
        )
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for key, value in (TINY if args.tiny else GPU).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def ints(text: str) -> list[int]:
    return [int(x) for x in str(text).split(",") if x.strip()]


class Bench:
    """The model, the workloads and the JSON being filled."""

    def __init__(self, args: argparse.Namespace, argv: list[str]) -> None:
        self.args, self.argv = args, argv
        self.out = args.out / "gpu_bench.json"
        self.lock = args.out / "measure.lock"
        self.deadline = args.budget_s
        self.data: dict[str, Any] = {
            "args": vars(args),
            "sections": {},
            "skipped": {},
            "errors": {},
            "timeline": [],
        }
        self.model = self.config = self.prompts = None
        self.outputs: dict[str, list] = {}

    def guard(self, seconds: float) -> bool:
        """Whether `seconds` more fit in the budget."""
        return elapsed() + seconds <= self.deadline

    def save(self) -> None:
        self.data["elapsed_s"] = round(elapsed(), 1)
        common.write_json(self.out, self.data)

    def setup(self) -> None:
        """Start JAX, build the model and the uniform prompts."""
        from gsm8k_eval.sampling import SamplerConfig

        t0 = time.perf_counter()
        self.model, model_config = common.build_model(self.args.tiny, self.args.dtype)
        a = self.args
        self.config = SamplerConfig(a.max_prompt_length, a.tokens, eos_tokens=(1,))
        self.prompts = common.make_prompts(a.prompts, a.max_prompt_length, model_config.num_embed)
        self.vocab = model_config.num_embed
        supported = common.prefill_rows_supported()
        rows = ints(a.prefill_rows)
        self.engines = _engines(
            EngineOptions(a.decode_rows, a.segment_steps), rows if supported else []
        )
        self.data["meta"] = {
            **common.env_info(),
            "model": "tiny" if a.tiny else "gemma3_1b_it dims, random weights",
            "dtype": a.dtype,
            "weight_bytes": common.weight_bytes(self.model),
            "prefill_rows": rows if supported else "unsupported",
            "engines": {label: vars(o) for label, o in self.engines},
            "setup_s": round(time.perf_counter() - t0, 1),
        }
        log(f"model ready ({self.data['meta']['weight_bytes'] / 1e9:.2f} GB of weights)")

    def run(self, sections: list[str]) -> None:
        """Each section in turn (holding the measurement lock: flag-variant workers compile
        meanwhile but run nothing on the device); the flag variants are collected last."""
        for name in [s for s in sections if s != "flags"] + (
            ["flags"] if "flags" in sections else []
        ):
            estimate = 0 if name == "flags" else ESTIMATES[name] * (0.3 if self.args.tiny else 1)
            if not self.guard(estimate):
                self.data["skipped"][name] = f"time: {elapsed():.0f} s of {self.deadline} s used"
                log(f"section {name} skipped (time)")
                continue
            log(f"section {name}")
            t0 = elapsed()
            try:
                whole = name in ("bandwidth", "invariance")  # the others lock their device work
                with common.measuring(self.lock if whole else None):
                    self.data["sections"][name] = getattr(self, "section_" + name)()
            except Exception as error:
                self.data["errors"][name] = traceback.format_exc()[-3000:]
                log(f"section {name} failed: {type(error).__name__}: {error}")
            self.data["timeline"].append(
                {"section": name, "start_s": round(t0, 1), "seconds": round(elapsed() - t0, 1)}
            )
            self.save()

    def section_bandwidth(self) -> dict[str, Any]:
        from gpubench.throughput import copy_bandwidth

        bw = copy_bandwidth(0.25 if self.args.tiny else 2.0)
        weights = self.data["meta"]["weight_bytes"]
        bw["weight_bound_ms_per_step"] = round(1e3 * weights / (bw["gb_per_s"] * 1e9), 3)
        return bw

    def section_uniform(self) -> dict[str, Any]:
        from gpubench.throughput import uniform

        a = self.args
        result, self.outputs = uniform(
            self.model,
            self.config,
            self.prompts,
            ints(a.batch_sizes),
            a.bs1_prompts,
            self.engines,
            self.lock,
            self.guard,
        )
        return result

    def section_invariance(self) -> dict[str, Any]:
        from gpubench.throughput import in_process_invariance

        a = self.args
        label, options = self.engines[-1]
        reference = self.outputs.get(f"{label}/bs{max(ints(a.batch_sizes))}")
        if reference is not None and len(reference) < len(self.prompts):
            reference = None
        return in_process_invariance(
            self.model, self.config, self.prompts, options, reference, a.inv_prompts, a.inv_steps
        )

    def section_lengthmix(self) -> dict[str, Any]:
        from gpubench import lengthmix

        a = self.args
        prompts = common.make_prompts(a.mix_prompts, a.max_prompt_length, self.vocab, seed=1)
        mix = {"median": a.mix_median, "p90": a.mix_p90, "cap": a.mix_cap}
        return lengthmix.run(
            self.model,
            self.config,
            prompts,
            ints(a.mix_batch_sizes),
            a.mix_bs1_prompts,
            self.engines,
            mix,
            self.lock,
            self.guard,
        )

    def section_decode(self) -> dict[str, Any]:
        from gpubench.throughput import decode_steps

        rows = decode_steps(
            self.model,
            self.config,
            self.engines[-1][1],
            ints(self.args.step_rows),
            self.prompts,
            self.guard,
            self.lock,
        )
        bound = self.data["sections"].get("bandwidth", {}).get("weight_bound_ms_per_step")
        return {"rows": rows, "weight_bound_ms_per_step": bound}

    def start_flags(self) -> None:
        """Start the flag-variant workers (they compile while this process runs sections)."""
        from gpubench import variants

        a = self.args
        names = (a.variants or variants.DEFAULT_VARIANTS).split(",")
        unknown = set(names) - set(variants.VARIANTS)
        if unknown:
            sys.exit(
                f"unknown variants {sorted(unknown)}; choose from {','.join(variants.VARIANTS)}"
            )
        tmp = Path(tempfile.mkdtemp(prefix="flags-", dir=a.out))
        deadline = time.monotonic() + self.deadline - elapsed() - 5
        argv = [str(Path(__file__).resolve()), *self.argv]
        self.variants = variants.Variants(
            names, argv, tmp, a.parallel, deadline, a.worker_mem_fraction
        )

    def section_flags(self) -> dict[str, Any]:
        result = self.variants.result()
        return {
            "note": "workers compiled while this process ran its sections; device work serialized",
            "variants": result,
            "comparison": _compare_variants(result, self.data["sections"].get("invariance")),
        }


def _engines(base: EngineOptions, prefill_rows: list[int]) -> list[tuple[str, EngineOptions]]:
    from gpubench.throughput import engine_variants

    return engine_variants(base, prefill_rows)


def _compare_variants(result: dict[str, Any], invariance: dict[str, Any] | None) -> dict[str, Any]:
    """Each variant's tokens/s relative to `none`, and the `flags` processes vs this process."""
    base = (result.get("none") or {}).get("tokens_per_s")
    out = {
        name: {
            "tokens_per_s": r.get("tokens_per_s"),
            "vs_none": round(r["tokens_per_s"] / base, 3)
            if base and r.get("tokens_per_s")
            else None,
            "invariant_across_processes": r.get("invariant_across_processes"),
        }
        for name, r in result.items()
    }
    mine = (invariance or {}).get("digests_bs_all")
    theirs = (result.get("flags") or {}).get("digests")
    if mine and theirs:
        out["flags_processes_equal_main_process"] = mine == theirs
    return out


def worker_main(args: argparse.Namespace) -> None:
    """A flag-variant worker (XLA_FLAGS already set by the parent)."""
    from gpubench import variants
    from gpubench.throughput import run_timed, warmup_prompts

    def body() -> dict[str, Any]:
        bench = Bench(args, [])
        bench.setup()
        label, options = bench.engines[-1]
        s = common.sampler("fixed", bench.model, bench.config, options)
        rows, best, out = options.decode_rows, None, None
        warmup = warmup_prompts("fixed", bench.prompts, rows)
        s.generate(warmup, max_in_flight=rows, max_new_tokens=[1] * len(warmup))  # compiles
        compile_s = common.timing_of(s).get("compile_seconds")
        n, steps = args.inv_prompts, args.inv_steps
        with common.measuring(args.out / "measure.lock"):  # no other device work meanwhile
            for _ in range(3):
                row, out = run_timed(s, bench.prompts, rows, warmup, None)
                best = row if best is None or row["tokens_per_s"] > best["tokens_per_s"] else best
            alone = s.generate(bench.prompts[:n], max_in_flight=1, max_new_tokens=[steps] * n)
        best["warmup_compile_s"] = compile_s
        same = [
            common.digest(g) == common.digest(r, steps) for g, r in zip(alone, out, strict=False)
        ]
        return {
            "engine": label,
            "tokens_per_s": best["tokens_per_s"],
            "best_run": best,
            "bs1_identical": all(same),
            "digests": {"all": [common.digest(g) for g in out]},
            "device": bench.data["meta"]["device"],
        }

    variants.worker(body, args.worker_out)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.worker:
        worker_main(args)
        return
    os.environ.setdefault("GPU_BENCH_BASE_XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
    _configure_process(args)
    bench = Bench(args, [*common.without_option(argv, "--out"), "--out", str(args.out)])
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        sys.exit(f"unknown sections {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    log(f"gpu_bench: sections {sections}, budget {args.budget_s} s, out {bench.out}")
    if "flags" in sections:
        bench.start_flags()
    bench.setup()
    bench.save()
    bench.run(sections)
    bench.data["summary"] = summary(bench.data)
    bench.save()
    log("summary: " + str(bench.data["summary"]))
    print(common.json.dumps(bench.data["summary"], sort_keys=True))


def _configure_process(args: argparse.Namespace) -> None:
    """The pipeline's determinism flags, a memory share leaving room for the workers, and a
    persistent compilation cache (engines of different prefill row counts share programs)."""
    from gsm8k_eval.device import GPU_DETERMINISM_FLAGS, merge_xla_flags

    os.environ["XLA_FLAGS"] = merge_xla_flags(
        os.environ.get("XLA_FLAGS", ""), GPU_DETERMINISM_FLAGS
    )
    os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", str(args.mem_fraction))
    if not args.no_compile_cache:
        from gsm8k_eval import compile_cache

        compile_cache.enable(Path(tempfile.mkdtemp(prefix="jax-cache-")))


def summary(data: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers."""
    s = data["sections"]
    flags = s.get("flags", {}).get("comparison", {})
    return {
        "device": data.get("meta", {}).get("device"),
        "uniform": s.get("uniform", {}).get("ratios"),
        "lengthmix": s.get("lengthmix", {}).get("ratios"),
        "lengthmix_stops": s.get("lengthmix", {}).get("stop_positions"),
        "invariant_in_process": s.get("invariance", {}).get("invariant"),
        "flag_variants": {k: v for k, v in flags.items() if isinstance(v, dict)},
        "flags_processes_equal_main_process": flags.get("flags_processes_equal_main_process"),
        "decode_ms_per_step": {
            k: v.get("ms_per_step") for k, v in s.get("decode", {}).get("rows", {}).items()
        },
        "weight_bound_ms_per_step": s.get("bandwidth", {}).get("weight_bound_ms_per_step"),
        "skipped": data["skipped"],
        "errors": sorted(data["errors"]),
        "elapsed_s": round(elapsed(), 1),
    }


if __name__ == "__main__":
    main()
