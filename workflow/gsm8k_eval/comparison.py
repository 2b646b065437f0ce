"""Comparing two runs' rollouts example by example: tokens, text and float32 logit bits.

The records (`RolloutRecord`), one example's divergence (`Divergence`: the first differing
token, the token ids and chosen-token logits around it, a character context) and one pair of
runs (`Comparison`), used by the invariance check (`invariance.py`, which re-exports these
names) and by the report (batch dependence, JAX vs PyTorch).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gsm8k_eval.io import iter_jsonl

DEFAULT_CONTEXT_CHARS = 60
DEFAULT_TOKEN_WINDOW = 4


def logit_bits(values: Sequence[float]) -> tuple[int, ...]:
    """The float32 bit pattern of each logit (what "bit-identical logits" compares)."""
    return tuple(struct.unpack(f"<{len(values)}I", struct.pack(f"<{len(values)}f", *values)))


class RolloutMismatchError(ValueError):
    """Rollout files cannot be compared (different id sets, duplicates, wrong checkpoint)."""


@dataclass(frozen=True)
class RolloutRecord:
    """The fields of one rollout line that the comparison needs."""

    id: int
    question: str
    response: str
    tokens: tuple[int, ...]
    token_logits: tuple[float, ...]
    correct: bool
    checkpoint: str | None = None
    sample_index: int | None = None  # sampled runs only

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> RolloutRecord:
        """Build from one decoded rollouts.jsonl object."""
        return cls(
            id=int(obj["id"]),
            question=str(obj.get("question", "")),
            response=str(obj["response"]),
            tokens=tuple(int(t) for t in obj["tokens"]),
            token_logits=tuple(float(x) for x in obj.get("token_logits") or ()),
            correct=bool(obj["correct"]),
            checkpoint=obj.get("checkpoint"),
            sample_index=None if obj.get("sample_index") is None else int(obj["sample_index"]),
        )

    @property
    def key(self) -> int | tuple[int, int]:
        """What runs are matched on: the id, or (id, sample index) for a sampled run's sample."""
        return self.id if self.sample_index is None else (self.id, self.sample_index)


@dataclass(frozen=True)
class Divergence:
    """One example whose generation differs between the reference and another batch size."""

    id: int
    question: str
    first_token_index: int | None
    token_window_start: int
    reference_tokens: list[int]
    other_tokens: list[int]
    reference_token: int | None
    other_token: int | None
    reference_logit: float | None
    other_logit: float | None
    logit_delta: float | None
    first_char_index: int
    common_prefix_tail: str
    reference_continuation: str
    other_continuation: str
    reference_correct: bool
    other_correct: bool
    kind: str = "tokens"  # tokens | text | logits (same tokens and text, other logit bits)
    first_logit_index: int | None = None
    sample_index: int | None = None  # sampled runs: which sample of question `id`

    @property
    def key(self) -> int | tuple[int, int]:
        """The diverging example's `RolloutRecord.key`."""
        return self.id if self.sample_index is None else (self.id, self.sample_index)

    @property
    def correctness_flipped(self) -> bool:
        """Whether the two runs disagree on correctness."""
        return self.reference_correct != self.other_correct

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the derived `correctness_flipped` (`sample_index`: samples only)."""
        out = {**asdict(self), "correctness_flipped": self.correctness_flipped}
        if self.sample_index is None:
            del out["sample_index"]
        return out


@dataclass(frozen=True)
class Comparison:
    """Reference batch size vs one other batch size."""

    reference_batch_size: int
    batch_size: int
    num_examples: int
    identical_text: int
    identical_tokens: int
    identical_logits: int
    reference_correct: int
    correct: int
    flips_to_correct: int
    flips_to_incorrect: int
    divergences: list[Divergence] = field(default_factory=list)
    logits_compared: int = 0  # pairs where both runs recorded logits
    full_examples: int | None = None  # a spot check: the reference's examples (else None)

    @property
    def spot_check(self) -> bool:
        """Whether `batch_size` ran on a subset (the first examples) only."""
        return self.full_examples is not None

    @property
    def scope(self) -> str:
        """What was compared: `spot check: N of M examples` or `all N examples`."""
        if self.spot_check:
            return f"spot check: {self.num_examples} of {self.full_examples} examples"
        return f"all {self.num_examples} examples"

    @property
    def token_divergences(self) -> int:
        """Divergent examples whose tokens or text differ."""
        return sum(d.kind != "logits" for d in self.divergences)

    @property
    def logit_divergences(self) -> int:
        """Divergent examples with identical tokens and text but other logit bits."""
        return sum(d.kind == "logits" for d in self.divergences)

    @property
    def correctness_flips(self) -> int:
        """Examples whose correctness differs between the two runs."""
        return self.flips_to_correct + self.flips_to_incorrect

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with rates and the accuracy delta (other - reference)."""
        n = self.num_examples
        ref_acc, acc = _rate(self.reference_correct, n), _rate(self.correct, n)
        return {
            "reference_batch_size": self.reference_batch_size,
            "batch_size": self.batch_size,
            "num_examples": n,
            "spot_check": self.spot_check,
            "full_examples": self.full_examples,
            "scope": self.scope,
            "identical_text": self.identical_text,
            "identical_tokens": self.identical_tokens,
            "identical_logits": self.identical_logits,
            "identical_text_rate": _rate(self.identical_text, n),
            "identical_token_rate": _rate(self.identical_tokens, n),
            "identical_logit_rate": _rate(self.identical_logits, n),
            "logits_compared": self.logits_compared,
            "token_divergences": self.token_divergences,
            "logit_divergences": self.logit_divergences,
            "reference_correct": self.reference_correct,
            "correct": self.correct,
            "reference_accuracy": ref_acc,
            "accuracy": acc,
            "accuracy_delta": acc - ref_acc,
            "correctness_flips": self.correctness_flips,
            "flips_to_correct": self.flips_to_correct,
            "flips_to_incorrect": self.flips_to_incorrect,
            "divergences": [d.to_dict() for d in self.divergences],
        }


