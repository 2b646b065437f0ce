"""Answer extraction and normalisation for GSM8K responses.

Every rollout is scored by all methods in ``METHODS``:

``strict``            the final answer the model marked: the last balanced ``\\boxed{...}`` or the
                      text after the last ``####`` (whichever comes later in the response).
``strict-match``      lm-eval gsm8k: first match of ``#### (\\-?[0-9\\.\\,]+)``.
``flexible-extract``  lm-eval gsm8k: last match of ``(-?[$0-9.,]{2,})|(-?[0-9]+)``.
``answer``            tunix GRPO gsm8k eval: first ``[0-9.]+`` run after the first ``<answer>``
                      (tunix's ``match_numbers``; like tunix it keeps no sign or comma).

Extraction returns the raw matched text; correctness compares ``normalise``d numbers
(exact rationals, so ``18.00`` == ``18`` and ``$1,000`` == ``1000``).

Few-shot responses: a base model often continues past its answer with a new
``Question: ...`` and answers that too. As lm-eval does with its ``until`` stop sequences,
callers truncate the response at the first stop sequence (``truncate_response``, or the
``stop_sequences`` argument of ``score_response``) *before* extraction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction

METHODS: tuple[str, ...] = ("strict", "strict-match", "flexible-extract", "answer")
MAX_NUMBER_CHARS = 64  # longer numbers are not GSM8K answers (and int() caps at 4300 digits)

_HASH_LINE = re.compile(r"####[ \t]*([^\n]*)")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_LM_EVAL_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
_LM_EVAL_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_TUNIX_ANSWER = re.compile(r"<answer>.*?([0-9\.]{1,})", flags=re.MULTILINE | re.DOTALL)

# One number: optional sign, integer part with optional thousands groups, optional decimals,
# optional "/denominator"; or a bare ".5".
_NUMBER = re.compile(
    r"-?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?(?:/[0-9]+(?:\.[0-9]+)?)?|-?\.[0-9]+"
)
_LATEX_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mathbf|boxed|fbox|mbox)\s*\{([^{}]*)\}")
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_LATEX_DROP = re.compile(r"\\(?:left|right|displaystyle|!|;|quad|qquad)|\\?[$%]")
_TRAILING_PUNCT = ".,;:!?"


@dataclass
class ScoredResponse:
    """Extraction and correctness of one response."""

    extracted_answer: str | None
    extracted: dict[str, str | None]
    correct: bool
    correct_by_method: dict[str, bool]


# --------------------------------------------------------------------------- truncation


def truncate_response(text: str, stop_sequences: Iterable[str]) -> str:
    """Cut ``text`` at the earliest occurrence of any (non-empty) stop sequence."""
    cut = len(text)
    for stop in stop_sequences:
        if stop and (index := text.find(stop)) != -1:
            cut = min(cut, index)
    return text[:cut]


# --------------------------------------------------------------------------- extraction


def _last_boxed(text: str) -> tuple[int, str] | None:
    """Position and content of the last ``\\boxed{...}`` whose braces balance."""
    found = None
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for index in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            if depth == 0:
                found = (match.start(), text[start:index].strip())
                break
    return found


def _last_hash(text: str) -> tuple[int, str] | None:
    """Position and rest-of-line of the last ``####``."""
    matches = list(_HASH_LINE.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    return last.start(), last.group(1).strip()


def extract_strict(text: str) -> str | None:
    """Seed rule: the later of the last balanced ``\\boxed{}`` and the last ``####`` line."""
    candidates = [c for c in (_last_boxed(text), _last_hash(text)) if c is not None and c[1]]
    if not candidates:
        return None
    return max(candidates)[1]


def _regex_pick(pattern: re.Pattern[str], text: str, index: int) -> str | None:
    """lm-eval ``RegexFilter``: ``findall``, pick ``index``, first non-empty group, strip."""
    matches = pattern.findall(text)
    if not matches:
        return None
    match = matches[index]
    if isinstance(match, tuple):
        match = next(group for group in match if group)
    return match.strip()


def extract_lm_eval_strict(text: str) -> str | None:
    """lm-eval ``strict-match`` (take_first)."""
    return _regex_pick(_LM_EVAL_STRICT, text, 0)


def extract_lm_eval_flexible(text: str) -> str | None:
    """lm-eval ``flexible-extract`` (group_select=-1: the last number-like run)."""
    return _regex_pick(_LM_EVAL_FLEXIBLE, text, -1)


def extract_tunix_answer(text: str) -> str | None:
    """tunix GRPO demo ``match_numbers``: first digits/dots after the first ``<answer>``."""
    match = _TUNIX_ANSWER.search(text)
    return match.group(1) if match else None


_EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "strict": extract_strict,
    "strict-match": extract_lm_eval_strict,
    "flexible-extract": extract_lm_eval_flexible,
    "answer": extract_tunix_answer,
}


