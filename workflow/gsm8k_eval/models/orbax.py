"""Upstream orbax checkpoints: ``orbax:/path``, ``gs://...`` and ``kaggle:<handle>``.

Weights are rewritten from upstream (gemma / tunix ``params.py``) names to HF names; the
SentencePiece ``.model`` is converted with the same BPE builder as the GGUF vocabulary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gsm8k_eval.io import read_json
from gsm8k_eval.models.hf_config import gemma3_hf_config, hf_text_config
from gsm8k_eval.models.layout import ModelSource, ModelSourceError, save_tensors, write_config
from gsm8k_eval.tokenizer import TOKENIZER_FILE, Tokenizer, build_sentencepiece_bpe, save_tokenizer

GEMMA3_SPM_TOKENIZER = "gs://gemma-data/tokenizers/tokenizer_gemma3.model"


def upstream_to_hf_tensors(params: dict[str, Any]) -> dict[str, np.ndarray]:
    """Upstream (gemma / tunix ``params.py``) text weights → HF names and layouts, float32.

    Input keys as tunix ``map_from_upstream_checkpoint`` reads them:
    ``{"transformer/layer_0/attn/q_einsum": {"w": (N, D, H)}, ...}``. Vision weights are dropped.
    """
    out: dict[str, np.ndarray] = {}
    norms = {
        "pre_attention_norm": "input_layernorm",
        "post_attention_norm": "post_attention_layernorm",
        "pre_ffw_norm": "pre_feedforward_layernorm",
        "post_ffw_norm": "post_feedforward_layernorm",
        "attn/_query_norm": "self_attn.q_norm",
        "attn/_key_norm": "self_attn.k_norm",
    }

    def proj(w: np.ndarray) -> np.ndarray:  # (N, D, H) → HF (N*H, D)
        return w.transpose(0, 2, 1).reshape(-1, w.shape[1])

    for module, leaves in params.items():
        path = module.split("/", 1)[1] if "/" in module else module
        value = {k: np.asarray(v, dtype=np.float32) for k, v in leaves.items()}
        if path.startswith(("siglip_encoder", "embedder/mm_")) or module.startswith("SigLiP"):
            continue
        if path == "embedder":
            out["model.embed_tokens.weight"] = value["input_embedding"]
            continue
        if path == "final_norm":
            out["model.norm.weight"] = value["scale"]
            continue
        layer, _, rest = path.partition("/")
        p = f"model.layers.{int(layer.removeprefix('layer_'))}."
        w = value.get("w")
        if rest in norms:
            out[p + norms[rest] + ".weight"] = value["scale"]
        elif rest == "attn/q_einsum":
            out[p + "self_attn.q_proj.weight"] = proj(w)
        elif rest == "attn/kv_einsum":
            out[p + "self_attn.k_proj.weight"] = proj(w[0])
            out[p + "self_attn.v_proj.weight"] = proj(w[1])
        elif rest == "attn/qkv_einsum":
            for i, name in enumerate("qkv"):
                out[p + f"self_attn.{name}_proj.weight"] = proj(w[i])
        elif rest == "attn/attn_vec_einsum":  # (N, H, D) → (D, N*H)
            out[p + "self_attn.o_proj.weight"] = w.reshape(-1, w.shape[-1]).T
        elif rest == "mlp/gating_einsum":  # (2, F, D)
            out[p + "mlp.gate_proj.weight"] = w[0]
            out[p + "mlp.up_proj.weight"] = w[1]
        elif rest == "mlp/linear":  # (F, D) → (D, F)
            out[p + "mlp.down_proj.weight"] = w.T
        else:
            raise ModelSourceError(f"unknown upstream parameter {module!r}")
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def _shape_summary(tensors: dict[str, np.ndarray]) -> dict[str, int]:
    vocab, hidden = tensors["model.embed_tokens.weight"].shape
    q = tensors["model.layers.0.self_attn.q_proj.weight"].shape[0]
    kv = tensors["model.layers.0.self_attn.k_proj.weight"].shape[0]
    head_dim = tensors["model.layers.0.self_attn.q_norm.weight"].shape[0]
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": tensors["model.layers.0.mlp.gate_proj.weight"].shape[0],
        "num_hidden_layers": 1 + max(int(k.split(".")[2]) for k in tensors if ".layers." in k),
        "num_attention_heads": q // head_dim,
        "num_key_value_heads": kv // head_dim,
        "head_dim": head_dim,
    }


def _hf_config_from_tunix(cfg: Any) -> dict[str, Any]:
    from tunix.models.gemma3.model import QueryPreAttentionNormalisation as Q

    by_head = cfg.query_pre_attn_norm == Q.BY_ONE_OVER_SQRT_HEAD_DIM
    scaling = None
    if cfg.global_scale_factor != 1.0:
        scaling = {"rope_type": "linear", "factor": cfg.global_scale_factor}
    return gemma3_hf_config(
        vocab_size=cfg.num_embed,
        hidden_size=cfg.embed_dim,
        intermediate_size=cfg.hidden_dim,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim,
        sliding_window=cfg.sliding_window_size,
        query_pre_attn_scalar=cfg.head_dim if by_head else cfg.embed_dim // cfg.num_heads,
        rope_theta=float(cfg.global_base_frequency),
        rope_local_base_freq=float(cfg.local_base_frequency),
        rope_scaling=scaling,
    )


def orbax_hf_config(tensors: dict[str, np.ndarray], config_path: str | None) -> dict[str, Any]:
    """The HF config of an upstream checkpoint, checked against its tensor shapes.

    Orbax checkpoints carry no config: use ``config_path`` (an HF config.json) if given, else
    the tunix Gemma 3 preset whose shapes match (its sliding window and RoPE settings).
    """
    from tunix.models.gemma3.model import ModelConfig

    shapes = _shape_summary(tensors)
    if config_path:
        config = hf_text_config(read_json(Path(config_path)))
    else:
        presets = [getattr(ModelConfig, n)() for n in dir(ModelConfig) if n.startswith("gemma3_")]
        matching = [_hf_config_from_tunix(c) for c in presets]
        matching = [c for c in matching if all(c[k] == v for k, v in shapes.items())]
        if not matching:
            raise ModelSourceError(f"no tunix Gemma 3 preset has shapes {shapes}; pass ?config=")
        config = matching[0]
    wrong = {k: (config.get(k), v) for k, v in shapes.items() if config.get(k) != v}
    if wrong:
        raise ModelSourceError(f"config disagrees with checkpoint shapes: {wrong}")
    return config


def sentencepiece_tokenizer(model_path: str) -> Tokenizer:
    """The exact tokenizer from a SentencePiece BPE ``.model`` file (local or gs://)."""
    from etils import epath
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(epath.Path(model_path).read_bytes())
    bpe = sentencepiece_model_pb2.TrainerSpec.ModelType.Value("BPE")
    norm = proto.normalizer_spec
    if (
        proto.trainer_spec.model_type != bpe
        or norm.add_dummy_prefix
        or norm.remove_extra_whitespaces
        or norm.name not in ("", "identity")
    ):
        raise ModelSourceError(f"{model_path}: want Gemma 3's BPE without any normalisation")
    pieces = proto.pieces  # piece types use the same numbers as GGUF token types
    hf = build_sentencepiece_bpe([p.piece for p in pieces], [p.score for p in pieces],
                                 [p.type for p in pieces])  # fmt: skip
    return Tokenizer(hf)


def convert_orbax(
    checkpoint: str, tokenizer_model: str, out: Path, config_path: str | None = None
) -> None:
    """Restores an upstream orbax checkpoint (as tunix does) and writes our layout."""
    from orbax import checkpoint as ocp

    params = ocp.StandardCheckpointer().restore(checkpoint)
    tensors = upstream_to_hf_tensors(params)
    config = orbax_hf_config(tensors, config_path)
    tokenizer = sentencepiece_tokenizer(tokenizer_model)
    if tokenizer.vocab_size > config["vocab_size"]:
        raise ModelSourceError("tokenizer is larger than the checkpoint's embedding")
    write_config(config, out)
    save_tensors(tensors, out)
    save_tokenizer(tokenizer.hf_tokenizer, out / TOKENIZER_FILE)


def fetch_orbax(src: ModelSource, out: Path) -> dict[str, Any]:
    """``orbax:/path`` or ``gs://path``; ``?tokenizer=`` (default: tunix's Gemma 3 .model)."""
    checkpoint = src.target if src.kind == "gs" else str(Path(src.target).resolve())
    tokenizer = src.options.get("tokenizer", GEMMA3_SPM_TOKENIZER)
    convert_orbax(checkpoint, tokenizer, out, src.options.get("config"))
    return {"checkpoint": checkpoint, "tokenizer": tokenizer}


def fetch_kaggle(src: ModelSource, out: Path) -> dict[str, Any]:
    """``kaggle:google/gemma-3/flax/<variant>``: an orbax dir plus ``tokenizer.model``."""
    import kagglehub

    handle = src.target + (f"/{src.revision}" if src.revision else "")
    try:
        root = Path(kagglehub.model_download(handle))
    except Exception as err:  # kagglehub raises several unrelated types
        raise ModelSourceError(
            f"cannot download kaggle:{handle} ({err}); set KAGGLE_USERNAME/KAGGLE_KEY and "
            "accept the Gemma license on kaggle.com"
        ) from err
    checkpoints = [p for p in root.iterdir() if p.is_dir() and (p / "_METADATA").exists()]
    if len(checkpoints) != 1:
        raise ModelSourceError(f"expected one orbax checkpoint in {root}, found {checkpoints}")
    tokenizer = src.options.get("tokenizer", str(root / "tokenizer.model"))
    convert_orbax(str(checkpoints[0]), tokenizer, out, src.options.get("config"))
    return {"handle": handle, "checkpoint": checkpoints[0].name}
