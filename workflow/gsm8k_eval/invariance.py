"""Batch-invariance check: compare rollouts of one checkpoint across batch sizes.

Every batch size is compared with the smallest one, example by example (by `RolloutRecord.key`:
the id, or (id, sample index) for a sampled run).
The result is written as JSON (`results/<run>/invariance/{checkpoint}/{sampler}.json`), schema:

```
{checkpoint, sampler, reference_batch_size, batch_sizes, spot_check_batch_sizes, num_examples,
 invariant, message, context_chars, token_window,
 token_invariant, logit_invariant, logits_compared, claims_invariance, verdict,
 comparisons: [{reference_batch_size, batch_size, num_examples,
                spot_check, full_examples, scope,
                identical_text, identical_tokens, identical_logits,
                identical_text_rate, identical_token_rate, identical_logit_rate,
                logits_compared, token_divergences, logit_divergences,
                reference_correct, correct, reference_accuracy, accuracy, accuracy_delta,
                correctness_flips, flips_to_correct, flips_to_incorrect,
                divergences: [Divergence...]}]}
```

A spot check (`spot_checks`: the first examples only, at a batch size the full runs lack) is
compared with the reference on the examples both hold, and says so: `spot_check` true,
`num_examples` the shared examples, `full_examples` the reference's, `scope` "spot check: N of
M examples"; its `reference_accuracy`/`accuracy` are both of those N examples.

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

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gsm8k_eval.comparison import (
    DEFAULT_CONTEXT_CHARS,
    DEFAULT_TOKEN_WINDOW,
    Comparison,
    Divergence,
    RolloutMismatchError,
    RolloutRecord,
    compare_runs,
    first_difference,
    load_rollout_records,
    logit_bits,
    make_divergence,
)
from gsm8k_eval.io import write_json

__all__ = [
    "BATCH_DEPENDENT_SAMPLERS",
    "DEFAULT_CONTEXT_CHARS",
    "DEFAULT_TOKEN_WINDOW",
    "BatchInvarianceError",
    "Comparison",
    "Divergence",
    "InvarianceResult",
    "RolloutMismatchError",
    "RolloutRecord",
    "check_invariance",
    "claims_invariance",
    "compare_runs",
    "first_difference",
    "load_rollout_records",
    "logit_bits",
    "make_divergence",
]

# Samplers whose outputs may change with the batch size: measured, never a failure.
BATCH_DEPENDENT_SAMPLERS = frozenset({"tunix"})


def claims_invariance(sampler: str | None) -> bool:
    """Whether `sampler` promises batch invariance (every sampler but the negative control)."""
    return sampler not in BATCH_DEPENDENT_SAMPLERS


class BatchInvarianceError(RuntimeError):
    """Raised by `check_invariance(fail_on_divergence=True)` when any example diverges."""


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
    spot_check_batch_sizes: list[int] = field(default_factory=list)

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
        spots = [c for c in self.comparisons if c.spot_check]
        if self.invariant:
            logits = " and float32 logit bits" if self.logits_compared else ""
            scope = "; ".join(f"batch size {c.batch_size}: {c.scope}" for c in spots)
            compared = f" compared ({scope})" if spots else ""
            return f"all batch sizes produced identical tokens{logits} for every example{compared}"
        return "; ".join(
            f"batch size {c.batch_size}{f' ({c.scope})' if c.spot_check else ''}: "
            f"{len(c.divergences)} of {c.num_examples} examples "
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
            "spot_check_batch_sizes": self.spot_check_batch_sizes,
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


def _spot_comparison(
    reference: Mapping[int, RolloutRecord],
    batch_size: int,
    path: Path,
    checkpoint: str,
    reference_batch_size: int,
    context_chars: int,
    token_window: int,
) -> Comparison:
    """A spot check's rollouts against the reference on the examples they share (every spot
    example must be one of the reference's)."""
    spot = load_rollout_records(path)
    extra = sorted(set(spot) - set(reference))
    if extra or not spot:
        raise RolloutMismatchError(
            f"spot check {path} (batch size {batch_size}) has ids the full run lacks: "
            f"{extra[:10]} (first 10 shown)"
            if extra
            else f"spot check {path} is empty"
        )
    _check_checkpoint({batch_size: spot}, {batch_size: path}, checkpoint)
    shared = {i: reference[i] for i in sorted(spot)}
    comparison = compare_runs(
        shared,
        spot,
        reference_batch_size=reference_batch_size,
        batch_size=batch_size,
        context_chars=context_chars,
        token_window=token_window,
    )
    return dataclasses.replace(comparison, full_examples=len(reference))


def check_invariance(
    rollouts: Mapping[int, Path],
    out_path: Path,
    *,
    checkpoint: str,
    sampler: str | None = None,
    fail_on_divergence: bool = False,
    context_chars: int = DEFAULT_CONTEXT_CHARS,
    token_window: int = DEFAULT_TOKEN_WINDOW,
    spot_checks: Mapping[int, Path] | None = None,
) -> InvarianceResult:
    """Compare the rollouts of every batch size with the smallest; write JSON to `out_path`.

    `sampler` only labels the result (the rollouts of one checkpoint and sampler are compared).
    `spot_checks`: {batch size: rollouts} of runs on the first examples only, each compared
    with the smallest full batch size on the examples they share (a `Comparison` whose
    `spot_check` is true and whose `scope` says "spot check: N of M examples").

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
    spots = {int(bs): Path(p) for bs, p in (spot_checks or {}).items()}
    comparisons += [
        _spot_comparison(runs[ref_bs], bs, path, checkpoint, ref_bs, context_chars, token_window)
        for bs, path in sorted(spots.items())
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
        spot_check_batch_sizes=sorted(spots),
    )
    write_json(Path(out_path), result.to_dict())
    if fail_on_divergence and not result.invariant:
        raise BatchInvarianceError(
            f"batch invariance violated for checkpoint {checkpoint!r}: {result.message}; "
            f"details in {out_path}"
        )
    return result
