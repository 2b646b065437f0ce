"""Batch dependence: does a sampler change its outputs with the batch size? (issue #13)

For each checkpoint and sampler, every batch size is compared with the smallest one, example by
example: identical outputs, where the first differing token falls, accuracy at both sizes with
a paired test (exact McNemar over examples; in sampled runs the sign-flip permutation test over
questions, each question's accuracy over its samples the unit, as checkpoint comparisons do:
the samples of a question are not independent), correctness flips, and the most telling flipped
examples. The headline
is computed here (typed); `_batch_dependence.md.j2` words it.

The comparison of each pair (identical outputs, divergences, correctness) is read from the
invariance output (`gsm8k-eval check-invariance`), the one source of those numbers; it is
computed here (with the same `compare_runs`) only for a pair no invariance file covers, as when
`render-report` is pointed at summaries alone.

The rollouts record the logit of the chosen token only (and the stock tunix sampler records
none), so at the first differing token the report shows each run's own choice and, where
recorded, its logit; the logit the other run's token had in the same forward pass is not
recorded.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gsm8k_eval.invariance import Comparison, Divergence, RolloutRecord, compare_runs
from gsm8k_eval.report.inputs import Run
from gsm8k_eval.stats import McNemarResult, mcnemar_exact, sign_flip_p_value

MAX_EXAMPLES = 3  # flipped examples shown side by side per comparison
ANSWER_WIDTH = 300  # characters of each response shown in an example


@dataclass(frozen=True)
class Example:
    """A flipped (or, failing that, diverging) example, both batch sizes side by side."""

    divergence: Divergence
    gold: str | None
    reference_answer: str | None
    other_answer: str | None
    reference_response: str
    other_response: str


@dataclass(frozen=True)
class FirstDivergence:
    """Where the first differing token falls, over the examples that differ."""

    count: int
    minimum: int
    median: float
    maximum: int


@dataclass(frozen=True)
class PairResult:
    """One checkpoint and sampler: the smallest batch size vs one other."""

    checkpoint: str
    sampler: str
    reference: Run
    other: Run
    comparison: Comparison
    mcnemar: McNemarResult  # over examples (in a sampled run: over samples)
    p_value: float  # `test`'s two-sided p-value
    test: str  # "McNemar exact" or, sampled, "sign-flip permutation" (over questions)
    first_divergence: FirstDivergence | None
    examples: list[Example]
    answers_changed: int  # examples whose extracted answer differs between the batch sizes

    @property
    def has_logits(self) -> bool:
        """Whether the shown examples' rollouts recorded per-step logits."""
        return any(
            e.divergence.reference_logit is not None or e.divergence.other_logit is not None
            for e in self.examples
        )

    @property
    def reference_batch_size(self) -> int:
        return self.reference.batch_size

    @property
    def batch_size(self) -> int:
        return self.other.batch_size

    @property
    def total(self) -> int:
        return self.comparison.num_examples

    @property
    def identical(self) -> int:
        """Examples with identical generated tokens at both batch sizes."""
        return self.comparison.identical_tokens

    @property
    def changed(self) -> int:
        return self.total - self.identical

    @property
    def logit_divergences(self) -> int:
        """Examples with identical tokens and text whose float32 logit bits differ (for the
        templates: token and logit identity shown separately)."""
        return self.comparison.logit_divergences

    @property
    def identical_rate(self) -> float:
        return self.identical / self.total if self.total else 0.0

    @property
    def reference_accuracy(self) -> float:
        return self.comparison.reference_correct / self.total if self.total else 0.0

    @property
    def accuracy(self) -> float:
        return self.comparison.correct / self.total if self.total else 0.0

    @property
    def delta(self) -> float:
        """Accuracy at `batch_size` minus accuracy at `reference_batch_size`."""
        return self.accuracy - self.reference_accuracy

    @property
    def flips(self) -> int:
        return self.comparison.correctness_flips


@dataclass(frozen=True)
class HeadlineClause:
    """One sampler between two batch sizes, summed over the checkpoints."""

    sampler: str
    reference_batch_size: int
    batch_size: int
    changed: int
    total: int
    deltas: list[tuple[str, float]]  # (checkpoint, accuracy difference)
    answers_changed: int


@dataclass(frozen=True)
class BatchDependence:
    pairs: list[PairResult]
    headline: list[HeadlineClause]

    @property
    def compared(self) -> bool:
        return bool(self.pairs)


def _records(run: Run) -> dict[Any, RolloutRecord]:
    """By `RolloutRecord.key`: the id, or (id, sample index) in a sampled run."""
    records = (RolloutRecord.from_json(row) for row in run.rollouts.to_dict("records"))
    return {record.key: record for record in records}


def _rows(run: Run) -> dict[Any, dict[str, Any]]:
    rows = run.rollouts.to_dict("records")
    return {RolloutRecord.from_json(row).key: row for row in rows}


def first_divergence_stats(divergences: Sequence[Divergence]) -> FirstDivergence | None:
    """Min, median and max first differing token index (None when nothing differs)."""
    indexes = [d.first_token_index for d in divergences if d.first_token_index is not None]
    if not indexes:
        return None
    return FirstDivergence(len(indexes), min(indexes), statistics.median(indexes), max(indexes))


def _optional_text(value: Any) -> str | None:
    return None if value is None or value != value else str(value)  # NaN from pandas: None


