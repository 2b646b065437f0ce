"""Tokenizers: the tiny test tokenizer, the exact Gemma 3 tokenizer rebuilt from the GGUF."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from model_fixtures import REAL_SOURCE, converted_270m

from gsm8k_eval.io import read_jsonl
from gsm8k_eval.tokenizer import (
    BYTE,
    CONTROL,
    NORMAL,
    Tokenizer,
    build_sentencepiece_bpe,
    build_tiny_tokenizer,
    sentencepiece_merges,
)

CHAT = "<start_of_turn>user\nJanet has 16 eggs.<end_of_turn>\n<start_of_turn>model\n"


@pytest.fixture(scope="session")
def gemma_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The converted 270M GGUF, converted once per run (test_models.py uses the same)."""
    return converted_270m(tmp_path_factory)


@pytest.fixture(scope="session")
def gemma_tok(gemma_model_dir: Path) -> Tokenizer:
    return Tokenizer.from_dir(gemma_model_dir)


@pytest.fixture(scope="session")
def gsm8k_test(gsm8k_dir: Path) -> list[dict]:
    return read_jsonl(gsm8k_dir / "test.jsonl")


# Tiny tokenizer ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> Tokenizer:
    return Tokenizer(build_tiny_tokenizer())


def test_tiny_special_ids(tiny: Tokenizer) -> None:
    assert (tiny.pad_id, tiny.eos_id, tiny.bos_id) == (0, 1, 2)
    assert tiny.token_to_id("<unk>") == 3
    assert 300 <= tiny.vocab_size <= 512
    # tunix's TokenizerAdapter calls these as methods; our contract reads them as properties.
    assert (tiny.pad_id(), tiny.eos_id(), tiny.bos_id()) == (0, 1, 2)


@pytest.mark.parametrize(
    "text",
    ["Janet has 16 eggs.", "  two  spaces\n\nand\ttabs ", "ünïcödé ✓ 😀 中文", "#### 18", ""],
)
def test_tiny_round_trip(tiny: Tokenizer, text: str) -> None:
    ids = tiny.encode(text)
    assert ids[0] == tiny.bos_id
    assert tiny.decode(ids) == text
    assert tiny.encode(text, add_bos=False) == ids[1:]


def test_tiny_byte_fallback_and_merges(tiny: Tokenizer) -> None:
    assert tiny.encode("😀", add_bos=False) == [
        tiny.token_to_id(f"<0x{b:02X}>") for b in "😀".encode()
    ]
    assert tiny.encode(" the", add_bos=False) == [tiny.token_to_id("▁the")]


def test_tiny_chat_specials(tiny: Tokenizer) -> None:
    ids = tiny.encode(CHAT)
    sot, eot = tiny.token_to_id("<start_of_turn>"), tiny.token_to_id("<end_of_turn>")
    assert ids[1] == sot and ids.count(sot) == 2 and ids.count(eot) == 1
    assert tiny.decode(ids, skip_special_tokens=False) == "<bos>" + CHAT
    assert tiny.decode(ids) == CHAT.replace("<start_of_turn>", "").replace("<end_of_turn>", "")


def test_tunix_adapter_accepts_wrapper(tiny: Tokenizer) -> None:
    from tunix.generate.tokenizer_adapter import TokenizerAdapter

    adapter = TokenizerAdapter(tiny)
    assert (adapter.bos_id(), adapter.eos_id(), adapter.pad_id()) == (2, 1, 0)
    assert adapter.encode("hi") == tiny.encode("hi")
    assert adapter.decode(tiny.encode("hi")) == "hi"


def test_from_dir_and_file(tmp_path: Path) -> None:
    build_tiny_tokenizer().save(str(tmp_path / "tokenizer.json"))
    a = Tokenizer.from_dir(tmp_path)
    b = Tokenizer.from_dir(tmp_path / "tokenizer.json")
    assert a.encode("Janet") == b.encode("Janet")


# SentencePiece → BPE conversion on a hand-made vocabulary -------------------------------------


def test_sentencepiece_merges_follow_piece_scores() -> None:
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "a", "b", "c", "ab", "bc", "abc"]
    scores = [0, 0, 0, 0, -1, -2, -3, -5, -4, -6]
    types = [CONTROL] * 3 + [2] + [NORMAL] * 6
    merges = sentencepiece_merges(tokens, scores, types)
    # "bc" scores higher than "ab", so it is merged first; "abc" has two splits.
    assert merges == [("b", "c"), ("a", "b"), ("a", "bc"), ("ab", "c")]
    tok = Tokenizer(build_sentencepiece_bpe(tokens, scores, types))
    assert tok.encode("abc", add_bos=False) == [9]
    assert tok.encode("abab", add_bos=False) == [7, 7]