def _check_method(method: str) -> None:
    if method not in _EXTRACTORS:
        raise ValueError(f"unknown extraction method {method!r}; valid: {', '.join(METHODS)}")


def extract(text: str, method: str) -> str | None:
    """Extract the raw answer string with one method (``None`` when nothing matches)."""
    _check_method(method)
    return _EXTRACTORS[method](text)


def extract_all(text: str) -> dict[str, str | None]:
    """Extract with every method in ``METHODS``."""
    return {method: _EXTRACTORS[method](text) for method in METHODS}


# --------------------------------------------------------------------------- normalisation


def _strip_latex(text: str) -> str:
    """Unwrap ``\\text{}``-style wrappers and ``\\frac``; drop ``$``, ``%`` and spacing macros."""
    previous = None
    while previous != text:
        previous = text
        text = _LATEX_FRAC.sub(r"\1/\2", text)
        text = _LATEX_WRAPPERS.sub(r" \1 ", text)
    text = text.replace("{,}", ",").replace("\\,", ",")
    return _LATEX_DROP.sub("", text)


def _clean(text: str) -> str:
    """Canonicalise characters around numbers before tokenising."""
    text = text.replace("\u2212", "-").replace("\u2013", "-")  # unicode minus / en dash
    text = _strip_latex(text)
    return text.strip().rstrip(_TRAILING_PUNCT)


def _to_fraction(token: str) -> Fraction | None:
    """Exact value of one ``_NUMBER`` token (commas are thousands separators)."""
    token = token.replace(",", "")
    numerator, _, denominator = token.partition("/")
    try:
        value = Fraction(numerator)
        return value / Fraction(denominator) if denominator else value
    except (ValueError, ZeroDivisionError):
        return None


def _format(value: Fraction) -> str:
    """Canonical text: integer, terminating decimal (no trailing zeros), else ``p/q``."""
    if value.denominator == 1:
        return str(value.numerator)
    denominator, twos, fives = value.denominator, 0, 0
    while denominator % 2 == 0:
        denominator, twos = denominator // 2, twos + 1
    while denominator % 5 == 0:
        denominator, fives = denominator // 5, fives + 1
    if denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    scaled = abs(value.numerator) * 10**places // value.denominator
    sign = "-" if value < 0 else ""
    digits = str(scaled).rjust(places + 1, "0")
    return f"{sign}{digits[:-places]}.{digits[-places:]}".rstrip("0")


def parse_number(text: str | None) -> Fraction | None:
    """The single number in ``text`` (units and currency ignored), or ``None``."""
    if text is None:
        return None
    tokens = _NUMBER.findall(_clean(text))
    if len(tokens) != 1 or len(tokens[0]) > MAX_NUMBER_CHARS:
        return None
    return _to_fraction(tokens[0])


def normalise(s: str | None) -> str | None:
    """Canonical numeric string of ``s`` (``"$1,234.50"`` -> ``"1234.5"``), or ``None``.

    ``s`` must contain exactly one number; surrounding words (units), ``$``, ``%``,
    LaTeX wrappers and trailing punctuation are ignored. Idempotent.
    """
    value = parse_number(s)
    if value is None:
        return None
    text = _format(value)
    return text if len(text) <= MAX_NUMBER_CHARS else None


def is_correct(pred: str | None, gold: str | None) -> bool:
    """Numeric equality of the normalised prediction and gold; unparseable is wrong."""
    pred_norm = normalise(pred)
    return pred_norm is not None and pred_norm == normalise(gold)


def gold_answer(answer_field: str) -> str:
    """Normalised number after ``####`` in a GSM8K ``answer`` field."""
    if "####" not in answer_field:
        raise ValueError(f"GSM8K answer has no '####': {answer_field[-80:]!r}")
    raw = answer_field.rsplit("####", 1)[1].strip()
    normalised = normalise(raw)
    if normalised is None:
        raise ValueError(f"GSM8K gold answer is not a number: {raw!r}")
    return normalised


# --------------------------------------------------------------------------- scoring


def score_response(
    text: str,
    gold: str,
    primary: str = "strict",
    stop_sequences: Iterable[str] = (),
) -> ScoredResponse:
    """Extract with every method (after stop-sequence truncation) and grade against ``gold``."""
    _check_method(primary)
    extracted = extract_all(truncate_response(text, stop_sequences))
    correct_by_method = {method: is_correct(value, gold) for method, value in extracted.items()}
    return ScoredResponse(
        extracted_answer=extracted[primary],
        extracted=extracted,
        correct=correct_by_method[primary],
        correct_by_method=correct_by_method,
    )
