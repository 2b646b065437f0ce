"""Throughput of the engine (`fixed`) vs the static sampler, stock tunix and HF transformers.

All samplers run in this one process on the same prompts, so ratios are comparable even on a
noisy machine. Each (sampler, batch size) is warmed up first (compilation excluded). The JAX
samplers get all prompts in one `generate` call with `bs` in flight (as the evaluate stage
does); every system stops at the stop sequences (`--stops`; HF: `generate(stop_strings=...)`)
and tokens/s counts the useful tokens, up to and including the token completing the stop.

    .venv/bin/python benchmarks/bench_sampler.py --model-dir results/model \\
        --prompts 16 --tokens 64 --batch-sizes 1,8,32 --dtype float32 \\
        [--hf-python /tmp/hfvenv/bin/python]

The HF part runs `--hf-python` (default: this interpreter) on this same file with `--hf-worker`;
it is skipped when torch/transformers are not importable there.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"  # ../shared


def machine_record() -> dict[str, object]:
    """Where this ran, for the JSON: the CPU kind and the checkout of the gsm8k_eval package
    imported (the code measured: under an A/B, the old worktree on PYTHONPATH). A package older
    than `provenance.machine` gives None fields and says so."""
    import gsm8k_eval

    try:
        from gsm8k_eval.provenance import machine
    except ImportError:
        return {"cpu": None, "checkout": None, "missing": "gsm8k_eval.provenance.machine"}
    return machine(Path(gsm8k_eval.__file__).parent)


@dataclass
class Row:
    """One (sampler, batch size) measurement."""

    sampler: str
    batch_size: int
    seconds: float
    examples: int
    tokens: int
    peak_rss_mb: float
    prefill_seconds: float | None = None  # JAX samplers: time in prefill / decode calls
    decode_seconds: float | None = None
    slot_utilization: float | None = None  # engine: useful / executed decode row-steps
    stopped: int | None = None  # generations ended by a stop sequence
    load_average: tuple[float, float, float] | None = None  # os.getloadavg() at the end

    @property
    def examples_per_s(self) -> float:
        return self.examples / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


class PeakRss:
    """Samples this process's RSS in a thread; `peak` is the maximum since `reset`."""

    def __init__(self, interval: float = 0.02) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(self._interval)

    def reset(self) -> None:
        self.peak = self._process.memory_info().rss

    def close(self) -> None:
        self._stop.set()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("results/model"))
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument(
        "--samplers",
        default="fixed,static,tunix,hf",
        help="fixed: the engine; static: StaticSampler; tunix: stock; hf",
    )
    parser.add_argument(
        "--decode-rows",
        default="8",
        help="engine slots; a list (8,32) adds 'fixed-r32', run only at batch sizes that fill "
        "its rows; (8,2) adds 'fixed-r2', run only at batch sizes up to 2 (what a bs-1 user "
        "could choose: bits equal at bs 1 and 2, not to the 8-slot engine's)",
    )
    parser.add_argument(
        "--segment-steps",
        type=int,
        default=None,
        help="engine decode segment length (default: the engine's)",
    )
    parser.add_argument(
        "--prefill-rows",
        default="",
        help="engine/static prefill call rows; a list (1,4) adds 'fixed-p4' (default: the "
        "schema's)",
    )
    parser.add_argument(
        "--stops",
        default="Question:,</s>,<|im_end|>",
        help="comma-separated stop sequences ('' for none); tokens/s counts tokens up to the stop",
    )
    parser.add_argument("--max-prompt-length", type=int, default=512)
    parser.add_argument("--shots", type=int, default=2)
    parser.add_argument("--template", default="fewshot", help="prompt template (chat: short)")
    parser.add_argument(
        "--budgets",
        default="",
        help="per-request token budgets: 'lognormal:MEDIAN:SIGMA:SEED' (clipped "
        "to 16..--tokens). The engine stops each row at its budget; the "
        "others cannot, so their useful tokens are cut at it afterwards",
    )
    parser.add_argument("--hf-python", default=sys.executable)
    parser.add_argument(
        "--max-logits-gb",
        type=float,
        default=6.0,
        help="skip stock tunix batch sizes whose prefill logits exceed this",
    )
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--hf-worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def build_prompts(
    model_dir: Path, n: int, shots: int, template: str = "fewshot"
) -> list[list[int]]:
    """GSM8K prompts (the project's templates) as token ids."""
    from gsm8k_eval.prompts import PromptBuilder, PromptConfig
    from gsm8k_eval.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_dir(model_dir)
    config = PromptConfig(template, shots, 1234, GSM8K / "train.jsonl")
    builder = PromptBuilder(config)
    lines = (GSM8K / "test.jsonl").read_text().splitlines()[:n]
    return [tokenizer.encode(builder.render(json.loads(line)["question"])) for line in lines]


