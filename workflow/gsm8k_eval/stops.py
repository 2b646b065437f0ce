"""When a greedy row ends: EOS, a stop sequence in its decoded text, or its token budget.

Stop sequences follow lm-eval's `until`: the response text is cut before the earliest
occurrence of any stop sequence. The row ends at the token whose decoding first makes a stop
sequence appear; that token and everything before it are kept in `tokens`/`token_logits`
(as the EOS token is kept), everything generated after it is dropped. So `tokens` decodes to
`text` + the stop sequence (+ whatever else that last token spells).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gsm8k_eval.sampler import STOP_EOS, STOP_MAX_STEPS, Generation

STOP_SEQUENCE = "stop_sequence"

Decode = Callable[[list[int]], str]


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """`text` up to (excluding) the earliest occurrence of any non-empty stop sequence."""
    cut = len(text)
    for stop in stops:
        if stop and (index := text.find(stop)) != -1:
            cut = min(cut, index)
    return text[:cut]


def _has_stop(text: str, stops: Sequence[str]) -> bool:
    return any(stop in text for stop in stops)


def first_stop(tokens: list[int], stops: Sequence[str], decode: Decode, checked: int = 0) -> int:
    """How many tokens to keep: the shortest prefix whose text contains a stop sequence, or 0 if
    none does. `checked`: a prefix length already known to contain none."""
    if not stops or not _has_stop(decode(tokens), stops):
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
    if n:
        kept = tokens[:n]
        text = cut_at_stop(decode(kept), stops)
        return Generation(kept, text, n, STOP_SEQUENCE, logits[:n])
    if ended_by_eos:
        return Generation(tokens, decode(body), len(tokens), STOP_EOS, logits)
    if len(tokens) >= limit:
        return Generation(tokens, decode(tokens), len(tokens), STOP_MAX_STEPS, logits)
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
