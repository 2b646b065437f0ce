"""When a greedy row ends: EOS, a stop sequence in its decoded text, or its token budget.

Stop sequences follow lm-eval's `until`: the response text is cut before the earliest
occurrence of any stop sequence. The row ends at the token whose decoding first makes a stop
sequence appear; that token and everything before it are kept in `tokens`/`token_logits`
(as the EOS token is kept), everything generated after it is dropped. So `tokens` decodes to
`text` + the stop sequence (+ whatever else that last token spells).

Detection is incremental: while a row runs, only the tokens decoded since the last check are
searched, from a window that starts early enough to hold a stop sequence straddling the
boundary (`_tail_has_stop`), so a row of L tokens costs O(L) decoding, not O(L^2). The position
of a stop that is found is exact (shortest prefix, as before), and when a row ends its whole
text (decoded anyway) is searched once more, so a tokenizer whose decoding of a window differs
from the whole text's cannot make a stop go unnoticed: results equal the full re-decode's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gsm8k_eval.cut import truncate_response
from gsm8k_eval.sampling.types import STOP_EOS, STOP_MAX_STEPS, Generation

STOP_SEQUENCE = "stop_sequence"
# Tokens a tail window reaches back before the checked boundary, at least (a partial UTF-8
# character or a stripped leading space only disturbs the window's first few characters).
WINDOW_TOKENS = 8

Decode = Callable[[list[int]], str]

# One rule for where a response ends, shared with the scoring (`scoring.truncate_response`).
cut_at_stop = truncate_response


def _has_stop(text: str, stops: Sequence[str]) -> bool:
    return any(stop in text for stop in stops)


def _tail_has_stop(tokens: list[int], stops: Sequence[str], decode: Decode, checked: int) -> bool:
    """Whether the text of `tokens` holds a stop sequence that the text of `tokens[:checked]`
    (known to hold none) does not: decodes only a window from a little before `checked`, with
    at least the longest stop's length (+ a margin) of text before the boundary."""
    if checked <= 0:
        return _has_stop(decode(tokens), stops)
    longest = max(len(stop) for stop in stops)
    start = checked
    while start > 0:
        start = max(0, start - WINDOW_TOKENS)
        if len(decode(tokens[start:checked])) >= longest + WINDOW_TOKENS:
            break
    return _has_stop(decode(tokens[start:]), stops)


def first_stop(tokens: list[int], stops: Sequence[str], decode: Decode, checked: int = 0) -> int:
    """How many tokens to keep: the shortest prefix whose text contains a stop sequence, or 0 if
    none does. `checked`: a prefix length already known to contain none (only the text after
    it is searched for a new stop)."""
    if not stops or not _tail_has_stop(tokens, stops, decode, min(checked, len(tokens))):
        return 0
    for n in range(checked + 1, len(tokens) + 1):
        if _has_stop(decode(tokens[:n]), stops):
            return n
    return len(tokens)


def settle(
    tokens: list[int],
    logits: list[float],
    limit: int,
    eos: Sequence[int],
    stops: Sequence[str],
    decode: Decode,
    checked: int = 0,
) -> Generation | None:
    """The finished generation of a row, or None while it is still running.

    EOS can only be the last token (a row stops emitting after it); a stop sequence completed
    before the EOS wins.
    """
    ended_by_eos = bool(tokens) and tokens[-1] in eos
    body = tokens[:-1] if ended_by_eos else tokens
    n = first_stop(body, stops, decode, min(checked, len(body)))
    ended = ended_by_eos or len(tokens) >= limit
    text = decode(body) if ended and not n else ""
    if ended and not n and stops and _has_stop(text, stops):  # the whole text, once per row
        n = first_stop(body, stops, decode)
    if n:
        kept = tokens[:n]
        return Generation(kept, cut_at_stop(decode(kept), stops), n, STOP_SEQUENCE, logits[:n])
    if ended_by_eos:
        return Generation(tokens, text, len(tokens), STOP_EOS, logits)
    if ended:
        return Generation(tokens, text, len(tokens), STOP_MAX_STEPS, logits)
    return None


def apply_stops(generation: Generation, stops: Sequence[str], decode: Decode) -> Generation:
    """A finished generation of a sampler without stop sequences, cut at the first stop (the
    engine's rule), so static samplers report the same `tokens`/`text`/`stop_reason`."""
    stops = tuple(s for s in stops if s)
    tokens = generation.tokens
    body = tokens[:-1] if generation.stop_reason == STOP_EOS else tokens
    n = first_stop(body, stops, decode)
    if not n:
        return generation
    kept = tokens[:n]
    text = cut_at_stop(decode(kept), stops)
    return Generation(kept, text, n, STOP_SEQUENCE, generation.token_logits[:n])
