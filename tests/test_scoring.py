"""Answer extraction, normalisation and scoring (gsm8k_eval.scoring)."""

from __future__ import annotations

import json
import re
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gsm8k_eval.config import SCHEMA_PATH
from gsm8k_eval.scoring import (
    LM_EVAL_FALLBACK,
    LM_EVAL_METHODS,
    MAX_NUMBER_CHARS,
    METHODS,
    ScoredResponse,
    extract,
    extract_all,
    gold_answer,
    grade,
    is_correct,
    lm_eval_exact_match,
    lm_eval_normalise,
    normalise,
    parse_number,
    score_response,
    truncate_response,
)

FEWSHOT_STOPS = ("Question:", "</s>", "<|im_end|>")

# Text biased towards the characters the extractors care about.
_ALPHABET = st.sampled_from(
    [*"0123456789-.,$%/{}\\#<>: \nAİ\x00", "boxed", "frac", "answer", "#### "]
)
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


def _canonical(value: Fraction) -> str | None:
    """Independent oracle for normalise's canonical text: integer, shortest terminating
    decimal (exact, via Decimal), else p/q; None beyond MAX_NUMBER_CHARS."""
    rest = value.denominator
    for factor in (2, 5):
        while rest % factor == 0:
            rest //= factor
    if value.denominator == 1:
        text = str(value.numerator)
    elif rest == 1:
        with localcontext() as context:
            context.prec = 1000
            text = format((Decimal(value.numerator) / value.denominator).normalize(), "f")
    else:
        text = f"{value.numerator}/{value.denominator}"
    return text if len(text) <= MAX_NUMBER_CHARS else None


fractions = st.builds(
    Fraction,
    st.integers(min_value=-(10**9), max_value=10**9),
    st.sampled_from([1, 2, 3, 4, 5, 7, 8, 10, 16, 20, 25, 100, 1000, 3125]),
)


@settings(max_examples=300, deadline=None)
@given(fractions)
def test_normalise_writes_values_canonically(value: Fraction) -> None:
    canonical = _canonical(value)
    assert normalise(f"{value.numerator}/{value.denominator}") == canonical
    assert normalise(f"\\frac{{{value.numerator}}}{{{value.denominator}}}") == canonical
    assert parse_number(canonical) == value  # the canonical text reads back as the value


@settings(max_examples=300, deadline=None)
@given(answer_like_text)
def test_normalise_output_is_canonical_and_keeps_the_value(text: str) -> None:
    value = parse_number(text)
    assert normalise(text) == (None if value is None else _canonical(value))


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
            {
                "strict": None,
                "strict-match": "[invalid]",  # lm-eval's fallback ...
                "strict-match-numeric": None,  # ... the numeric twin has none
                "flexible-extract": "$18.00",
                "flexible-extract-numeric": "$18.00",
            },
        ),
        (
            "First \\boxed{5}, no wait: \\boxed{7}.",
            {"strict": "7", "strict-match": "[invalid]", "flexible-extract": "7"},
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
            {"strict": None, "strict-match": "[invalid]", "flexible-extract": "42", "answer": None},
        ),
        (
            "####",
            {
                "strict": None,
                "strict-match": "[invalid]",
                "flexible-extract": "[invalid]",
                "strict-match-numeric": None,
                "flexible-extract-numeric": None,
            },
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
        "strict-match": False,  # lm-eval compares strings: "18.00" != "18"
        "flexible-extract": False,
        "answer": False,
        "strict-match-numeric": True,
        "flexible-extract-numeric": True,
    }
    wrong = score_response("#### 17", "18", primary="strict-match")
    assert wrong.extracted_answer == "17"
    assert wrong.correct is False
    numeric = score_response("#### 18.00", "18", primary="strict-match-numeric")
    assert (numeric.extracted_answer, numeric.correct) == ("18.00", True)


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


