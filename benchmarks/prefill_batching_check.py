"""Does prefilling several prompts in one call at a FIXED row count keep each prompt's bits?

The engine prefills every prompt alone (1 row per call). Batching prompts of one bucket into
calls of exactly `--rows` rows (dummy rows fill the rest) keeps shapes batch-independent, but
XLA:CPU may still compute a row differently depending on its position in the call or on its
neighbours. For one bucket of the chosen template this prefills prompt A alone (1 row), in a
`rows`-row call with dummies, and with other prompts at every position, and compares A's K/V
cache rows (all layers), first token and its float32 logit bitwise; it also times 1-row calls
against `rows`-row calls.

    .venv/bin/python benchmarks/prefill_batching_check.py --model-dir results/model \\
        [--template chat --shots 0] [--rows 4] [--dtype float32] [--out check.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from functools import partial
from pathlib import Path

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"  # ../shared


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("results/model"))
    parser.add_argument("--template", default="fewshot")
    parser.add_argument("--shots", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=64, help="candidates (test set head)")
    parser.add_argument("--rows", type=int, default=4, help="fixed prefill row count")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--max-prompt-length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2, help="timing repeats")
    parser.add_argument("--out", type=Path)
    return parser.parse_args(argv)


def prompts_of(args: argparse.Namespace, tokenizer) -> list[list[int]]:
    from gsm8k_eval.prompts import PromptBuilder, PromptConfig

    builder = PromptBuilder(PromptConfig(args.template, args.shots, 1234, GSM8K / "train.jsonl"))
    lines = (GSM8K / "test.jsonl").read_text().splitlines()[: args.prompts]
    return [tokenizer.encode(builder.render(json.loads(line)["question"])) for line in lines]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import numpy as np

    from gsm8k_eval.models import load_model
    from gsm8k_eval.sampling import Layout, bucket_for
    from gsm8k_eval.sampling.embedder import engine_split
    from gsm8k_eval.sampling.step import (
        empty_cache,
        left_pad,
        prefill,
        supports_hidden_states,
        transposed_head,
    )

    loaded = load_model(args.model_dir, args.dtype)
    model, pad = loaded.model, int(loaded.tokenizer.pad_id)
    region = args.max_prompt_length
    hidden = supports_hidden_states(model)
    head = transposed_head(model, Layout()) if hidden else None
    graphdef, state = engine_split(model, head is not None)  # as the engine's
    fn = jax.jit(partial(prefill, graphdef, region=region, pad_id=pad, hidden=hidden))
    by_bucket = defaultdict(list)
    for p in prompts_of(args, loaded.tokenizer):
        by_bucket[bucket_for(len(p), Layout().bucket_step, region)].append(p)
    bucket, group = max(by_bucket.items(), key=lambda kv: len(kv[1]))
    rows = args.rows
    group = group[: 2 * rows]

    def run(batch: list[list[int] | None]):
        """Prefill `batch` (None: dummy row) in one call; per real row: K/V rows, token, logit."""
        tokens = left_pad([p or [pad] for p in batch], bucket, pad)
        cache = empty_cache(model, len(batch), region + 1, raw_bits=True)  # as the engine's
        cache, token, logit = fn(state, head, cache, tokens, np.arange(len(batch), dtype=np.int32))
        token, logit = np.asarray(token), np.asarray(logit)
        kv = [np.asarray(layer[x]) for layer in cache.values() for x in ("k", "v")]
        return [
            (b"".join(a[i, region - bucket : region].tobytes() for a in kv), token[i], logit[i])
            for i, p in enumerate(batch)
            if p is not None
        ]

    a, others = group[0], group[1:]
    alone = run([a])[0]
    cases = {"1 row (the engine today)": alone}
    cases[f"{rows} rows, dummies"] = run([a] + [None] * (rows - 1))[0]
    for pos in range(rows):
        batch = [*others[:pos], a, *others[pos : rows - 1]]
        cases[f"{rows} rows, others, A at {pos}"] = run(batch)[pos]
    shifted = others[rows - 1 : 2 * rows - 2]
    cases[f"{rows} rows, other neighbours, A at {rows - 1}"] = run([*shifted, a])[rows - 1]
    padded = cases[f"{rows} rows, dummies"]

    def same(x, y) -> bool:
        return (
            x[0] == y[0]
            and x[1] == y[1]
            and np.float32(x[2]).tobytes() == np.float32(y[2]).tobytes()
        )

    result = {
        "bucket": bucket,
        "prompt_lengths": [len(p) for p in group],
        "rows": rows,
        "dtype": args.dtype,
        "template": args.template,
        "equal_to_alone": {k: same(v, alone) for k, v in cases.items()},
        "equal_to_padded_call": {k: same(v, padded) for k, v in cases.items()},
        "first_logit": {k: float(v[2]) for k, v in cases.items()},
    }
    # every prompt of the batch, not only A: alone vs in the full call
    full = run(group[:rows])
    result["all_rows_equal_to_alone"] = [
        same(run([p])[0], f) for p, f in zip(group[:rows], full, strict=True)
    ]
    timing = {}
    for label, batches in (
        ("1 row", [[p] for p in group[:rows]]),
        (f"{rows} rows", [group[:rows]]),
    ):
        inputs = [
            (left_pad(b, bucket, pad), empty_cache(model, len(b), region + 1, raw_bits=True))
            for b in batches
        ]
        slots = np.arange(len(batches[0]), dtype=np.int32)
        jax.block_until_ready(fn(state, head, inputs[0][1], inputs[0][0], slots))
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            for tokens, cache in inputs:
                jax.block_until_ready(fn(state, head, cache, tokens, slots))
        timing[label] = (time.perf_counter() - t0) / args.repeats / rows
    result["seconds_per_prompt"] = timing
    result["load_average"] = os.getloadavg()
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
