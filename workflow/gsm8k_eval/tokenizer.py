"""Exact Gemma-style tokenizers: building `tokenizer.json` files and a thin wrapper.

Gemma 3 uses a SentencePiece BPE model with byte fallback, no dummy prefix and spaces written
as ``▁``. :func:`build_sentencepiece_bpe` rebuilds it as an HF ``tokenizers`` BPE from the
GGUF vocabulary (``tokens``/``scores``/``token_type``): merges are ranked by the score of the
merged piece, exactly as SentencePiece picks the best-scoring pair. :func:`build_tiny_tokenizer`
makes a ~400-token tokenizer of the same shape for the random test model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import AddedToken, decoders, models, normalizers
from tokenizers import Tokenizer as HFTokenizer

SPACE = "▁"
TOKENIZER_FILE = "tokenizer.json"
PAD, EOS, BOS, UNK = "<pad>", "<eos>", "<bos>", "<unk>"
START_OF_TURN, END_OF_TURN = "<start_of_turn>", "<end_of_turn>"

# SentencePiece / GGUF token types.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


class TokenId(int):
    """An int that can also be called, so ``tok.bos_id`` and ``tok.bos_id()`` both work.

    tunix's ``TokenizerAdapter`` calls ``bos_id()``/``eos_id()``/``pad_id()`` as methods while
    our contract exposes them as properties; this keeps both usages valid.
    """

    def __call__(self) -> int:
        return int(self)


class Tokenizer:
    """Wrapper around an HF ``tokenizers.Tokenizer`` with Gemma special ids."""

    def __init__(self, hf_tokenizer: HFTokenizer) -> None:
        self._tok = hf_tokenizer
        self._pad = self._require_id(PAD)
        self._eos = self._require_id(EOS)
        self._bos = self._require_id(BOS)

    @classmethod
    def from_dir(cls, path: str | Path) -> Tokenizer:
        """Loads ``tokenizer.json`` from a model directory (or the file itself)."""
        path = Path(path)
        file = path / TOKENIZER_FILE if path.is_dir() else path
        return cls(HFTokenizer.from_file(str(file)))

    @property
    def hf_tokenizer(self) -> HFTokenizer:
        return self._tok

    @property
    def bos_id(self) -> TokenId:
        return TokenId(self._bos)

    @property
    def eos_id(self) -> TokenId:
        return TokenId(self._eos)

    @property
    def pad_id(self) -> TokenId:
        return TokenId(self._pad)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def encode(self, text: str, add_bos: bool = True, **_: object) -> list[int]:
        """Token ids of ``text``; special tokens written in the text are parsed as such."""
        ids = self._tok.encode(text, add_special_tokens=False).ids
        return [self._bos, *ids] if add_bos else ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True, **_: object) -> str:
        """Text of ``ids``; by default control tokens (pad, bos, eos, turn markers) are dropped."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def _require_id(self, token: str) -> int:
        token_id = self._tok.token_to_id(token)
        if token_id is None:
            raise ValueError(f"tokenizer has no {token!r} token")
        return token_id