def test_sentencepiece_bpe_uses_byte_fallback() -> None:
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "a"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [CONTROL, CONTROL, CONTROL, 2, NORMAL] + [BYTE] * 256
    tok = Tokenizer(build_sentencepiece_bpe(tokens, [0.0] * len(tokens), types))
    ids = tok.encode("aé", add_bos=False)
    assert ids == [4, 5 + 0xC3, 5 + 0xA9]
    assert tok.decode(ids) == "aé"


# The exact Gemma 3 tokenizer (real 270M GGUF) -------------------------------------------------


@pytest.mark.slow
def test_gemma_special_ids(gemma_tok: Tokenizer) -> None:
    assert (gemma_tok.pad_id, gemma_tok.eos_id, gemma_tok.bos_id) == (0, 1, 2)
    assert gemma_tok.token_to_id("<unk>") == 3
    assert gemma_tok.token_to_id("<start_of_turn>") == 105
    assert gemma_tok.token_to_id("<end_of_turn>") == 106
    assert gemma_tok.vocab_size == 262_144


@pytest.mark.slow
def test_gemma_chat_template_specials(gemma_tok: Tokenizer) -> None:
    ids = gemma_tok.encode(CHAT)
    assert ids[:2] == [2, 105]
    assert ids.count(105) == 2 and ids.count(106) == 1
    assert gemma_tok.hf_tokenizer.id_to_token(ids[2]) == "user"
    assert gemma_tok.decode(ids, skip_special_tokens=False) == "<bos>" + CHAT
    assert gemma_tok.decode(gemma_tok.encode("Answer: 18<end_of_turn>")) == "Answer: 18"


@pytest.mark.slow
def test_gemma_janet_is_one_token(gemma_tok: Tokenizer, gsm8k_test: list[dict]) -> None:
    ids = gemma_tok.encode(gsm8k_test[0]["question"])
    assert ids[0] == 2
    assert ids[1] == 209885 and gemma_tok.hf_tokenizer.id_to_token(209885) == "Janet"


@pytest.mark.slow
def test_gemma_gsm8k_test_token_total(gemma_tok: Tokenizer, gsm8k_test: list[dict]) -> None:
    assert len(gsm8k_test) == 1319
    encoded = [gemma_tok.encode(ex["question"]) for ex in gsm8k_test]
    assert sum(len(ids) for ids in encoded) == 81_332


@pytest.mark.slow
@pytest.mark.parametrize("split", ["test", "train"])
def test_gemma_round_trips_gsm8k(gemma_tok: Tokenizer, split: str, gsm8k_dir: Path) -> None:
    path = gsm8k_dir / f"{split}.jsonl"
    texts = [ex[key] for ex in read_jsonl(path) for key in ("question", "answer")]
    decoded = [gemma_tok.decode(gemma_tok.encode(text)) for text in texts]
    mismatches = [t for t, d in zip(texts, decoded, strict=True) if t != d]
    assert not mismatches, f"{len(mismatches)} texts do not round-trip, e.g. {mismatches[0]!r}"


@pytest.mark.slow
def test_gemma_whitespace_and_bytes(gemma_tok: Tokenizer) -> None:
    for text in ["a  b   c\n\n\nd\t\te", " leading and trailing ", "ünï 😀 中文 \u0007"]:
        assert gemma_tok.decode(gemma_tok.encode(text)) == text
    # Runs of spaces and newlines are single user-defined pieces, as in SentencePiece.
    assert gemma_tok.encode("\n\n", add_bos=False) == [108]
    assert gemma_tok.encode("  ", add_bos=False) == [138]


BLOCK_TORCH = """
import importlib.abc, sys
ATTEMPTS = []
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            ATTEMPTS.append(name)
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, _NoTorch())
"""


@pytest.mark.slow
def test_conversion_runs_without_torch(tmp_path: Path) -> None:
    """Fetch (GGUF → safetensors + tokenizer) and tokenize with torch unimportable."""
    script = BLOCK_TORCH + textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from gsm8k_eval.models import fetch_model
        from gsm8k_eval.tokenizer import Tokenizer
        out = fetch_model({REAL_SOURCE!r}, Path({str(tmp_path / "model")!r}))
        tok = Tokenizer.from_dir(out)
        assert tok.encode("Janet")[1:] == [209885], tok.encode("Janet")
        assert "torch" not in sys.modules
        assert not ATTEMPTS, f"something tried to import torch: {{ATTEMPTS}}"
        try:
            import torch  # noqa: F401
        except ImportError:
            print("TORCH-BLOCKED-OK")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TORCH-BLOCKED-OK" in result.stdout