def telling_examples(reference: Run, other: Run, comparison: Comparison) -> list[Example]:
    """Correctness flips first (earliest divergence first); diverging examples if none flipped."""
    flipped = [d for d in comparison.divergences if d.correctness_flipped]
    chosen = (flipped or comparison.divergences)[:MAX_EXAMPLES]
    ref_rows, other_rows = _rows(reference), _rows(other)
    return [
        Example(
            divergence=d,
            gold=_optional_text(ref_rows[d.key].get("gold")),
            reference_answer=_optional_text(ref_rows[d.key].get("extracted_answer")),
            other_answer=_optional_text(other_rows[d.key].get("extracted_answer")),
            reference_response=str(ref_rows[d.key].get("response", ""))[:ANSWER_WIDTH],
            other_response=str(other_rows[d.key].get("response", ""))[:ANSWER_WIDTH],
        )
        for d in chosen
    ]


def answers_changed(reference: Run, other: Run, ids: Sequence[int]) -> int:
    """Examples (among `ids`) whose extracted answer differs between the two runs."""
    ref, oth = _rows(reference), _rows(other)
    key = "extracted_answer"
    return sum(_optional_text(ref[i].get(key)) != _optional_text(oth[i].get(key)) for i in ids)


def comparison_from_json(data: Mapping[str, Any]) -> Comparison:
    """A `Comparison` as the invariance JSON records it (derived keys such as rates dropped)."""
    known = {f.name for f in dataclasses.fields(Divergence)}
    divergences = [
        Divergence(**{k: v for k, v in d.items() if k in known}) for d in data["divergences"]
    ]
    fields = {f.name for f in dataclasses.fields(Comparison)} - {"divergences"}
    return Comparison(**{k: v for k, v in data.items() if k in fields}, divergences=divergences)


def recorded_comparison(
    invariance: Mapping[tuple[str, str], Mapping[str, Any]], reference: Run, other: Run
) -> Comparison | None:
    """The invariance output's comparison of this pair, if one was given."""
    data = invariance.get((reference.checkpoint, reference.sampler)) or {}
    for c in data.get("comparisons", []):
        if (c["reference_batch_size"], c["batch_size"]) == (reference.batch_size, other.batch_size):
            return comparison_from_json(c)
    return None


def compare_pair(
    reference: Run,
    other: Run,
    invariance: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
) -> PairResult:
    """`other` against `reference` (same checkpoint and sampler), matched by example id; the
    comparison from `invariance` (by (checkpoint, sampler)) when it holds this pair."""
    ref, oth = _records(reference), _records(other)
    if set(ref) != set(oth):
        common = set(ref) & set(oth)
        ref = {i: r for i, r in ref.items() if i in common}
        oth = {i: r for i, r in oth.items() if i in common}
    comparison = recorded_comparison(invariance or {}, reference, other) or compare_runs(
        ref, oth, reference_batch_size=reference.batch_size, batch_size=other.batch_size
    )
    ids = sorted(ref)
    mcnemar = mcnemar_exact([ref[i].correct for i in ids], [oth[i].correct for i in ids])
    p_value, test = paired_test(ref, oth, mcnemar)
    return PairResult(
        checkpoint=reference.checkpoint,
        sampler=reference.sampler,
        reference=reference,
        other=other,
        comparison=comparison,
        mcnemar=mcnemar,
        p_value=p_value,
        test=test,
        first_divergence=first_divergence_stats(comparison.divergences),
        examples=telling_examples(reference, other, comparison),
        answers_changed=answers_changed(reference, other, ids),
    )


def paired_test(
    ref: Mapping[Any, RolloutRecord], oth: Mapping[Any, RolloutRecord], mcnemar: McNemarResult
) -> tuple[float, str]:
    """(p-value, test name) of the pair: `mcnemar` for greedy runs (keys are ids); for sampled
    runs (keys (id, sample index)) the sign-flip test of the per-question accuracies."""
    if not any(isinstance(key, tuple) for key in ref):
        return mcnemar.p_value, "McNemar exact"
    questions: dict[Any, list[tuple[bool, bool]]] = {}
    for key, record in ref.items():
        questions.setdefault(key[0], []).append((record.correct, oth[key].correct))
    pairs = [tuple(map(statistics.fmean, zip(*flags, strict=True))) for flags in questions.values()]
    a, b = zip(*pairs, strict=True)
    return sign_flip_p_value(a, b), "sign-flip permutation"


def pair_results(
    runs: Sequence[Run], invariance: Mapping[tuple[str, str], Mapping[str, Any]] | None = None
) -> list[PairResult]:
    """Every checkpoint × sampler: its smallest batch size vs each larger one (runs' order)."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.checkpoint, r.sampler), []).append(r)
    results = []
    for group in groups.values():
        ordered = sorted(group, key=lambda r: r.batch_size)
        results += [compare_pair(ordered[0], other, invariance) for other in ordered[1:]]
    return results


def headline(pairs: Sequence[PairResult]) -> list[HeadlineClause]:
    """One clause per sampler and batch-size pair, batch-dependent samplers first."""
    clauses: dict[tuple[str, int, int], HeadlineClause] = {}
    for p in pairs:
        key = (p.sampler, p.reference_batch_size, p.batch_size)
        old = clauses.get(key) or HeadlineClause(*key, 0, 0, [], 0)
        clauses[key] = HeadlineClause(
            *key,
            changed=old.changed + p.changed,
            total=old.total + p.total,
            deltas=[*old.deltas, (p.checkpoint, p.delta)],
            answers_changed=old.answers_changed + p.answers_changed,
        )
    return sorted(clauses.values(), key=lambda c: (c.changed == 0, c.sampler, c.batch_size))


def batch_dependence(
    runs: Sequence[Run], invariance: Mapping[tuple[str, str], Mapping[str, Any]] | None = None
) -> BatchDependence:
    """Every pair's comparison (from `invariance` where it has it) and the headline."""
    pairs = pair_results(runs, invariance)
    return BatchDependence(pairs, headline(pairs))
