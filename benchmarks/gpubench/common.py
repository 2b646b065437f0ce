"""Shared pieces of the GPU benchmark: the random model, prompts, output digests, the run log.

Nothing here imports JAX at import time (the flag-variant workers set XLA_FLAGS first).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

START = time.perf_counter()


def log(message: str) -> None:
    """One progress line on stdout: UTC time and seconds since this process started."""
    stamp = time.strftime("%H:%M:%S", time.gmtime())
    print(f"[{stamp} +{time.perf_counter() - START:6.1f}s] {message}", flush=True)


def elapsed() -> float:
    return time.perf_counter() - START


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic write (a timeout never leaves half a file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


@contextlib.contextmanager
def measuring(lock_file: Path | None) -> Iterator[None]:
    """Hold the machine-wide measurement lock: timed runs of concurrent processes never overlap."""
    if lock_file is None:
        yield
        return
    with open(lock_file, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- model and prompts ---------------------------------------------------------------------------

TINY_DIMS = dict(
    num_layers=6,
    num_embed=512,
    embed_dim=64,
    hidden_dim=128,
    head_dim=32,
    sliding_window_size=8,
)


def build_model(tiny: bool, dtype: str, seed: int = 1) -> tuple[Any, Any]:
    """Random-weight Gemma 3 (tunix `ModelConfig.gemma3_1b_it()` dims, or tiny), drawn on the
    device (`gpu_bench.py` and `gpu_invariance_check.py` both use it: same seeds, same weights)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from tunix.models.gemma3 import model as gemma3

    config = gemma3.ModelConfig.gemma3_1b_it()
    if tiny:
        config = replace(config, **TINY_DIMS)
    config = replace(config, param_dtype=getattr(jnp, dtype))
    model = nnx.eval_shape(lambda: gemma3.Gemma3(config, rngs=nnx.Rngs(0)))
    leaves, treedef = jax.tree.flatten(nnx.state(model))
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    new = [_random_leaf(k, x, config.num_embed) for k, x in zip(keys, leaves, strict=True)]
    nnx.update(model, jax.tree.unflatten(treedef, new))
    return model, config


def _random_leaf(key: Any, leaf: Any, vocab: int) -> Any:
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


def weight_bytes(model: Any) -> int:
    """Bytes of all model parameters."""
    import jax
    from flax import nnx

    return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(nnx.state(model))))


class Ids:
    """Tokenizer stand-in (ids in, ids shown): what our samplers and stock tunix call."""

    def encode(self, text: str) -> list[int]:
        return [int(x) for x in text.split()]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(map(str, ids))

    def bos_id(self) -> int:
        return 2

    def eos_id(self) -> int:
        return 1

    def pad_id(self) -> int:
        return 0


def make_prompts(n: int, max_len: int, vocab: int, seed: int = 0) -> list[list[int]]:
    """`n` prompts of random tokens, lengths in (max_len / 2, max_len], BOS first."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = rng.integers(max_len // 2 + 1, max_len + 1, size=n)
    return [[2, *rng.integers(3, vocab, size=int(k) - 1).tolist()] for k in lengths]


# -- samplers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineOptions:
    """Engine settings passed to `make_sampler` (None: the schema default)."""

    decode_rows: int
    segment_steps: int | None = None
    prefill_rows: int | None = None


def prefill_rows_supported() -> bool:
    """Whether this checkout's `make_sampler` takes `prefill_rows` (issue 21 item 1)."""
    from gsm8k_eval.sampling import make_sampler

    return "prefill_rows" in inspect.signature(make_sampler).parameters


def sampler(name: str, model: Any, config: Any, options: EngineOptions) -> Any:
    """`make_sampler(name, ...)`; `prefill_rows` only when given, and not to stock tunix."""
    from gsm8k_eval.sampling import make_sampler

    given = options.prefill_rows is not None and name != "tunix"
    extra = {"prefill_rows": options.prefill_rows} if given else {}
    return make_sampler(
        name,
        model,
        Ids(),
        config,
        decode_rows=options.decode_rows,
        segment_steps=options.segment_steps,
        **extra,
    )


def digest(generation: Any, limit: int | None = None) -> str:
    """sha256 of a generation's tokens and float32 logit bits (the first `limit` of them)."""
    import numpy as np

    tokens = np.asarray(generation.tokens[:limit], np.int64)
    logits = np.asarray(generation.token_logits[:limit], np.float32).view(np.uint32)
    return hashlib.sha256(tokens.tobytes() + b"|" + logits.tobytes()).hexdigest()[:16]


def tokens_digest(generation: Any) -> str:
    """sha256 of the tokens alone (stock tunix exposes no per-token logits)."""
    import numpy as np

    data = np.asarray(generation.tokens, np.int64).tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def timing_of(sampler_: Any) -> dict[str, float]:
    """The sampler's `last_timing`, rounded."""
    return {k: round(float(v), 4) for k, v in getattr(sampler_, "last_timing", {}).items()}


def stats(values: Sequence[float]) -> dict[str, float]:
    """min / median / p90 / max / mean of a list."""
    import numpy as np

    if not values:
        return {}
    a = np.asarray(values, np.float64)
    return {
        "n": len(a),
        "min": float(a.min()),
        "median": float(np.median(a)),
        "p90": float(np.percentile(a, 90)),
        "max": float(a.max()),
        "mean": round(float(a.mean()), 2),
    }


def env_info() -> dict[str, Any]:
    """Device, versions and XLA flags of this process (JAX started)."""
    import jax

    from gsm8k_eval.fingerprint import package_versions

    return {
        "device": str(jax.devices()[0]),
        "device_kind": getattr(jax.devices()[0], "device_kind", ""),
        "platform": jax.default_backend(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "versions": package_versions(("jax", "jaxlib", "flax", "google-tunix", "qwix", "numpy")),
    }


def without_option(argv: list[str], name: str) -> list[str]:
    """argv without `name VALUE` / `name=VALUE`."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == name:
            skip = True
        elif not item.startswith(name + "="):
            out.append(item)
    return out
