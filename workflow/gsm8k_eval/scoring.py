"""Answer extraction and grading of GSM8K responses.

Every rollout is graded by all methods in ``METHODS``:

``strict``                    the final answer the model marked: the last balanced ``\\boxed{...}``
                              or the text after the last ``####`` (whichever comes later);
                              numeric comparison.
``strict-match``              exactly lm-eval's gsm8k ``strict-match``: its ``regex`` filter
                              (``#### (\\-?[0-9\\.\\,]+)``, first match, ``"[invalid]"`` when none)
                              then ``take_first``, scored by lm-eval's ``exact_match``.
``flexible-extract``          exactly lm-eval's gsm8k ``flexible-extract``: the last match of
                              ``(-?[$0-9.,]{2,})|(-?[0-9]+)`` (first non-empty group), same metric.
``answer``                    tunix GRPO gsm8k eval: first ``[0-9.]+`` run after the first
                              ``<answer>`` (tunix's ``match_numbers``; no sign or comma); numeric.
``strict-match-numeric``      lm-eval's ``strict-match`` extraction, numeric comparison.
``flexible-extract-numeric``  lm-eval's ``flexible-extract`` extraction, numeric comparison.

lm-eval's ``exact_match`` (``lm_eval_exact_match``) is a string comparison: it deletes the
gsm8k task's ``regexes_to_ignore`` (``,``, ``$``, everything up to the last ``#### ``, one
trailing ``.``) from the prediction and from the reference -- the task's target, the *whole*
GSM8K ``answer`` field -- lower-cases both and compares them. So ``#### 18.00`` is wrong against
gold 18 while ``#### 1,00`` is right against gold 100. The numeric methods compare
``normalise``d numbers (exact rationals: ``18.00`` == ``18``, ``$1,000`` == ``1000``, and
``1,00`` is not a number).

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

import numpy as np

from gsm8k_eval.cut import truncate_response

METHODS: tuple[str, ...] = (
    "strict",
    "strict-match",
    "flexible-extract",
    "answer",
    "strict-match-numeric",
    "flexible-extract-numeric",
)
# Methods graded by lm-eval's exact_match against the whole answer field; the rest are numeric.
LM_EVAL_METHODS: frozenset[str] = frozenset({"strict-match", "flexible-extract"})
LM_EVAL_FALLBACK = "[invalid]"  # lm-eval's RegexFilter output when nothing matches
# lm-eval gsm8k.yaml `exact_match` options: ignore_case true, ignore_punctuation false.
LM_EVAL_REGEXES_TO_IGNORE: tuple[str, ...] = (",", r"\$", "(?s).*#### ", r"\.$")
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


def _regex_match(pattern: re.Pattern[str], text: str, group_select: int) -> str | None:
    """lm-eval ``RegexFilter`` on one response, ``None`` where it falls back: ``findall``, take
    match ``group_select``; of a multi-group match its first non-empty group; strip."""
    matches = pattern.findall(text)
    if not matches:
        return None
    match = matches[group_select]
    if isinstance(match, tuple):
        groups = [group for group in match if group]
        if not groups:
            return None
        match = groups[0]
    return match.strip()


def lm_eval_regex_filter(pattern: re.Pattern[str], text: str, group_select: int = 0) -> str:
    """lm-eval ``RegexFilter`` (then ``take_first``): the match, or ``"[invalid]"``."""
    match = _regex_match(pattern, text, group_select)
    return LM_EVAL_FALLBACK if match is None else match


def extract_lm_eval_strict(text: str) -> str:
    """lm-eval ``strict-match``: the first ``#### <number>``; ``"[invalid]"`` if none."""
    return lm_eval_regex_filter(_LM_EVAL_STRICT, text, 0)


def extract_lm_eval_flexible(text: str) -> str:
    """lm-eval ``flexible-extract`` (group_select=-1: the last number-like run)."""
    return lm_eval_regex_filter(_LM_EVAL_FLEXIBLE, text, -1)


def extract_lm_eval_strict_numeric(text: str) -> str | None:
    """lm-eval's ``strict-match`` extraction, ``None`` when nothing matches."""
    return _regex_match(_LM_EVAL_STRICT, text, 0)


def extract_lm_eval_flexible_numeric(text: str) -> str | None:
    """lm-eval's ``flexible-extract`` extraction, ``None`` when nothing matches."""
    return _regex_match(_LM_EVAL_FLEXIBLE, text, -1)


def extract_tunix_answer(text: str) -> str | None:
    """tunix GRPO demo ``match_numbers``: first digits/dots after the first ``<answer>``."""
    match = _TUNIX_ANSWER.search(text)
    return match.group(1) if match else None


_EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "strict": extract_strict,
    "strict-match": extract_lm_eval_strict,
    "flexible-extract": extract_lm_eval_flexible,
    "answer": extract_tunix_answer,
    "strict-match-numeric": extract_lm_eval_strict_numeric,
    "flexible-extract-numeric": extract_lm_eval_flexible_numeric,
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


def lm_eval_normalise(text: str) -> str:
    """What lm-eval's gsm8k ``exact_match`` compares: ``text`` with each of the task's
    ``regexes_to_ignore`` deleted in turn, then lower-cased.

    lm-eval scores each document with one-element numpy arrays: between these steps trailing
    NUL characters drop off (numpy's fixed-width ``str`` cannot hold them), and it lower-cases
    with numpy, which differs from ``str.lower`` for a few characters (``"İ"`` -> ``"i"``, and
    ``"İx"`` -> ``"i̇"``: the result keeps the input's width). Both are kept here.
    """
    for pattern in LM_EVAL_REGEXES_TO_IGNORE:
        text = re.sub(pattern, "", text).rstrip("\x00")
    return str(np.char.lower(text))


def lm_eval_exact_match(prediction: str, reference: str) -> bool:
    """lm-eval gsm8k ``exact_match`` of one filtered response against the task's target."""
    return lm_eval_normalise(prediction) == lm_eval_normalise(reference)


def grade(method: str, extracted: str | None, gold: str, reference: str | None = None) -> bool:
    """Correctness of one extraction: lm-eval's ``exact_match`` against ``reference`` (the whole
    GSM8K answer field; ``gold`` if not given) for ``LM_EVAL_METHODS``, else numeric."""
    _check_method(method)
    if method in LM_EVAL_METHODS:
        return extracted is not None and lm_eval_exact_match(
            extracted, gold if reference is None else reference
        )
    return is_correct(extracted, gold)


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
    reference: str | None = None,
) -> ScoredResponse:
    """Extract with every method (after stop-sequence truncation) and grade against ``gold``.

    ``reference`` is lm-eval's target for the ``LM_EVAL_METHODS``: the whole GSM8K ``answer``
    field (for every GSM8K example it reduces to the same string as ``gold_answer``; when not
    given, ``gold`` is used).
    """
    _check_method(primary)
    extracted = extract_all(truncate_response(text, stop_sequences))
    correct_by_method = {
        method: grade(method, value, gold, reference) for method, value in extracted.items()
    }
    return ScoredResponse(
        extracted_answer=extracted[primary],
        extracted=extracted,
        correct=correct_by_method[primary],
        correct_by_method=correct_by_method,
    )
