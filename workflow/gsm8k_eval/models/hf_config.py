"""HF Gemma 3 text configs and their mapping to tunix's ``ModelConfig``.

Owns the facts: the 5 local : 1 global layer pattern, transformers' ``Gemma3TextConfig``
defaults, what tunix's Gemma3 can run, and how HF config keys become tunix fields.
"""

from __future__ import annotations

from typing import Any

from gsm8k_eval.models.layout import ModelSourceError

DTYPES = ("float32", "bfloat16")
GEMMA3_PATTERN = ("sliding_attention",) * 5 + ("full_attention",)


def gemma3_hf_config(
    *,
    vocab_size: int,
    hidden_size: int,
    intermediate_size: int,
    num_hidden_layers: int,
    num_attention_heads: int,
    num_key_value_heads: int,
    head_dim: int,
    sliding_window: int,
    query_pre_attn_scalar: float,
    rope_theta: float = 1_000_000.0,
    rope_local_base_freq: float = 10_000.0,
    rope_scaling: dict[str, Any] | None = None,
    rms_norm_eps: float = 1e-6,
    max_position_embeddings: int = 32_768,
    torch_dtype: str = "float32",
) -> dict[str, Any]:
    """An HF ``Gemma3TextConfig``-style dict (the keys ``model_config_from_hf`` reads)."""
    layer_types = [GEMMA3_PATTERN[i % len(GEMMA3_PATTERN)] for i in range(num_hidden_layers)]
    return {
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_key_value_heads,
        "head_dim": head_dim,
        "sliding_window": sliding_window,
        "sliding_window_pattern": len(GEMMA3_PATTERN),
        "layer_types": layer_types,
        "query_pre_attn_scalar": query_pre_attn_scalar,
        "rope_theta": rope_theta,
        "rope_local_base_freq": rope_local_base_freq,
        "rope_scaling": rope_scaling,
        "rms_norm_eps": rms_norm_eps,
        "max_position_embeddings": max_position_embeddings,
        "hidden_activation": "gelu_pytorch_tanh",
        "attention_bias": False,
        "attn_logit_softcapping": None,
        "final_logit_softcapping": None,
        "tie_word_embeddings": True,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
        "torch_dtype": torch_dtype,
    }


# transformers' Gemma3TextConfig defaults: multimodal configs (e.g. gemma-3-4b-it) store a
# sparse text_config and rely on them.
HF_GEMMA3_TEXT_DEFAULTS: dict[str, Any] = {
    "model_type": "gemma3_text",
    "vocab_size": 262_208,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "max_position_embeddings": 131_072,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1_000_000.0,
    "rope_local_base_freq": 10_000.0,
    "rope_scaling": None,
    "query_pre_attn_scalar": 256,
    "sliding_window": 4096,
    "sliding_window_pattern": 6,
    "attn_logit_softcapping": None,
    "final_logit_softcapping": None,
}


def hf_text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The text part of an HF Gemma 3 config, completed with transformers' defaults."""
    text = config.get("text_config") or config
    return HF_GEMMA3_TEXT_DEFAULTS | text


def _rope(config: dict[str, Any]) -> tuple[float, float, float, float]:
    """(local base, global base, local scale, global scale) from either HF rope format."""
    params = config.get("rope_parameters")
    if isinstance(params, dict) and "full_attention" in params:
        full, local = params["full_attention"], params.get("sliding_attention", {})
    else:
        full = dict(config.get("rope_scaling") or {})
        full["rope_theta"] = config.get("rope_theta", 1_000_000.0)
        local = {"rope_theta": config.get("rope_local_base_freq", 10_000.0)}

    def scale(p: dict[str, Any]) -> float:
        kind = p.get("rope_type", p.get("type", "default"))
        if kind not in ("default", "linear"):
            raise ModelSourceError(f"unsupported rope type {kind!r} (tunix supports linear)")
        return float(p.get("factor", 1.0)) if kind == "linear" else 1.0

    return float(local["rope_theta"]), float(full["rope_theta"]), scale(local), scale(full)


def _check_layer_pattern(config: dict[str, Any]) -> None:
    n = config["num_hidden_layers"]
    want = [GEMMA3_PATTERN[i % len(GEMMA3_PATTERN)] for i in range(n)]
    if config.get("layer_types") not in (None, want):
        raise ModelSourceError("layer_types differ from tunix's fixed 5 local : 1 global pattern")
    patterns = {config.get(k, 6) for k in ("sliding_window_pattern", "_sliding_window_pattern")}
    if patterns != {6}:
        raise ModelSourceError("tunix Gemma3 needs sliding_window_pattern 6")


def _check_supported(config: dict[str, Any]) -> None:
    if config.get("model_type", "gemma3_text") not in ("gemma3_text", "gemma3"):
        raise ModelSourceError(f"not a Gemma 3 text config: {config.get('model_type')!r}")
    for key in ("attn_logit_softcapping", "final_logit_softcapping"):
        if config.get(key) is not None:
            raise ModelSourceError(f"{key} is not supported by tunix Gemma3")
    act = config.get("hidden_activation") or config.get("hidden_act") or "gelu_pytorch_tanh"
    if act != "gelu_pytorch_tanh":
        raise ModelSourceError(f"activation {act!r} differs from tunix's tanh GELU")
    if config.get("use_bidirectional_attention"):
        raise ModelSourceError("bidirectional attention is not supported by tunix Gemma3")
    if not config.get("tie_word_embeddings", True):
        raise ModelSourceError("untied output embeddings are not supported by tunix Gemma3")
    _check_layer_pattern(config)


def _int_if_integral(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def model_config_from_hf(config: dict[str, Any], dtype: str = "float32") -> Any:
    """A tunix Gemma3 ``ModelConfig`` derived from an HF Gemma 3 (text) config dict."""
    import jax.numpy as jnp
    from tunix.models.gemma3 import model as gemma3

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    config = hf_text_config(config)
    _check_supported(config)
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    scalar = config.get("query_pre_attn_scalar", head_dim)
    norm = gemma3.QueryPreAttentionNormalisation
    if scalar == head_dim:
        query_norm = norm.BY_ONE_OVER_SQRT_HEAD_DIM
    elif scalar == hidden // heads:
        query_norm = norm.BY_ONE_OVER_SQRT_EMBED_DIM_DIV_NUM_HEADS
    else:
        raise ModelSourceError(f"query_pre_attn_scalar {scalar} is not representable in tunix")
    local_base, global_base, local_scale, global_scale = _rope(config)
    return gemma3.ModelConfig(
        num_layers=config["num_hidden_layers"],
        num_embed=config["vocab_size"],
        embed_dim=hidden,
        hidden_dim=config["intermediate_size"],
        num_heads=heads,
        head_dim=head_dim,
        num_kv_heads=config.get("num_key_value_heads", heads),
        sliding_window_size=config["sliding_window"],
        local_base_frequency=_int_if_integral(local_base),
        global_base_frequency=_int_if_integral(global_base),
        local_scale_factor=local_scale,
        global_scale_factor=global_scale,
        query_pre_attn_norm=query_norm,
        param_dtype=getattr(jnp, dtype),
    )