def best_ms(fn, *args, repeats: int = 7) -> float:
    """Fastest of `repeats` warm calls of a jitted `fn`, in milliseconds."""
    import jax

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


def time_batches(
    generate,
    prompts: list[list[int]],
    bs: int,
    rss: PeakRss,
    name: str,
    warmup: list[list[int]] | None = None,
    sampler=None,
    budgets: list[int] | None = None,
) -> Row:
    """Warm up on the first batch (and `warmup`), then time all prompts in batches of `bs`;
    with `sampler`, also sum its `last_timing` phases. `generate(batch, budgets)` returns the
    useful tokens (`budgets`: the batch's per-request budgets or None)."""
    generate(prompts[:bs])
    if warmup:
        generate(warmup)
    rss.reset()
    start, tokens, phases = time.perf_counter(), 0, {}
    for i in range(0, len(prompts), bs):
        part = budgets[i : i + bs] if budgets else None
        tokens += sum(len(g) for g in generate(prompts[i : i + bs], part))
        for key, value in (sampler.last_timing if sampler else {}).items():
            phases[key] = phases.get(key, 0.0) + value
    seconds = time.perf_counter() - start
    return Row(
        name,
        bs,
        seconds,
        len(prompts),
        tokens,
        rss.peak / 2**20,
        phases.get("prefill_seconds"),
        phases.get("decode_seconds"),
        phases.get("slot_utilization"),
        load_average=os.getloadavg(),
    )


def budgets_of(spec: str, n: int, cap: int) -> list[int] | None:
    """Per-request token budgets from `lognormal:MEDIAN:SIGMA:SEED`, clipped to 16..cap."""
    if not spec:
        return None
    import numpy as np

    kind, median, sigma, seed = spec.split(":")
    if kind != "lognormal":
        raise ValueError(f"unknown budget distribution {kind!r}")
    draw = np.random.default_rng(int(seed)).lognormal(np.log(float(median)), float(sigma), n)
    return [int(x) for x in np.clip(np.round(draw), 16, cap)]


def time_shard(
    sampler,
    prompts: list[list[int]],
    bs: int,
    rss: PeakRss,
    name: str,
    stops: tuple[str, ...],
    warmup: list[list[int]],
    budgets: list[int] | None = None,
) -> Row:
    """Warm up on `warmup` (every bucket, the decode program), then time one `generate` call
    over all prompts with `bs` in flight, as the evaluate stage does; tokens up to the stop
    (and up to each request's budget: passed to the engine, applied afterwards to the others)."""
    engine = hasattr(sampler, "segment_steps")
    few = min(16, sampler.config.max_generation_steps) if engine else 0
    short = {"max_new_tokens": [few] * len(warmup)} if engine else {}  # compiles the same
    sampler.generate(warmup, stops, max_in_flight=bs, **short)
    rss.reset()
    extra = {"max_new_tokens": budgets} if budgets and engine else {}
    start = time.perf_counter()
    out = sampler.generate(prompts, stops, max_in_flight=bs, **extra)
    seconds = time.perf_counter() - start
    timing = sampler.last_timing
    useful = [len(g.tokens) for g in out]
    if budgets:
        useful = [min(n, b) for n, b in zip(useful, budgets, strict=True)]
    return Row(
        name,
        bs,
        seconds,
        len(prompts),
        sum(useful),
        rss.peak / 2**20,
        timing.get("prefill_seconds"),
        timing.get("decode_seconds"),
        timing.get("slot_utilization"),
        sum(g.stop_reason == "stop_sequence" for g in out),
        os.getloadavg(),
    )


def fills(bs: int, rows: int, default_rows: int) -> bool:
    """Whether an extra slot count is worth running at `bs`: more slots only at batch sizes that
    fill them, fewer only at batch sizes that fit in them."""
    return bs >= rows if rows > default_rows else bs <= rows


