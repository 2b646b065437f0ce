"""``random:<shape>[?seed=N&...]``: random-weight Gemma 3 models with a byte-level tokenizer.

``random:tiny`` is the test model; ``random:gemma3-1b`` and ``random:gemma3-270m`` have the real
shapes (vocabulary 262144; the tokenizer uses its first few hundred ids), so the pipeline and
benchmarks can run at real size without a download. Options override the shape (``layers``,
``embed_dim``, ``hidden_dim``, ``vocab``: small versions for tests) and the ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from gsm8k_eval.models.hf_config import gemma3_hf_config
from gsm8k_eval.models.layout import ModelSource, ModelSourceError, save_tensors, write_config
from gsm8k_eval.tokenizer import TOKENIZER_FILE, build_tiny_tokenizer, save_tokenizer


@dataclass(frozen=True)
class TinyGemmaSpec:
    """Shape of the random test model (6 layers: five local, one global)."""

    num_layers: int = 6
    embed_dim: int = 64
    hidden_dim: int = 128
    num_heads: int = 2
    head_dim: int = 32
    num_kv_heads: int = 1
    sliding_window: int = 16
    seed: int = 0
    vocab_size: int | None = None  # None: the tokenizer's


RANDOM_SHAPES: dict[str, TinyGemmaSpec] = {
    "tiny": TinyGemmaSpec(),
    "gemma3-1b": TinyGemmaSpec(26, 1152, 6912, 4, 256, 1, 512, vocab_size=262144),
    "gemma3-270m": TinyGemmaSpec(18, 640, 2048, 4, 256, 1, 512, vocab_size=262144),
}
_OVERRIDES = {
    "layers": "num_layers",
    "embed_dim": "embed_dim",
    "hidden_dim": "hidden_dim",
    "vocab": "vocab_size",
}


def tiny_random_weights(spec: TinyGemmaSpec, vocab_size: int) -> dict[str, np.ndarray]:
    """Deterministic float32 HF-named weights, scaled so greedy decoding is not degenerate.

    With tied embeddings and small block outputs the residual stream is dominated by the
    current token and greedy decoding just repeats it; large post-norm scales (x4) and sharp
    q/k norms (x3) make the blocks dominate, so outputs vary with the prompt.
    """
    rng = np.random.default_rng(spec.seed)
    d, f, hd = spec.embed_dim, spec.hidden_dim, spec.head_dim
    q, kv = spec.num_heads * hd, spec.num_kv_heads * hd

    def dense(out_dim: int, in_dim: int) -> np.ndarray:
        return rng.normal(0.0, in_dim**-0.5, (out_dim, in_dim))

    def norm(dim: int, center: float = 0.0) -> np.ndarray:  # stored w; tunix scales by 1 + w
        return rng.normal(center, 0.1, (dim,))

    tensors = {"model.embed_tokens.weight": rng.normal(0.0, d**-0.5, (vocab_size, d))}
    for i in range(spec.num_layers):
        p = f"model.layers.{i}."
        tensors |= {
            p + "self_attn.q_proj.weight": dense(q, d),
            p + "self_attn.k_proj.weight": dense(kv, d),
            p + "self_attn.v_proj.weight": dense(kv, d),
            p + "self_attn.o_proj.weight": dense(d, q),
            p + "self_attn.q_norm.weight": norm(hd, 2.0),
            p + "self_attn.k_norm.weight": norm(hd, 2.0),
            p + "mlp.gate_proj.weight": dense(f, d),
            p + "mlp.up_proj.weight": dense(f, d),
            p + "mlp.down_proj.weight": dense(d, f),
            p + "input_layernorm.weight": norm(d),
            p + "post_attention_layernorm.weight": norm(d, 3.0),
            p + "pre_feedforward_layernorm.weight": norm(d),
            p + "post_feedforward_layernorm.weight": norm(d, 3.0),
        }
    tensors["model.norm.weight"] = norm(d)
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}


def random_spec(src: ModelSource) -> TinyGemmaSpec:
    """The shape and seed a ``random:`` source names."""
    if src.target not in RANDOM_SHAPES:
        raise ModelSourceError(
            f"unknown random model {src.target!r}; expected one of {', '.join(RANDOM_SHAPES)}"
        )
    unknown = set(src.options) - {"seed", *_OVERRIDES}
    if unknown:
        raise ModelSourceError(f"unknown random:{src.target} options {sorted(unknown)}")
    changes = {_OVERRIDES[k]: int(v) for k, v in src.options.items() if k in _OVERRIDES}
    return replace(RANDOM_SHAPES[src.target], seed=int(src.options.get("seed", 0)), **changes)


def fetch_random(src: ModelSource, out: Path) -> dict[str, Any]:
    """``random:<shape>[?seed=N&layers=L&embed_dim=D&hidden_dim=F&vocab=V]``."""
    spec = random_spec(src)
    tok = build_tiny_tokenizer()
    vocab_size = spec.vocab_size or tok.get_vocab_size(with_added_tokens=True)
    if vocab_size < tok.get_vocab_size(with_added_tokens=True):
        raise ModelSourceError(f"vocab {vocab_size} is smaller than the tokenizer's")
    config = gemma3_hf_config(
        vocab_size=vocab_size,
        hidden_size=spec.embed_dim,
        intermediate_size=spec.hidden_dim,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        head_dim=spec.head_dim,
        sliding_window=spec.sliding_window,
        query_pre_attn_scalar=spec.head_dim,
        max_position_embeddings=4096 if src.target == "tiny" else 32_768,
    )
    write_config(config, out)
    save_tensors(tiny_random_weights(spec, vocab_size), out)
    save_tokenizer(tok, out / TOKENIZER_FILE)
    if src.target == "tiny" and not src.options.keys() - {"seed"}:
        return {"seed": spec.seed}
    return {"seed": spec.seed, "shape": src.target, **{k: getattr(spec, k) for k in _SHAPE_KEYS}}


_SHAPE_KEYS = ("num_layers", "embed_dim", "hidden_dim", "num_heads", "head_dim", "vocab_size")
