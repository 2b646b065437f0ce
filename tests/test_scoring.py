"""Answer extraction, normalisation and scoring (gsm8k_eval.scoring)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared_data import GSM8K_DIR

from gsm8k_eval.scoring import (
    METHODS,
    ScoredResponse,
    extract,
    extract_all,
    gold_answer,
    is_correct,
    normalise,
    score_response,
    truncate_response,
)

GSM8K_TEST = GSM8K_DIR / "test.jsonl"
FEWSHOT_STOPS = ("Question:", "</s>", "<|im_end|>")

# Text biased towards the characters the extractors care about.
_ALPHABET = st.sampled_from([*"0123456789-.,$%/{}\\#<>: \n", "boxed", "frac", "answer"])
answer_like_text = st.one_of(st.text(), st.lists(_ALPHABET, max_size=60).map("".join))


# --------------------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None)
@given(answer_like_text)
def test_extraction_never_crashes_and_returns_every_method(text: str) -> None:
    extracted = extract_all(text)
    assert tuple(extracted) == METHODS
    for method, value in extracted.items():
        assert value is None or isinstance(value, str)
        assert extract(text, method) == value


@settings(max_examples=300, deadline=None)
@given(answer_like_text)
def test_normalise_is_idempotent(text: str) -> None:
    once = normalise(text)
    if once is not None:
        assert normalise(once) == once
        assert is_correct(text, once)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_integers_round_trip_through_formats(n: int) -> None:
    assert normalise(str(n)) == str(n)
    assert normalise(f"{n:,}") == str(n)
    assert normalise(f"{n}.00") == str(n)
    assert normalise(f"\\boxed{{{n}}}") == str(n)


@settings(max_examples=200, deadline=None)
@given(answer_like_text, st.lists(st.text(min_size=1, max_size=5), max_size=3))
def test_truncation_is_a_prefix_without_stop_sequences(text: str, stops: list[str]) -> None:
    cut = truncate_response(text, stops)
    assert text.startswith(cut)
    assert not any(stop in cut for stop in stops)


# --------------------------------------------------------------------------- normalise


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("18", "18"),
        ("18.00", "18"),  # lm-eval's string match calls this wrong
        ("$18.00", "18"),
        ("18 dollars", "18"),
        ("\\$18", "18"),
        ("18.", "18"),
        ("  18  ", "18"),
        ("The answer is 18.", "18"),
        ("-3", "-3"),
        ("\u22123", "-3"),  # unicode minus
        ("-$5", "-5"),
        ("1,234", "1234"),
        ("1,450,000", "1450000"),
        ("$1,000.50", "1000.5"),
        ("1\\,000", "1000"),
        ("50%", "50"),
        ("0.5", "0.5"),
        (".5", "0.5"),
        ("3/6", "0.5"),
        ("\\frac{1}{3}", "1/3"),
        ("\\boxed{\\frac{1}{2}}", "0.5"),
        ("\\boxed{18 \\text{ cm}}", "18"),
        ("-0", "0"),
        ("5 + 3 = 8", None),  # more than one number: ambiguous
        ("1,2", None),  # not a thousands grouping
        ("3-4 hours", None),
        ("1/0", None),
        ("no number", None),
        ("", None),
        (None, None),
        ("..", None),
        ("9" * 100, None),  # absurdly long
    ],
)
def test_normalise_table(raw: str | None, expected: str | None) -> None:
    assert normalise(raw) == expected


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ("18.00", "18", True),
        ("$18", "18", True),
        ("1,234", "1234", True),
        ("0.50", "1/2", True),
        ("-3", "3", False),
        ("18.5", "18", False),
        (None, "18", False),
        ("18", "not a number", False),
    ],
)
def test_is_correct(pred: str | None, gold: str, expected: bool) -> None:
    assert is_correct(pred, gold) is expected


# --------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # text, {method: extracted}
        (
            "3 + 4 = 7 dollars.\n#### 7",
            {"strict": "7", "strict-match": "7", "flexible-extract": "7", "answer": None},
        ),
        (
            "Total is 1,200 + 34 = 1,234\n#### 1,234",
            {"strict": "1,234", "strict-match": "1,234", "flexible-extract": "1,234"},
        ),
        (
            "She owes -5 dollars.\n#### -5",
            {"strict": "-5", "strict-match": "-5", "flexible-extract": "-5"},
        ),
        (
            "It costs $18.00 in total.",
            {"strict": None, "strict-match": None, "flexible-extract": "$18.00"},
        ),
        (
            "First \\boxed{5}, no wait: \\boxed{7}.",
            {"strict": "7", "strict-match": None, "flexible-extract": "7"},
        ),
        (
            "Half: \\boxed{\\frac{1}{2}}",
            {"strict": "\\frac{1}{2}", "flexible-extract": "2"},
        ),
        (
            "\\boxed{1{2} unclosed",  # unbalanced braces: no boxed answer
            {"strict": None},
        ),
        (
            "#### 5\nthen \\boxed{6}",  # boxed comes later
            {"strict": "6", "strict-match": "5"},
        ),
        (
            "\\boxed{6} then\n#### 5 apples",  # #### comes later
            {"strict": "5 apples", "strict-match": "5"},
        ),
        (
            "<reasoning>9 * 2 = 18</reasoning><answer>18</answer>",
            {"strict": None, "answer": "18", "flexible-extract": "18"},
        ),
        (
            "<reasoning>r</reasoning>\n<answer>\nThe total is $18.50.\n</answer>",
            {"answer": "18.50."},  # raw tunix match; normalise drops the trailing dot
        ),
        (
            "<answer>-7</answer>",  # tunix keeps no sign ...
            {"answer": "7", "flexible-extract": "-7"},
        ),
        (
            "<answer>1,234</answer>",  # ... and stops at a comma (as tunix does)
            {"answer": "1", "flexible-extract": "1,234"},
        ),
        (
            "The answer is 42",
            {"strict": None, "strict-match": None, "flexible-extract": "42", "answer": None},
        ),
        (
            "####",
            {"strict": None, "strict-match": None, "flexible-extract": None},
        ),
    ],
)
def test_extraction_table(text: str, expected: dict[str, str | None]) -> None:
    extracted = extract_all(text)
    for method, value in expected.items():
        assert extracted[method] == value, method


def test_unknown_method_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="strict-match"):
        extract("#### 1", "nope")
    with pytest.raises(ValueError, match="flexible-extract"):
        score_response("#### 1", "1", primary="nope")


# --------------------------------------------------------------------------- few-shot echo

ECHO = (
    " Natalia sold 48 / 2 = 24 clips in May.\n#### 72\n\n"
    "Question: Weng earns $12 an hour. How much did she earn?\n"
    "Answer: 12 / 60 = 0.2 per minute.\n#### 10"
)


def test_truncate_response_cuts_at_earliest_stop() -> None:
    assert truncate_response("a</s>bQuestion:c", FEWSHOT_STOPS) == "a"
    assert truncate_response("aQuestion:b</s>c", FEWSHOT_STOPS) == "a"
    assert truncate_response("no stops", FEWSHOT_STOPS) == "no stops"
    assert truncate_response("keep", ("", "zz")) == "keep"


def test_fewshot_echo_is_truncated_before_extraction() -> None:
    untruncated = extract_all(ECHO)
    assert untruncated["strict"] == "10"  # the echoed continuation would win ...
    assert untruncated["flexible-extract"] == "10"
    scored = score_response(ECHO, "72", stop_sequences=FEWSHOT_STOPS)
    assert scored.extracted["strict"] == "72"  # ... so it is cut at "Question:" first
    assert scored.extracted["flexible-extract"] == "72"
    assert scored.extracted["strict-match"] == "72"
    assert scored.correct


# --------------------------------------------------------------------------- score_response


def test_score_response_fields() -> None:
    scored = score_response("So $18.00 total.\n#### 18.00", gold_answer("... #### 18"))
    assert isinstance(scored, ScoredResponse)
    assert scored.extracted_answer == "18.00"
    assert scored.correct is True
    assert scored.correct_by_method == {
        "strict": True,
        "strict-match": True,
        "flexible-extract": True,
        "answer": False,
    }
    wrong = score_response("#### 17", "18", primary="strict-match")
    assert wrong.extracted_answer == "17"
    assert wrong.correct is False


def test_primary_method_selects_the_reported_answer() -> None:
    text = "<reasoning>x</reasoning><answer>18</answer>"
    assert score_response(text, "18", primary="answer").correct
    assert not score_response(text, "18", primary="strict").correct


# --------------------------------------------------------------------------- gold


def test_gold_answer() -> None:
    assert gold_answer("She makes 9 * 2 = $<<9*2=18>>18.\n#### 18") == "18"
    assert gold_answer("...\n#### 1,450,000") == "1450000"
    with pytest.raises(ValueError, match="####"):
        gold_answer("no marker")
    with pytest.raises(ValueError, match="not a number"):
        gold_answer("#### eighteen")


@pytest.mark.skipif(not GSM8K_TEST.exists(), reason="shared GSM8K test split not present")
def test_every_gsm8k_test_gold_normalises_to_a_number() -> None:
    rows = [json.loads(line) for line in GSM8K_TEST.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 1319
    golds = [gold_answer(row["answer"]) for row in rows]
    assert all(g.lstrip("-").isdigit() for g in golds)  # GSM8K golds are integers
    for row, gold in zip(rows, golds, strict=True):
        raw = row["answer"].split("####")[-1].strip()
        assert is_correct(raw, gold)
        assert score_response(f"#### {raw}", gold).correct_by_method["strict-match"]