def _rate(count: int, total: int) -> float:
    return count / total if total else 0.0


def load_rollout_records(path: Path) -> dict[Any, RolloutRecord]:
    """Read a rollouts.jsonl into {`RolloutRecord.key`: record}; duplicate keys are an error."""
    records: dict[Any, RolloutRecord] = {}
    for line_no, row in iter_jsonl(Path(path)):
        record = RolloutRecord.from_json(row)
        if record.key in records:
            raise RolloutMismatchError(f"{path}:{line_no}: duplicate id {record.key}")
        records[record.key] = record
    return records


def first_difference(a: Iterable[Any], b: Iterable[Any]) -> int | None:
    """Index of the first differing element (len of the shorter if one is a prefix), or None."""
    seq_a, seq_b = list(a), list(b)
    for i, (x, y) in enumerate(zip(seq_a, seq_b, strict=False)):
        if x != y:
            return i
    return None if len(seq_a) == len(seq_b) else min(len(seq_a), len(seq_b))


def _at(values: tuple[Any, ...], index: int | None) -> Any:
    if index is None or index >= len(values):
        return None
    return values[index]


def make_divergence(
    ref: RolloutRecord,
    other: RolloutRecord,
    *,
    context_chars: int = DEFAULT_CONTEXT_CHARS,
    token_window: int = DEFAULT_TOKEN_WINDOW,
) -> Divergence:
    """Describe where `other` departs from `ref` (tokens, logits, text context)."""
    k = first_difference(ref.tokens, other.tokens)
    logit_k = first_difference(logit_bits(ref.token_logits), logit_bits(other.token_logits))
    if k is None and ref.response == other.response:  # same tokens and text: logits only
        kind, k_logit = "logits", logit_k
    else:
        kind, k_logit = ("tokens" if k is not None else "text"), k
    start = max(0, (k or 0) - token_window)
    stop = (k or 0) + token_window + 1
    char_k = first_difference(ref.response, other.response)
    char_k = len(ref.response) if char_k is None else char_k
    ref_logit, other_logit = _at(ref.token_logits, k_logit), _at(other.token_logits, k_logit)
    both = ref_logit is not None and other_logit is not None
    return Divergence(
        id=ref.id,
        question=ref.question,
        first_token_index=k,
        token_window_start=start,
        reference_tokens=list(ref.tokens[start:stop]),
        other_tokens=list(other.tokens[start:stop]),
        reference_token=_at(ref.tokens, k),
        other_token=_at(other.tokens, k),
        reference_logit=ref_logit,
        other_logit=other_logit,
        logit_delta=(other_logit - ref_logit) if both else None,
        first_char_index=char_k,
        common_prefix_tail=ref.response[max(0, char_k - context_chars) : char_k],
        reference_continuation=ref.response[char_k : char_k + context_chars],
        other_continuation=other.response[char_k : char_k + context_chars],
        reference_correct=ref.correct,
        other_correct=other.correct,
        kind=kind,
        first_logit_index=logit_k if ref.token_logits and other.token_logits else None,
        sample_index=ref.sample_index,
    )


def _severity(d: Divergence) -> tuple[int, int, int, int]:
    index = d.first_token_index if d.first_token_index is not None else 1 << 62
    return (0 if d.correctness_flipped else 1, index, d.id, d.sample_index or 0)


def compare_runs(
    reference: Mapping[int, RolloutRecord],
    other: Mapping[int, RolloutRecord],
    *,
    reference_batch_size: int,
    batch_size: int,
    context_chars: int = DEFAULT_CONTEXT_CHARS,
    token_window: int = DEFAULT_TOKEN_WINDOW,
) -> Comparison:
    """Compare two runs with identical id sets, example by example."""
    ids = sorted(reference)
    pairs = [(reference[i], other[i]) for i in ids]
    divergences = [
        make_divergence(r, o, context_chars=context_chars, token_window=token_window)
        for r, o in pairs
        if not _identical(r, o)
    ]
    return Comparison(
        reference_batch_size=reference_batch_size,
        batch_size=batch_size,
        num_examples=len(ids),
        identical_text=sum(r.response == o.response for r, o in pairs),
        identical_tokens=sum(r.tokens == o.tokens for r, o in pairs),
        identical_logits=sum(
            r.tokens == o.tokens and logit_bits(r.token_logits) == logit_bits(o.token_logits)
            for r, o in pairs
        ),
        reference_correct=sum(r.correct for r, _ in pairs),
        correct=sum(o.correct for _, o in pairs),
        flips_to_correct=sum(o.correct and not r.correct for r, o in pairs),
        flips_to_incorrect=sum(r.correct and not o.correct for r, o in pairs),
        divergences=sorted(divergences, key=_severity),
        logits_compared=sum(bool(r.token_logits and o.token_logits) for r, o in pairs),
    )


def _identical(ref: RolloutRecord, other: RolloutRecord) -> bool:
    """Same tokens and text, and, where both runs recorded logits, the same float32 bits."""
    if ref.tokens != other.tokens or ref.response != other.response:
        return False
    if not (ref.token_logits and other.token_logits):
        return True
    return logit_bits(ref.token_logits) == logit_bits(other.token_logits)
