"""Does a row's arithmetic depend on the slot count? The engine at other `decode_rows`, and the
float32 head's variants, compared bitwise with the defaults.

Why a run's slot count is fixed by its configuration (never by the batch), and what the head's
cheaper variants would cost in bits. On the real model this measures:

* the engine at `--rows` slots (bs = slots) against 8 slots (bs 8): tokens, float32 logit bits,
  the largest logit difference, per dtype;
* the float32 head `[R, D] x [V, D]^T` alone: row 0 at 1, 2, 8 and 16 rows against 8 rows; the
  `[D, V]` layout and a 4-way vocabulary split against the default, with their times.

    .venv/bin/python benchmarks/slot_count_check.py --model-dir results/model \\
        [--prompts 4 --tokens 32 --rows 2,3] [--out check.json]
"""

from __future__ import annotations

import argparse
import json
import os
from itertools import pairwise
from pathlib import Path

from bench_sampler import best_ms, build_prompts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("results/model"))
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rows", default="2,3", help="slot counts compared with 8")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--max-prompt-length", type=int, default=512)
    parser.add_argument("--shots", type=int, default=2, help="few-shot examples per prompt")
    parser.add_argument("--out", type=Path)
    return parser.parse_args(argv)


def bits(values) -> bytes:
    import numpy as np

    return np.asarray(values, np.float32).tobytes()


def max_difference(a, b) -> float:
    import numpy as np

    n = min(len(a), len(b))
    return float(np.max(np.abs(np.asarray(a[:n]) - np.asarray(b[:n])))) if n else 0.0


def engine_rows(args: argparse.Namespace, dtype: str) -> list[dict]:
    """The engine at each of `--rows` slots against 8 slots, on the same prompts."""
    from gsm8k_eval.models import load_model
    from gsm8k_eval.sampling import SamplerConfig, make_sampler

    loaded = load_model(args.model_dir, dtype)
    config = SamplerConfig(args.max_prompt_length, args.tokens, pad_id=int(loaded.tokenizer.pad_id))
    prompts = build_prompts(args.model_dir, args.prompts, args.shots)
    out = {}
    for rows in (8, *(int(r) for r in args.rows.split(","))):
        sampler = make_sampler("fixed", loaded.model, loaded.tokenizer, config, decode_rows=rows)
        out[rows] = sampler.generate(prompts, ("Question:",), max_in_flight=rows)
    return [compare_rows(dtype, rows, out[rows], out[8]) for rows in out if rows != 8]


def compare_rows(dtype: str, rows: int, generations: list, reference: list) -> dict:
    """One slot count's generations against the 8-slot ones, prompt by prompt: tokens, float32
    logit bits and the largest logit difference."""
    pairs = list(zip(generations, reference, strict=True))
    return {
        "dtype": dtype,
        "rows": rows,
        "tokens_equal": all(a.tokens == b.tokens for a, b in pairs),
        "logit_bits_equal": all(bits(a.token_logits) == bits(b.token_logits) for a, b in pairs),
        "max_logit_difference": max(
            max_difference(a.token_logits, b.token_logits) for a, b in pairs
        ),
    }


def head_variants(args: argparse.Namespace) -> dict:
    """The float32 head alone: row counts, the [D, V] layout and a vocabulary split."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from gsm8k_eval.models import load_model

    table = load_model(args.model_dir, "float32").model.embedder.input_embedding[...]
    hidden = jnp.asarray(np.random.default_rng(0).standard_normal((16, table.shape[1])), "float32")
    head = jax.jit(lambda h, w: jnp.dot(h, w.T))
    reference = np.asarray(head(hidden[:8], table))
    result: dict = {"rows": {}}
    for rows in (1, 2, 8, 16):
        row0 = np.asarray(head(hidden[:rows], table))[0]
        result["rows"][rows] = {
            "ms": best_ms(head, hidden[:rows], table),
            "row0_bits_equal_to_8_rows": row0.tobytes() == reference[0].tobytes(),
        }
    transposed = jnp.asarray(np.ascontiguousarray(np.asarray(table).T))
    bounds = [i * table.shape[0] // 4 for i in range(5)]  # 4 parts covering the vocabulary
    split = jax.jit(
        lambda h, w: jnp.concatenate([jnp.dot(h, w[a:b].T) for a, b in pairwise(bounds)], axis=1)
    )
    variants = {
        "dv_layout": (jax.jit(lambda h, w: jnp.dot(h, w)), transposed),
        "vocabulary_split_4": (split, table),
    }
    result["default_ms"] = result["rows"][8]["ms"]
    for name, (fn, weights) in variants.items():
        out = np.asarray(fn(hidden[:8], weights))
        result[name] = {
            "ms": best_ms(fn, hidden[:8], weights),
            "bits_equal": out.tobytes() == reference.tobytes(),
            "max_difference": float(np.max(np.abs(out - reference))),
        }
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    result = {
        "engine": [row for d in args.dtypes.split(",") for row in engine_rows(args, d)],
        "head_float32": head_variants(args),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
