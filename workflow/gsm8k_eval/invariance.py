"""Batch-invariance check: compare rollouts of one checkpoint across batch sizes.

Every batch size is compared with the smallest, example by example (by `RolloutRecord.key`).
The result is written as JSON (`results/<run>/invariance/{checkpoint}/{sampler}.json`), schema:

```
{checkpoint, sampler, reference_batch_size, batch_sizes, num_examples, invariant, message,
 context_chars, token_window,
 token_invariant, logit_invariant, logits_compared, claims_invariance, verdict,
 comparisons: [{reference_batch_size, batch_size, num_examples,
                identical_text, identical_tokens, identical_logits,
                identical_text_rate, identical_token_rate, identical_logit_rate,
                logits_compared, token_divergences, logit_divergences,
                reference_correct, correct, reference_accuracy, accuracy, accuracy_delta,
                correctness_flips, flips_to_correct, flips_to_incorrect,
                divergences: [Divergence...]}]}
```

A `Divergence` (see the dataclass) carries the first differing token index, the token ids around
it, the chosen-token logits of both runs there, and a character-level context from `response`.
Divergences are sorted worst first: correctness flips, then the earliest first differing token.

Identical means identical tokens, identical text and, where both runs record logits, identical
float32 logit bits (`identical_logits` compares bit patterns, so -0.0 != 0.0 and a NaN equals
itself). A divergence of kind `logits` has the same tokens and text but other logit bits; its
`first_logit_index` is the first step whose logit bits differ. `invariant` is the verdict over
all three; `token_invariant` and `logit_invariant` (None where no pair recorded logits) show
the two parts separately. `claims_invariance`: whether the sampler promises batch invariance
(stock tunix does not: its divergences are measured, never a failure; see `verdict.py`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gsm8k_eval.io import iter_jsonl, write_json

DEFAULT_CONTEXT_CHARS = 60
DEFAULT_TOKEN_WINDOW = 4
# Samplers whose outputs may change with the batch size: measured, never a failure.
BATCH_DEPENDENT_SAMPLERS = frozenset({"tunix"})


def claims_invariance(sampler: str | None) -> bool:
    """Whether `sampler` promises batch invariance (every sampler but the negative control)."""
    return sampler not in BATCH_DEPENDENT_SAMPLERS


def logit_bits(values: Sequence[float]) -> tuple[int, ...]:
    """The float32 bit pattern of each logit (what "bit-identical logits" compares)."""
    return tuple(struct.unpack(f"<{len(values)}I", struct.pack(f"<{len(values)}f", *values)))


class RolloutMismatchError(ValueError):
    """Rollout files cannot be compared (different id sets, duplicates, wrong checkpoint)."""


class BatchInvarianceError(RuntimeError):
    """Raised by `check_invariance(fail_on_divergence=True)` when any example diverges."""


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


@dataclass(frozen=True)
class InvarianceResult:
    """Outcome of `check_invariance`; `path` is the JSON written."""

    checkpoint: str
    reference_batch_size: int
    batch_sizes: list[int]
    num_examples: int
    comparisons: list[Comparison]
    path: Path
    context_chars: int = DEFAULT_CONTEXT_CHARS
    token_window: int = DEFAULT_TOKEN_WINDOW
    sampler: str | None = None

    @property
    def num_divergent(self) -> int:
        """Total divergent examples over all comparisons."""
        return sum(len(c.divergences) for c in self.comparisons)

    @property
    def invariant(self) -> bool:
        """True when every batch size reproduced the reference: tokens, text and logit bits."""
        return self.num_divergent == 0

    @property
    def token_invariant(self) -> bool:
        """True when every batch size reproduced the reference's tokens and text."""
        return all(c.token_divergences == 0 for c in self.comparisons)

    @property
    def logits_compared(self) -> int:
        """Example pairs (over all comparisons) where both runs recorded logits."""
        return sum(c.logits_compared for c in self.comparisons)

    @property
    def logit_invariant(self) -> bool | None:
        """True when every pair that recorded logits has identical float32 logit bits; None when
        no pair recorded logits."""
        if not self.logits_compared:
            return None
        return self.invariant

    @property
    def claims_invariance(self) -> bool:
        """Whether the sampler promises batch invariance (stock tunix does not)."""
        return claims_invariance(self.sampler)

    @property
    def verdict(self) -> str:
        """`invariant`, `divergent` (a sampler that claims invariance broke it) or
        `batch-dependent` (the negative control diverged: measured, not a failure)."""
        if self.invariant:
            return "invariant"
        return "divergent" if self.claims_invariance else "batch-dependent"

    @property
    def message(self) -> str:
        """One-line human summary."""
        if not self.comparisons:
            return f"only batch size {self.reference_batch_size}: nothing to compare"
        if self.invariant:
            logits = " and float32 logit bits" if self.logits_compared else ""
            return f"all batch sizes produced identical tokens{logits} for every example"
        return "; ".join(
            f"batch size {c.batch_size}: {len(c.divergences)} of {c.num_examples} examples "
            f"diverge from batch size {c.reference_batch_size}"
            + (f" ({c.logit_divergences} in logits only)" if c.logit_divergences else "")
            for c in self.comparisons
            if c.divergences
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the file format)."""
        return {
            "checkpoint": self.checkpoint,
            "sampler": self.sampler,
            "reference_batch_size": self.reference_batch_size,
            "batch_sizes": self.batch_sizes,
            "num_examples": self.num_examples,
            "invariant": self.invariant,
            "message": self.message,
            "context_chars": self.context_chars,
            "token_window": self.token_window,
            "token_invariant": self.token_invariant,
            "logit_invariant": self.logit_invariant,
            "logits_compared": self.logits_compared,
            "claims_invariance": self.claims_invariance,
            "verdict": self.verdict,
            "comparisons": [c.to_dict() for c in self.comparisons],
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


def _check_ids(runs: Mapping[int, Mapping[int, RolloutRecord]], paths: Mapping[int, Path]) -> None:
    ref_bs = min(runs)
    ref_ids = set(runs[ref_bs])
    for bs, records in runs.items():
        ids = set(records)
        if ids != ref_ids:
            missing = sorted(ref_ids - ids)[:10]
            extra = sorted(ids - ref_ids)[:10]
            raise RolloutMismatchError(
                f"example ids differ between batch size {ref_bs} ({paths[ref_bs]}) and "
                f"batch size {bs} ({paths[bs]}): missing {missing}, extra {extra} "
                f"(first 10 shown; {len(ref_ids)} vs {len(ids)} ids)"
            )


def _check_checkpoint(
    runs: Mapping[int, Mapping[int, RolloutRecord]], paths: Mapping[int, Path], checkpoint: str
) -> None:
    for bs, records in runs.items():
        found = {r.checkpoint for r in records.values()} - {None}
        if found and found != {checkpoint}:
            raise RolloutMismatchError(
                f"{paths[bs]} holds rollouts of checkpoint(s) {sorted(found)}, "
                f"expected {checkpoint!r}"
            )


def check_invariance(
    rollouts: Mapping[int, Path],
    out_path: Path,
    *,
    checkpoint: str,
    sampler: str | None = None,
    fail_on_divergence: bool = False,
    context_chars: int = DEFAULT_CONTEXT_CHARS,
    token_window: int = DEFAULT_TOKEN_WINDOW,
) -> InvarianceResult:
    """Compare the rollouts of every batch size with the smallest; write JSON to `out_path`.

    `sampler` only labels the result (the rollouts of one checkpoint and sampler are compared).

    Raises `RolloutMismatchError` when id sets differ, and `BatchInvarianceError` (after writing
    the JSON) when `fail_on_divergence` and any example diverges.
    """
    if not rollouts:
        raise ValueError("check_invariance needs at least one rollouts file")
    paths = {int(bs): Path(p) for bs, p in rollouts.items()}
    runs = {bs: load_rollout_records(p) for bs, p in sorted(paths.items())}
    _check_ids(runs, paths)
    _check_checkpoint(runs, paths, checkpoint)
    ref_bs = min(runs)
    comparisons = [
        compare_runs(
            runs[ref_bs],
            runs[bs],
            reference_batch_size=ref_bs,
            batch_size=bs,
            context_chars=context_chars,
            token_window=token_window,
        )
        for bs in sorted(runs)
        if bs != ref_bs
    ]
    result = InvarianceResult(
        checkpoint=checkpoint,
        reference_batch_size=ref_bs,
        batch_sizes=sorted(runs),
        num_examples=len(runs[ref_bs]),
        comparisons=comparisons,
        path=Path(out_path),
        context_chars=context_chars,
        token_window=token_window,
        sampler=sampler,
    )
    write_json(Path(out_path), result.to_dict())
    if fail_on_divergence and not result.invariant:
        raise BatchInvarianceError(
            f"batch invariance violated for checkpoint {checkpoint!r}: {result.message}; "
            f"details in {out_path}"
        )
    return result