def jax_rows(args: argparse.Namespace, prompts, sizes: list[int], rss: PeakRss) -> list[Row]:
    from gsm8k_eval.models import load_model
    from gsm8k_eval.sampling import SamplerConfig, make_sampler

    loaded = load_model(args.model_dir, args.dtype)
    config = SamplerConfig(args.max_prompt_length, args.tokens, pad_id=int(loaded.tokenizer.pad_id))
    stops = tuple(s for s in args.stops.split(",") if s)
    rows = []
    decode_rows = [int(r) for r in args.decode_rows.split(",")]
    prefill_rows = [int(p) for p in args.prefill_rows.split(",") if p] or [None]
    variants = [
        (f"fixed-r{r}" if i else "fixed", "fixed", r, prefill_rows[0])
        for i, r in enumerate(decode_rows)
    ]
    variants += [(f"fixed-p{p}", "fixed", decode_rows[0], p) for p in prefill_rows[1:]]
    static = ("static", "static", 8, prefill_rows[0])
    for label, name, r, p in [*variants, static, ("tunix", "tunix", 8, None)]:
        if name not in args.samplers.split(","):
            continue
        sampler = make_sampler(
            name,
            loaded.model,
            loaded.tokenizer,
            config,
            decode_rows=r,
            segment_steps=args.segment_steps,
            prefill_rows=p,
        )
        for bs in sizes:
            if label.startswith("fixed-r") and not fills(bs, r, decode_rows[0]):
                continue
            if name == "tunix" and stock_logits_gb(bs, prompts, loaded) > args.max_logits_gb:
                print(
                    f"tunix bs={bs} skipped: its prefill logits need "
                    f"{stock_logits_gb(bs, prompts, loaded):.0f} GB",
                    flush=True,
                )
                continue
            warmup = prompts[:bs]
            if name != "tunix":  # every prefill bucket, in as few decode chunks as possible
                buckets = one_per_bucket(prompts, args.max_prompt_length)
                warmup = (buckets + [p for p in warmup if p not in buckets])[: max(bs, 8)]
            rows.append(
                time_shard(
                    sampler,
                    prompts,
                    bs,
                    rss,
                    label,
                    stops,
                    warmup,
                    budgets_of(args.budgets, len(prompts), args.tokens),
                )
            )
            print(fmt(rows[-1]), flush=True)
    return rows


def one_per_bucket(prompts: list[list[int]], max_prompt_length: int) -> list[list[int]]:
    """One prompt per prefill bucket, so the timed loop never compiles."""
    from gsm8k_eval.sampling import Layout, bucket_for

    step = Layout().bucket_step
    return list({bucket_for(len(p), step, max_prompt_length): p for p in prompts}.values())


def stock_logits_gb(bs: int, prompts: list[list[int]], loaded) -> float:
    """Size of stock tunix's float32 prefill logits [bs, bucket, vocab] for these prompts."""
    bucket = 1 << (max(map(len, prompts)) - 1).bit_length()
    return bs * bucket * loaded.model_config.num_embed * 4 / 2**30


def versions(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """Library versions of this process and of the `--hf-python` interpreter the HF part used."""
    from gsm8k_eval.fingerprint import package_versions

    here = package_versions(("gsm8k-eval", "jax", "jaxlib", "flax", "google-tunix", "numpy"))
    code = (
        "import json; from gsm8k_eval.fingerprint import package_versions; "
        "print(json.dumps(package_versions(('transformers', 'torch', 'tokenizers'))))"
    )
    proc = subprocess.run([args.hf_python, "-c", code], capture_output=True, text=True)
    hf = json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr[-200:]}
    return {"jax": here, "hf": hf}


def hf_rows(args: argparse.Namespace, prompts, sizes: list[int]) -> list[Row]:
    """Run the HF worker in `--hf-python`; [] when torch is not importable there."""
    budgets = budgets_of(args.budgets, len(prompts), args.tokens)
    payload = json.dumps({"prompts": prompts, "sizes": sizes, "budgets": budgets})
    command = [
        args.hf_python,
        __file__,
        "--hf-worker",
        "--model-dir",
        str(args.model_dir),
        "--tokens",
        str(args.tokens),
        "--dtype",
        args.dtype,
        "--stops",
        args.stops,
    ]
    proc = subprocess.run(command, input=payload, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"HF transformers part skipped: {proc.stderr.strip().splitlines()[-1:]}")
        return []
    return [Row(**row) for row in json.loads(proc.stdout.strip().splitlines()[-1])]


