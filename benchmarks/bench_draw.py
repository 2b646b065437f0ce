"""Milliseconds of one sampled draw on [rows, vocab] float32 logits, by part (issue 24).

    .venv/bin/python benchmarks/bench_draw.py --rows 8 --vocab 262144

Best of `--repeats` warm calls of each jitted function on random logits: greedy argmax, the
engine's draw (`DrawConfig.choose`, top-k as a Python int: the `lax.top_k` path), the filter
alone on both paths (a traced top-k sorts the row) and the Gumbel noise with its argmax.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sampler import best_ms


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=262_144)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp
    import numpy as np

    from gsm8k_eval import draw

    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(args.rows, args.vocab)).astype(np.float32) * 3)
    keys = draw.key_data(draw.request_keys(1, [(f"q{i}", 0) for i in range(args.rows)]))
    steps = jnp.arange(args.rows, dtype=jnp.int32)
    t, k, p = args.temperature, args.top_k, args.top_p
    config = draw.DrawConfig(t, k, p)

    def noise(x):
        gumbel = jax.vmap(lambda key: jax.random.gumbel(key, x.shape[-1:], jnp.float32))
        return jnp.argmax(x + gumbel(draw.step_keys(keys, steps)), axis=-1)

    parts = {
        "greedy argmax": (jax.jit(draw.greedy), logits),
        "draw, lax.top_k path (the engine's)": (
            jax.jit(lambda x: config.choose(x, keys, steps)),
            logits,
        ),
        "filter, lax.top_k path": (jax.jit(lambda x: draw.filter_logits(x, t, k, p)), logits),
        "filter, full sort (traced top-k)": (
            jax.jit(lambda x, kk: draw.filter_logits(x, t, kk, p)),
            logits,
            jnp.int32(k),
        ),
        "Gumbel noise + argmax": (jax.jit(noise), logits),
    }
    print(f"| part ({args.rows} x {args.vocab}) | ms |\n|---|---|")
    for name, (fn, *inputs) in parts.items():
        print(f"| {name} | {best_ms(fn, *inputs, repeats=args.repeats):.1f} |", flush=True)


if __name__ == "__main__":
    main()
