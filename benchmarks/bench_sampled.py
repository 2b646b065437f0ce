"""Samples/s of the engine's sampled decoding against its greedy decoding (issue 24).

One process, one model, the same questions: `greedy` generates one continuation per question,
`sampled` n per question (temperature / top-k / top-p, one key per (question, sample)), with the
n samples of a question sharing one prefill row, and `sampled-separate` the same requests with
every sample prefilled on its own (`Engine(share_prefill=False)`, the bitwise oracle), and, with
`--full-sort`, `sampled-full-sort`: the draw sorting the whole row for top-k as before the
`jax.lax.top_k` path (how many samples come out the same is printed and recorded). Each
variant is warmed up on every prefill bucket first, with and without a shared row (both of a
bucket's prefill programs), and on a sample admitted after its sibling's prefill (the K/V copy
program), and timed over one
`generate` call with `bs` requests in flight, as the evaluate stage runs a shard.

    .venv/bin/python benchmarks/bench_sampled.py --model-dir results/model \\
        --questions 8 --samples 4 --tokens 64 --bs 8 --dtype bfloat16 --out sampled.json

samples/s counts generations (a greedy run's one per question); useful tokens/s counts the
tokens up to the stop, as `bench_sampler.py`. The two sampled variants must produce the same
tokens (checked here, the run fails otherwise).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sampler import build_prompts, machine_record, one_per_bucket


@dataclass
class Row:
    """One timed variant."""

    variant: str
    requests: int
    seconds: float
    tokens: int
    prefill_seconds: float
    decode_seconds: float
    prefill_rows_shared: float
    slot_utilization: float
    compile_seconds: float  # inside the timed call: 0 when the warm-up compiled every program
    load_average: tuple[float, float, float]
    same_as_sampled: int | None = None  # sampled-full-sort: samples equal to `sampled`'s

    @property
    def samples_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("results/model"))
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4, help="samples per question")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--bs", type=int, default=8, help="requests in flight")
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--decode-rows", type=int, default=8)
    parser.add_argument("--prefill-rows", type=int, default=1)
    parser.add_argument("--segment-steps", type=int, default=16)
    parser.add_argument("--max-prompt-length", type=int, default=512)
    parser.add_argument("--shots", type=int, default=2)
    parser.add_argument("--template", default="fewshot", help="prompt template (chat: short)")
    parser.add_argument("--stops", default="Question:,</s>,<|im_end|>")
    parser.add_argument(
        "--full-sort", action="store_true", help="also time the draw's full-sort top-k path"
    )
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    return parser.parse_args(argv)


def engine_for(args: argparse.Namespace, loaded, temperature: float, share: bool):
    from gsm8k_eval.sampling import Layout, SamplerConfig
    from gsm8k_eval.sampling.engine import Engine

    config = SamplerConfig(
        args.max_prompt_length,
        args.tokens,
        pad_id=int(loaded.tokenizer.pad_id),
        temperature=temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
    )
    layout = Layout(decode_rows=args.decode_rows, prefill_rows=args.prefill_rows)
    return Engine(
        loaded.model, loaded.tokenizer, config, layout, args.segment_steps, share_prefill=share
    )


def time_variant(name: str, engine, prompts, keys, warmups, args) -> tuple[Row, list]:
    """Warm up on each (prompts, keys, in flight) of `warmups`, then one timed `generate` over all
    requests with `args.bs` in flight."""
    stops = tuple(s for s in args.stops.split(",") if s)
    for warm, warm_keys, in_flight in warmups:
        few = [min(16, args.tokens)] * len(warm)
        engine.generate(warm, stops, max_in_flight=in_flight, max_new_tokens=few, keys=warm_keys)
    start = time.perf_counter()
    out = engine.generate(prompts, stops, max_in_flight=args.bs, keys=keys)
    seconds = time.perf_counter() - start
    timing = engine.last_timing
    row = Row(
        name,
        len(prompts),
        seconds,
        sum(len(g.tokens) for g in out),
        timing["prefill_seconds"],
        timing["decode_seconds"],
        timing.get("prefill_rows_shared", 0.0),
        timing["slot_utilization"],
        timing["compile_seconds"],
        os.getloadavg(),
    )
    return row, [g.tokens for g in out]


def run(args: argparse.Namespace) -> list[Row]:
    from gsm8k_eval import draw
    from gsm8k_eval.models import load_model

    loaded = load_model(args.model_dir, args.dtype)
    questions = build_prompts(args.model_dir, args.questions, args.shots, args.template)
    n = args.samples
    prompts = [p for p in questions for _ in range(n)]  # question-major, as the evaluate stage
    keys = draw.key_data(
        draw.request_keys(
            args.seed, [(f"q{i}", j) for i in range(len(questions)) for j in range(n)]
        )
    )
    warm = one_per_bucket(questions, args.max_prompt_length)
    # each bucket's two prefill programs, each call one admission: a shared row (copies of one
    # prompt) and a row of its own (one copy); then the K/V copy program: two samples one at
    # a time (the second drawn at the first's prefill, admitted later: it copies)
    copies = min(n, args.bs, args.decode_rows)
    sampled_warmups = [
        warmup
        for p in warm
        for warmup in (([p] * copies, keys[:copies], args.bs), ([p], keys[:1], args.bs))
    ] + [([warm[0]] * 2, keys[:2], 1)]
    rows, tokens = [], {}
    plan = [
        ("greedy", 0.0, True, questions, None, [(warm, None, args.bs)]),
        ("sampled", args.temperature, True, prompts, keys, sampled_warmups),
        ("sampled-separate", args.temperature, False, prompts, keys, sampled_warmups),
    ]
    if args.full_sort:
        plan.append(("sampled-full-sort", *plan[1][1:]))
    for name, temperature, share, batch, batch_keys, warmups in plan:
        with full_sort(name.endswith("full-sort")):  # the programs are traced inside
            engine = engine_for(args, loaded, temperature, share)
            row, tokens[name] = time_variant(name, engine, batch, batch_keys, warmups, args)
        rows.append(row)
        print(fmt(row), flush=True)
    if tokens["sampled"] != tokens["sampled-separate"]:
        sys.exit("shared prefill changed the samples: a bug (they must be bitwise the same)")
    if args.full_sort:
        pairs = zip(tokens["sampled"], tokens["sampled-full-sort"], strict=True)
        same = sum(a == b for a, b in pairs)
        print(f"lax.top_k path vs full sort: {same} of {len(prompts)} samples identical")
        rows[-1].same_as_sampled = same
    return rows


@contextlib.contextmanager
def full_sort(on: bool):
    """The draw's top-k through a full sort of the row (its traced-top_k path) while `on`."""
    from gsm8k_eval import draw

    with mock.patch.object(draw, "_static_top_k", lambda *_: None) if on else nullcontext():
        yield