def hf_worker(args: argparse.Namespace) -> None:
    """Greedy HF `generate` on the same token ids (`gsm8k_eval.reference`: the reference
    stage's loader and generation, batches left-padded); prints JSON rows."""
    if importlib.util.find_spec("torch") is None:
        sys.exit("torch is not importable")
    from gsm8k_eval.reference import load_torch_model, torch_generate
    from gsm8k_eval.tokenizer import Tokenizer

    payload = json.loads(sys.stdin.read())
    model = load_torch_model(args.model_dir, args.dtype)
    tokenizer = Tokenizer.from_dir(args.model_dir)
    stops = [s for s in args.stops.split(",") if s]
    rss = PeakRss()

    def generate(batch: list[list[int]], budgets: list[int] | None = None) -> list[list[int]]:
        """One HF call; with budgets, up to the batch's largest budget, each row cut at its."""
        budgets = budgets or [args.tokens] * len(batch)
        out = torch_generate(
            model,
            batch,
            max_new_tokens=max(budgets),
            eos_tokens=(1, 106),
            stop_sequences=stops,
            decode=tokenizer.decode,
            batch_size=len(batch),
            pad_id=int(tokenizer.pad_id),
        )
        return [g.tokens[:b] for g, b in zip(out, budgets, strict=True)]

    rows = [
        asdict(
            time_batches(generate, payload["prompts"], bs, rss, "hf", budgets=payload["budgets"])
        )
        for bs in payload["sizes"]
    ]
    print(json.dumps(rows))


def fmt(row: Row) -> str:
    phases = " / ".join(
        "-" if s is None else f"{s:.1f}" for s in (row.prefill_seconds, row.decode_seconds)
    )
    util = "-" if row.slot_utilization is None else f"{row.slot_utilization:.2f}"
    stopped = "-" if row.stopped is None else str(row.stopped)
    return (
        f"| {row.sampler} | {row.batch_size} | {row.seconds:.1f} | {phases} "
        f"| {row.examples_per_s:.3f} | {row.tokens_per_s:.1f} | {util} | {stopped} "
        f"| {row.peak_rss_mb:.0f} |"
    )


def ratio(rows: list[Row], a: tuple[str, int], b: tuple[str, int]) -> str:
    get = {(r.sampler, r.batch_size): r.tokens_per_s for r in rows}
    if a not in get or b not in get:
        return "n/a"
    return f"{get[a] / get[b]:.2f}x"


def report(rows: list[Row]) -> dict[str, str]:
    print(
        "| sampler | bs | seconds | prefill / decode s | examples/s | useful tokens/s "
        "| slot util. | stopped | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(fmt(row))
    ratios = {
        "fixed bs8 / fixed bs1": ratio(rows, ("fixed", 8), ("fixed", 1)),
        "fixed bs8 / static bs8": ratio(rows, ("fixed", 8), ("static", 8)),
        "fixed bs8 / tunix bs8": ratio(rows, ("fixed", 8), ("tunix", 8)),
        "fixed bs8 / hf bs8": ratio(rows, ("fixed", 8), ("hf", 8)),
        "fixed bs32 / tunix bs32": ratio(rows, ("fixed", 32), ("tunix", 32)),
        "fixed-r32 bs32 / fixed bs32": ratio(rows, ("fixed-r32", 32), ("fixed", 32)),
        "fixed-r32 bs32 / tunix bs8": ratio(rows, ("fixed-r32", 32), ("tunix", 8)),
        "fixed bs1 / tunix bs1": ratio(rows, ("fixed", 1), ("tunix", 1)),
        "fixed-r2 bs1 / tunix bs1": ratio(rows, ("fixed-r2", 1), ("tunix", 1)),
    }
    for name, value in ratios.items():
        print(f"{name}: {value}")
    return ratios


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.hf_worker:
        hf_worker(args)
        return
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    prompts = build_prompts(args.model_dir, args.prompts, args.shots, args.template)
    print(
        f"{len(prompts)} prompts, {min(map(len, prompts))}-{max(map(len, prompts))} tokens, "
        f"{args.tokens} new tokens, {args.dtype}",
        flush=True,
    )
    rss = PeakRss()
    rows = jax_rows(args, prompts, sizes, rss)
    if "hf" in args.samplers.split(","):
        rows += hf_rows(args, prompts, sizes)
    ratios = report(rows)
    if args.out:
        data = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "versions": versions(args),
            "machine": machine_record(),
            "ratios": ratios,
            "rows": [asdict(r) | {"tokens_per_s": r.tokens_per_s} for r in rows],
        }
        args.out.write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