def test_every_gsm8k_test_gold_normalises_to_a_number(gsm8k_dir: Path) -> None:
    lines = (gsm8k_dir / "test.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 1319
    golds = [gold_answer(row["answer"]) for row in rows]
    assert all(re.fullmatch(r"-?[1-9][0-9]*|0", g) for g in golds)  # GSM8K golds are integers
    assert sum("," in row["answer"].split("####")[-1] for row in rows) == 14
    for row, gold in zip(rows, golds, strict=True):
        answer = row["answer"]
        raw = answer.split("####")[-1].strip()
        assert raw.replace(",", "") == gold
        # lm-eval's target is the whole answer; reduced, it is our normalised gold, so
        # score_response(..., reference=None) grades the lm-eval methods as lm-eval does.
        assert lm_eval_normalise(answer) == gold
        scored = score_response(f"So:\n#### {raw}", gold, reference=answer)
        assert all(scored.correct_by_method[m] for m in METHODS if m != "answer"), scored
        # a plausible wrong answer is wrong by every method
        off = score_response(f"#### {int(gold) + 1}", gold, reference=answer)
        assert not any(off.correct_by_method.values()), off


# --------------------------------------------------------------------------- lm-eval grading


def test_schema_primary_enum_is_scorings_methods() -> None:
    schema = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["properties"]["scoring"]["properties"]["primary"]["enum"] == list(METHODS)


GSM8K_ANSWER_18 = (
    "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs.\nShe makes 9 * 2 = $<<9*2=18>>18.\n#### 18"
)


@pytest.mark.parametrize(
    ("response", "answer", "expected"),
    [
        # response, gold answer field, {method: correct}; SM = strict-match, FE = flexible-extract
        ("#### 18", GSM8K_ANSWER_18, {"strict-match": True, "flexible-extract": True}),
        # lm-eval compares strings: trailing zeros are wrong, numerically right
        (
            "#### 18.00",
            GSM8K_ANSWER_18,
            {
                "strict-match": False,
                "flexible-extract": False,
                "strict-match-numeric": True,
                "strict": True,
            },
        ),
        # ... and a malformed grouping is "right" there, no number here
        (
            "#### 1,00",
            "x\n#### 100",
            {
                "strict-match": True,
                "flexible-extract": True,
                "strict-match-numeric": False,
                "strict": False,
            },
        ),
        # "$" is ignored, but strict-match's regex cannot start with it
        (
            "#### $18",
            GSM8K_ANSWER_18,
            {
                "strict-match": False,
                "flexible-extract": True,
                "strict-match-numeric": False,
                "strict": True,
            },
        ),
        (
            "The total is $18.",
            GSM8K_ANSWER_18,
            {"strict-match": False, "flexible-extract": True, "flexible-extract-numeric": True},
        ),
        # one trailing "." is ignored, two are not
        ("#### 18.", GSM8K_ANSWER_18, {"strict-match": True, "flexible-extract": True}),
        ("#### 18..", GSM8K_ANSWER_18, {"strict-match": False, "strict-match-numeric": True}),
        ("#### -18", GSM8K_ANSWER_18, {"strict-match": False, "flexible-extract": False}),
        # thousands separators vanish on both sides
        ("#### 1450000", "...\n#### 1,450,000", {"strict-match": True, "flexible-extract": True}),
        ("#### 1,450,000", "...\n#### 1450000", {"strict-match": True, "flexible-extract": True}),
        # strict-match takes the first "#### ", flexible-extract the last number
        (
            "#### 18\n#### 19",
            GSM8K_ANSWER_18,
            {"strict-match": True, "flexible-extract": False, "strict": False},
        ),
        ("#### 17\nno, 18", GSM8K_ANSWER_18, {"strict-match": False, "flexible-extract": True}),
        (
            "18 eggs, 3 left",
            GSM8K_ANSWER_18,
            {"strict-match": False, "flexible-extract": False, "flexible-extract-numeric": False},
        ),
        # single digits are numbers only through flexible-extract's second group
        ("####  7", "#### 7", {"strict-match": False, "flexible-extract": True}),
        # no match: "[invalid]", which is wrong
        ("no digits at all", GSM8K_ANSWER_18, {"strict-match": False, "flexible-extract": False}),
        (
            "no digits at all",
            "#### [INVALID]",
            {"strict-match": True, "flexible-extract": True, "strict-match-numeric": False},
        ),
    ],
)
def test_lm_eval_grading_table(response: str, answer: str, expected: dict[str, bool]) -> None:
    gold = normalise(answer.split("####")[-1]) or "not a number"
    scored = score_response(response, gold, reference=answer)
    for method, correct in expected.items():
        assert scored.correct_by_method[method] is correct, (method, scored)


def test_lm_eval_case_and_reference_reduction() -> None:
    # ignore_case applies to both sides; the reference loses everything up to its last "#### "
    assert lm_eval_exact_match("ABC", "x #### y\n#### abc")
    assert lm_eval_normalise("Step 1.\n#### 2\n#### $1,000.") == "1000"
    assert lm_eval_normalise("no marker, $5.") == "no marker 5"
    assert lm_eval_normalise("####18") == "####18"  # the regex wants "#### " with its space
    # the regexes apply in order: "$" and "," go before "#### " and the trailing "."
    assert lm_eval_normalise("18.$") == "18"
    assert lm_eval_normalise("x #,### 5") == "5"
    # lm-eval keeps the strings in numpy arrays: trailing NULs drop off between the steps ...
    assert lm_eval_normalise("18.\x00") == "18"
    assert lm_eval_exact_match("18\x00", "#### 18")
    # ... and lower-cases with numpy (pinned numpy 2.4), not str.lower ("İ".lower() == "i̇")
    assert lm_eval_normalise("İ") == "i"
    assert lm_eval_normalise("İx") == "i\u0307"  # numpy keeps the string's width: "i̇x"[:2]
    assert not lm_eval_exact_match("18", "18 eggs")
    assert grade("strict-match", LM_EVAL_FALLBACK, "18") is False
    assert grade("strict-match", None, "18") is False
    assert set(METHODS) > LM_EVAL_METHODS


# lm-eval's own filters and metric, run on a few hundred responses, are pinned in
# tests/data/lm_eval_gsm8k_fixture.jsonl and checked in tests/test_lm_eval_fixture.py.


@settings(max_examples=300, deadline=None)
@given(st.integers(-(10**9), 10**9), st.integers(-(10**9), 10**9))
def test_lm_eval_integers_match_exactly_when_equal(n: int, m: int) -> None:
    answer = f"... = <<x={m}>>{m:,}\n#### {m:,}"
    for response in (f"#### {n}", f"#### {n:,}", f"I think {n:,}.", f"#### {n}."):
        scored = score_response(response, str(m), reference=answer)
        assert scored.correct_by_method["strict-match"] is (n == m and "#" in response)
        assert scored.correct_by_method["flexible-extract"] is (n == m)
        assert scored.correct_by_method["flexible-extract-numeric"] is (n == m)
    padded = score_response(f"#### {n}.0", str(m), reference=answer).correct_by_method
    assert padded["strict-match"] is False and padded["strict-match-numeric"] is (n == m)