def _assemble(
    vocab: dict[str, int],
    merges: list[tuple[str, str]],
    added: list[tuple[str, int, bool]],
) -> HFTokenizer:
    """A SentencePiece-style BPE (byte fallback, ``▁`` for spaces, no dummy prefix)."""
    tok = HFTokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            unk_token=UNK,
            fuse_unk=True,
            byte_fallback=True,
        )
    )
    tok.normalizer = normalizers.Replace(" ", SPACE)
    tok.decoder = decoders.Sequence(
        [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    # Added tokens are matched in the raw text before normalisation, longest match first.
    ordered = sorted(added, key=lambda item: item[1])
    tok.add_tokens(
        [AddedToken(text, special=special, normalized=False) for text, _, special in ordered]
    )
    for text, token_id, _ in ordered:
        if tok.token_to_id(text) != token_id:
            raise ValueError(f"added token {text!r} did not keep id {token_id}")
    return tok


def sentencepiece_merges(
    tokens: Sequence[str], scores: Sequence[float], types: Sequence[int]
) -> list[tuple[str, str]]:
    """BPE merges equivalent to SentencePiece's scoring: rank = score of the merged piece.

    Every normal piece that can be split into two normal pieces yields one merge per split;
    pieces are ordered by descending score (ties by id), splits by the ids of their parts.
    """
    normal = {t: i for i, (t, ty) in enumerate(zip(tokens, types, strict=True)) if ty == NORMAL}
    ranked = sorted(normal.items(), key=lambda item: (-scores[item[1]], item[1]))
    merges: list[tuple[str, str]] = []
    for piece, _ in ranked:
        splits = [
            (piece[:k], piece[k:])
            for k in range(1, len(piece))
            if piece[:k] in normal and piece[k:] in normal
        ]
        splits.sort(key=lambda ab: (normal[ab[0]], normal[ab[1]]))
        merges.extend(splits)
    return merges


def build_sentencepiece_bpe(
    tokens: Sequence[str], scores: Sequence[float], types: Sequence[int]
) -> HFTokenizer:
    """The exact Gemma tokenizer from a GGUF/SentencePiece vocabulary."""
    if len(tokens) != len(scores) or len(tokens) != len(types):
        raise ValueError("tokens, scores and token types must have the same length")
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError("duplicate pieces in the vocabulary")
    merges = sentencepiece_merges(tokens, scores, types)
    added = [
        (t, i, ty in (CONTROL, UNKNOWN, UNUSED))
        for i, (t, ty) in enumerate(zip(tokens, types, strict=True))
        if ty in (CONTROL, UNKNOWN, UNUSED, USER_DEFINED)
    ]
    return _assemble(vocab, merges, added)


# Tiny tokenizer for the random test model ----------------------------------------------------

_TINY_SPECIALS = (PAD, EOS, BOS, UNK, "<mask>", START_OF_TURN, END_OF_TURN)
_TINY_USER = ("\n", "\n\n")
_TINY_WORDS = (
    "▁the", "▁of", "▁and", "▁to", "▁is", "▁in", "▁he", "▁she", "▁has", "▁how", "▁many",
    "▁much", "▁each", "▁what", "▁answer", "▁The", "▁Question", "Question:", "Answer:",
    "ing", "er", "ed", "es", "th", "an", "on", "re", "at", "00", "####", "▁$", "<<", ">>",
    "user", "model",
)  # fmt: skip


def _tiny_vocab() -> tuple[list[str], list[tuple[str, str]]]:
    pieces = list(_TINY_SPECIALS) + list(_TINY_USER)
    pieces += [f"<0x{b:02X}>" for b in range(256)]
    chars = [SPACE if c == " " else c for c in map(chr, range(32, 127))]
    pieces += chars
    normal = set(chars)
    merges: list[tuple[str, str]] = []
    for word in _TINY_WORDS:
        for end in range(2, len(word) + 1):
            piece = word[:end]
            if piece in normal:
                continue
            split = next(
                (piece[:k], piece[k:])
                for k in range(len(piece) - 1, 0, -1)
                if piece[:k] in normal and piece[k:] in normal
            )
            merges.append(split)
            normal.add(piece)
            pieces.append(piece)
    return pieces, merges


def build_tiny_tokenizer() -> HFTokenizer:
    """A deterministic ~400-token Gemma-like tokenizer (pad 0, eos 1, bos 2, unk 3)."""
    pieces, merges = _tiny_vocab()
    vocab = {p: i for i, p in enumerate(pieces)}
    added = [(p, vocab[p], True) for p in _TINY_SPECIALS]
    added += [(p, vocab[p], False) for p in _TINY_USER]
    return _assemble(vocab, merges, added)


def save_tokenizer(tok: HFTokenizer, path: Path) -> None:
    """Writes ``tok`` as a pretty-printed ``tokenizer.json``."""
    tok.save(str(path), pretty=True)
