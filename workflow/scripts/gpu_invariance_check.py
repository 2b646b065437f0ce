"""One-GPU batch-invariance and throughput check of the engine (prepared for an H100/H200).

A random-weight Gemma 3 with the real 1B shape (`ModelConfig.gemma3_1b_it()` dims) in bfloat16;
every prompt alone (bs=1) vs inside batches of 8, 32, 64: tokens and float32 logits must be
bitwise equal. Also times each batch size and runs a small negative control (the batch-dependent
layout). `--sampler static` checks the static `FixedSampler` instead of the continuous-batching
engine (`fixed`, the default); for batch sizes above 8 give the engine that many slots
(`--decode-rows 64`: batch sizes above `decode_rows` are capped). Prints one JSON object as its
last stdout line (and writes it to --out).

    python workflow/scripts/gpu_invariance_check.py --out gpu_result.json     # GPU, < 8 min
    JAX_PLATFORMS=cpu python workflow/scripts/gpu_invariance_check.py --tiny   # CPU smoke test

If invariance fails on a GPU, rerun with the XLA flags listed in docs/sampler.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path


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
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    defaults = ("1,8", 8, 8, 64) if args.tiny else ("1,8,32,64", 64, 64, 512)
    args.batch_sizes = args.batch_sizes or defaults[0]
    args.prompts = args.prompts or defaults[1]
    args.steps = args.steps or defaults[2]
    args.max_prompt_length = args.max_prompt_length or defaults[3]
    return args


def build_model(tiny: bool, dtype: str):
    """Random-weight Gemma 3 (1B dims, or tiny), weights drawn on the device."""
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from tunix.models.gemma3 import model as gemma3

    config = gemma3.ModelConfig.gemma3_1b_it()
    if tiny:
        config = replace(config, num_layers=6, num_embed=512, embed_dim=64, hidden_dim=128,
                         head_dim=32, sliding_window_size=8)
    config = replace(config, param_dtype=getattr(jnp, dtype))
    model = nnx.eval_shape(lambda: gemma3.Gemma3(config, rngs=nnx.Rngs(0)))
    state = nnx.state(model)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    new = [_random_leaf(k, x, config.num_embed) for k, x in zip(keys, leaves, strict=True)]
    nnx.update(model, jax.tree.unflatten(treedef, new))
    return model, config


def _random_leaf(key, leaf, vocab: int):
    """Scales that keep greedy outputs varied (the default init has zero MLPs)."""
    import jax
    import jax.numpy as jnp

    if leaf.ndim == 1:
        scale = 0.3
    elif leaf.shape[0] == vocab:
        scale = 0.02
    else:
        scale = 1.0 / float(leaf.shape[-2]) ** 0.5
    return (scale * jax.random.normal(key, leaf.shape, jnp.float32)).astype(leaf.dtype)


class _Ids:
    """Tokenizer stand-in: decode shows the ids."""

    def decode(self, ids) -> str:
        return " ".join(map(str, ids))


def make_prompts(n: int, max_len: int, vocab: int) -> list[list[int]]:
    import numpy as np

    rng = np.random.default_rng(0)
    # Lengths in (max_len / 2, max_len]: one power-of-two bucket for the control, several
    # 64-token buckets for the fixed sampler.
    lengths = rng.integers(max_len // 2 + 1, max_len + 1, size=n)
    return [[2, *rng.integers(3, vocab, size=int(k) - 1).tolist()] for k in lengths]


def run_all(sampler, prompts: list[list[int]], bs: int):
    """All prompts in one call, `bs` in flight (the engine) or in batches of `bs` (static)."""
    return sampler.generate(prompts, max_in_flight=bs)


def bits(generation) -> tuple:
    import numpy as np

    logits = np.asarray(generation.token_logits, np.float32).view(np.uint32)
    return tuple(generation.tokens), tuple(logits.tolist())


def check(args: argparse.Namespace) -> dict:
    import jax

    from gsm8k_eval.sampler import SamplerConfig, make_sampler

    start = time.perf_counter()
    model, config = build_model(args.tiny, args.dtype)
    prompts = make_prompts(args.prompts, args.max_prompt_length, config.num_embed)
    sampler_config = SamplerConfig(args.max_prompt_length, args.steps, eos_tokens=(1,))
    sampler = make_sampler(args.sampler, model, _Ids(), sampler_config, args.decode_rows,
                           args.segment_steps)
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    sampler.generate(prompts[: max(sizes)])  # compile every bucket and the decode program
    reference, throughput, mismatches = None, [], []
    for bs in sizes:
        t0 = time.perf_counter()
        out = run_all(sampler, prompts, bs)
        seconds = time.perf_counter() - t0
        tokens = sum(len(g.tokens) for g in out)
        throughput.append({"batch_size": bs, "seconds": round(seconds, 3), "tokens": tokens,
                           "tokens_per_s": round(tokens / seconds, 1),
                           "slot_utilization": sampler.last_timing.get("slot_utilization")})
        if reference is None:
            reference = [bits(g) for g in out]
        mismatches += [{"batch_size": bs, "prompt": i} for i, g in enumerate(out)
                       if bits(g) != reference[i]]
    control = negative_control(model, prompts[:8], sampler_config)
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
        "sampler": args.sampler,
        "invariant": not mismatches,
        "mismatches": mismatches,
        "throughput": throughput,
        "negative_control": control,
        "distinct_outputs": len(set(reference)),
        "total_seconds": round(time.perf_counter() - start, 1),
    }


def negative_control(model, prompts, config) -> dict:
    """The batch-dependent layout (stock-like): bs=1 vs bs=8 on the same prompts."""
    from gsm8k_eval.sampler import FixedSampler, Layout

    sampler = FixedSampler(model, _Ids(), config, Layout(batch_invariant=False))
    alone = [bits(sampler.generate([p])[0]) for p in prompts]
    batched = [bits(g) for g in sampler.generate(prompts)]
    differ = sum(a != b for a, b in zip(alone, batched, strict=True))
    return {"prompts": len(prompts), "differ_bs1_vs_bs8": differ}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = check(args)
    text = json.dumps(result, sort_keys=True)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
