"""Stop-sequence detection: incremental (linear decoding per row) and identical to re-decoding
the whole text at every check, also for a tokenizer whose decoding is not a concatenation."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from gsm8k_eval.sampling import STOP_EOS, STOP_MAX_STEPS, Generation
from gsm8k_eval.sampling.stops import STOP_SEQUENCE, cut_at_stop, settle
from gsm8k_eval.scoring import truncate_response

WORDS = ["Question", ":", " the", "\n", "\n\n", "ab", "c", " 4", "2", "</s>", " So", "."]


def spaced(ids: list[int]) -> str:
    """The stand-in tokenizer's decoding: ids joined by spaces."""
    return " ".join(str(i) for i in ids)


def pieces(ids: list[int]) -> str:
    """SentencePiece-like: words joined, a leading space stripped (decoding a window is not the
    tail of decoding the whole)."""
    return "".join(WORDS[i % len(WORDS)] for i in ids).lstrip(" ")


def full_redecode_settle(tokens, logits, limit, eos, stops, decode, checked=0):
    """The rule before incremental detection (commit a49d36d): every check decodes everything."""
    ended_by_eos = bool(tokens) and tokens[-1] in eos
    body = tokens[:-1] if ended_by_eos else tokens
    has_stop = lambda text: any(s in text for s in stops)  # noqa: E731
    n = 0
    if stops and has_stop(decode(body)):
        later = range(checked + 1, len(body) + 1)
        n = next((k for k in later if has_stop(decode(body[:k]))), len(body))
    if n:
        text = truncate_response(decode(tokens[:n]), stops)
        return Generation(tokens[:n], text, n, STOP_SEQUENCE, logits[:n])
    if ended_by_eos:
        return Generation(tokens, decode(body), len(tokens), STOP_EOS, logits)
    if len(tokens) >= limit:
        return Generation(tokens, decode(tokens), len(tokens), STOP_MAX_STEPS, logits)
    return None


def run_row(rule: Callable, row: list[int], segment: int, stops: Sequence[str], decode) -> tuple:
    """Feed `row` to `rule` a segment at a time, as the engine does; the finished generation,
    the tokens generated when it was noticed, and the total number of tokens decoded."""
    decoded = [0]

    def counting(ids: list[int]) -> str:
        decoded[0] += len(ids)
        return decode(ids)

    checked = 0
    for end in range(segment, len(row) + segment, segment):
        tokens = row[: min(end, len(row))]
        done = rule(tokens, [0.5] * len(tokens), len(row), (1,), stops, counting, checked)
        if done is not None:
            return done, len(tokens), decoded[0]
        checked = len(tokens)
    raise AssertionError("the row never ended")


@pytest.mark.parametrize("decode", [spaced, pieces])
def test_incremental_detection_equals_full_redecoding(decode):
    rng = np.random.default_rng(0)
    for trial in range(200):
        row = rng.integers(2, 60, size=int(rng.integers(1, 80))).tolist()
        if trial % 3 == 0:
            row[int(rng.integers(0, len(row)))] = 1  # an EOS somewhere
            row = row[: row.index(1) + 1]
        start = int(rng.integers(0, len(row)))
        stops = [decode(row[start : start + int(rng.integers(1, 4))]).strip() or "x", "zz"]
        if trial % 5 == 0:
            stops = ["never there"]
        segment = int(rng.integers(1, 9))
        got = run_row(settle, row, segment, stops, decode)[:2]
        expected = run_row(full_redecode_settle, row, segment, stops, decode)[:2]
        assert got == expected, (trial, row, stops, segment)  # same result, noticed as early


def test_a_long_row_decodes_linearly_not_quadratically():
    row = [5 + i % 50 for i in range(400)]
    got, _, decoded = run_row(settle, row, 5, ["Question:", "</s>"], spaced)
    full, _, decoded_before = run_row(full_redecode_settle, row, 5, ["Question:", "</s>"], spaced)
    assert got == full and got.stop_reason == STOP_MAX_STEPS
    assert decoded <= 12 * len(row) < decoded_before  # 16,000+ tokens decoded before


def test_one_rule_for_cutting_text_at_a_stop():
    assert cut_at_stop is truncate_response
    assert cut_at_stop("a Question: b </s>", ["</s>", "Question:"]) == "a "