def fmt(row: Row) -> str:
    return (
        f"| {row.variant} | {row.requests} | {row.seconds:.1f} | {row.prefill_seconds:.1f} / "
        f"{row.decode_seconds:.1f} | {row.prefill_rows_shared:.0f} | {row.samples_per_s:.3f} "
        f"| {row.tokens_per_s:.1f} | {row.slot_utilization:.2f} | {row.compile_seconds:.1f} |"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    print(
        "| variant | requests | seconds | prefill / decode s | prefill rows saved | samples/s "
        "| useful tokens/s | slot util. | compile s |\n|---|---|---|---|---|---|---|---|---|",
        flush=True,
    )
    rows = run(args)
    by = {r.variant: r for r in rows}
    ratios = {
        "sampled / greedy samples/s": by["sampled"].samples_per_s / by["greedy"].samples_per_s,
        "sampled / greedy tokens/s": by["sampled"].tokens_per_s / by["greedy"].tokens_per_s,
        "shared / separate prefill seconds": by["sampled"].prefill_seconds
        / by["sampled-separate"].prefill_seconds,
        "shared / separate samples/s": by["sampled"].samples_per_s
        / by["sampled-separate"].samples_per_s,
    }
    if "sampled-full-sort" in by:
        ratios["lax.top_k / full sort samples/s"] = (
            by["sampled"].samples_per_s / by["sampled-full-sort"].samples_per_s
        )
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}x")
    if args.out:
        data = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "machine": machine_record(),
            "ratios": ratios,
            "rows": [
                asdict(r) | {"samples_per_s": r.samples_per_s, "tokens_per_s": r.tokens_per_s}
                for r in rows
            ],
        }
        args.out.write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
