"""The report's statistics as typed rows: accuracy by method, throughput, paired comparisons
and batch invariance. Templates format every number."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from gsm8k_eval.report.inputs import (
    ReportDataError,
    Run,
    as_number,
    checkpoint_names,
)
from gsm8k_eval.stats import Interval, mcnemar_exact, paired_bootstrap_delta, sign_flip_p_value

ALPHA = 0.05
MAX_LISTED_EXAMPLES = 10


# ---------------------------------------------------------------- accuracy by method


@dataclass(frozen=True)
class MethodRow:
    checkpoint: str
    batch_size: int
    accuracies: list[float | None]
    sampler: str


LM_EVAL_METRIC_NAMES = {  # lm-eval's results key for the gsm8k filters our methods reproduce
    name: f" (lm-eval `exact_match,{name}`)" for name in ("strict-match", "flexible-extract")
}


@dataclass(frozen=True)
class MethodsTable:
    """Accuracy of each extraction method found in the summaries or rollouts."""

    methods: list[str]
    primaries: set[str]
    rows: list[MethodRow]

    @property
    def headers(self) -> list[str]:
        """Method names, the primary one(s) marked, lm-eval's with its metric name."""
        return [
            f"{m}{LM_EVAL_METRIC_NAMES.get(m, '')}{' (primary)' if m in self.primaries else ''}"
            for m in self.methods
        ]

    @property
    def lm_eval_methods(self) -> list[str]:
        return [m for m in self.methods if m in LM_EVAL_METRIC_NAMES]


def method_names(runs: Sequence[Run]) -> list[str]:
    """Methods named in any summary's `accuracy_by_method` or any rollout's `correct_by_method`."""
    names: set[str] = set()
    for r in runs:
        names.update(r.summary.get("accuracy_by_method") or {})
        for value in r.rollouts.get("correct_by_method", pd.Series(dtype=object)):
            names.update(value or {})
    return sorted(names)


def method_accuracy(run: Run, method: str) -> float | None:
    """From the rollouts when every row has the method, else the summary's value (or None)."""
    values = [v.get(method) for v in run.rollouts.get("correct_by_method", []) if v]
    summary = as_number((run.summary.get("accuracy_by_method") or {}).get(method))
    if not run.total or len(values) != run.total or any(v is None for v in values):
        return summary
    accuracy = sum(bool(v) for v in values) / run.total
    if summary is not None and not math.isclose(summary, accuracy, abs_tol=1e-9):
        raise ReportDataError(
            f"{run.summary_path}: accuracy_by_method[{method!r}] = {summary} but "
            f"{run.rollouts_path} gives {accuracy}"
        )
    return accuracy


def methods_table(runs: Sequence[Run]) -> MethodsTable:
    names = method_names(runs)
    rows = [
        MethodRow(r.checkpoint, r.batch_size, [method_accuracy(r, m) for m in names], r.sampler)
        for r in runs
    ]
    primaries = {str(r.summary["primary_method"]) for r in runs if r.summary.get("primary_method")}
    return MethodsTable(names, primaries, rows)


# ---------------------------------------------------------------- throughput


@dataclass(frozen=True)
class ThroughputRow:
    checkpoint: str
    batch_size: int
    examples_per_second: float | None
    tokens_per_second: float | None
    generated_tokens: float | None
    wall_seconds: float | None
    peak_memory_mb: float | None
    compile_seconds: float | None
    slot_utilization: float | None
    sampler: str


@dataclass(frozen=True)
class ThroughputTable:
    """Measured speed; compile time and slot utilisation columns only when some run has them."""

    rows: list[ThroughputRow]

    @property
    def has_compile_seconds(self) -> bool:
        return any(r.compile_seconds is not None for r in self.rows)

    @property
    def has_slot_utilization(self) -> bool:
        return any(r.slot_utilization is not None for r in self.rows)


THROUGHPUT_KEYS = (  # numeric summary fields of ThroughputRow (missing or non-numeric: None)
    "examples_per_second",
    "tokens_per_second",
    "generated_tokens",
    "wall_seconds",
    "peak_memory_mb",
    "compile_seconds",
    "slot_utilization",
)


def throughput_table(runs: Sequence[Run]) -> ThroughputTable:
    return ThroughputTable(
        [
            ThroughputRow(
                r.checkpoint,
                r.batch_size,
                **{k: r.number(k) for k in THROUGHPUT_KEYS},
                sampler=r.sampler,
            )
            for r in runs
        ]
    )


# ---------------------------------------------------------------- paired comparisons


@dataclass(frozen=True)
class Example:
    id: int
    question: str


MCNEMAR = "exact McNemar test (two-sided)"
SIGN_FLIP = "paired sign-flip permutation test on per-question accuracy (two-sided)"


@dataclass(frozen=True)
class PairedComparison:
    """Checkpoint vs base on the same examples at one batch size.

    Greedy runs pair examples: 0/1 correctness, exact McNemar test. Sampled runs (`samples`
    per question) pair questions: each question's accuracy over its samples, a sign-flip
    permutation test and a bootstrap over questions, since the samples of one question are not
    independent. `fixed`/`broken` are then the questions whose accuracy rose/fell.
    """

    checkpoint: str
    base: str
    batch_size: int
    paired: int
    base_accuracy: float
    accuracy: float
    fixed: list[Example]
    broken: list[Example]
    p_value: float
    bootstrap: Interval | None
    alpha: float = ALPHA
    samples: int | None = None  # samples per question of a sampled comparison (None: greedy)

    @property
    def delta(self) -> float:
        return self.accuracy - self.base_accuracy

    @property
    def unit(self) -> str:
        return "examples" if self.samples is None else "questions"

    @property
    def test_name(self) -> str:
        return MCNEMAR if self.samples is None else SIGN_FLIP

    @property
    def test_title(self) -> str:
        return self.test_name[0].upper() + self.test_name[1:]

    @property
    def changes(self) -> tuple[str, str]:
        """What `fixed` and `broken` mean: labels in the report."""
        return ("fixed", "broken") if self.samples is None else ("improved", "worse")

    @property
    def significant(self) -> bool:
        """The test (`test_name`) rejects 'no difference' at `alpha`."""
        return self.p_value < self.alpha

    @property
    def listed(self) -> list[tuple[str, Example]]:
        """The fixed and broken examples shown in the report (at most MAX_LISTED_EXAMPLES each)."""
        up, down = self.changes
        fixed = [(up, e) for e in self.fixed[:MAX_LISTED_EXAMPLES]]
        return fixed + [(down, e) for e in self.broken[:MAX_LISTED_EXAMPLES]]

    @property
    def more_fixed(self) -> int:
        return max(0, len(self.fixed) - MAX_LISTED_EXAMPLES)

    @property
    def more_broken(self) -> int:
        return max(0, len(self.broken) - MAX_LISTED_EXAMPLES)


def _is_sampled(base: Run, other: Run) -> bool:
    return "sample_index" in base.rollouts and "sample_index" in other.rollouts


def _paired_frame(base: Run, other: Run) -> pd.DataFrame:
    """Matched by id (0/1 `correct_*`); in sampled runs samples are matched by (id, sample
    index), then averaged per question (`correct_*` its accuracy, `samples` its count)."""
    keys = ["id", "sample_index"] if _is_sampled(base, other) else ["id"]
    left = base.rollouts[[*keys, "question", "correct"]]
    right = other.rollouts[[*keys, "correct"]]
    merged = left.merge(right, on=keys, suffixes=("_base", "_other"), validate="one_to_one")
    merged = merged.astype({"correct_base": bool, "correct_other": bool})
    if len(keys) == 1:
        return merged
    grouped = merged.groupby("id", sort=False)
    return grouped.agg(
        question=("question", "first"),
        correct_base=("correct_base", "mean"),
        correct_other=("correct_other", "mean"),
        samples=("sample_index", "size"),
    ).reset_index()


def _examples(frame: pd.DataFrame) -> list[Example]:
    return [Example(int(i), str(q)) for i, q in zip(frame.id, frame.question, strict=True)]


def _p_value(frame: pd.DataFrame, sampled: bool) -> float:
    if sampled:
        return sign_flip_p_value(frame.correct_base, frame.correct_other)
    return mcnemar_exact(frame.correct_base, frame.correct_other).p_value


def paired_comparison(base: Run, other: Run) -> PairedComparison:
    """Checkpoint vs base on the examples both evaluated (matched by id; sampled runs: on the
    questions, see `PairedComparison`)."""
    frame = _paired_frame(base, other)
    n = len(frame)
    sampled = "samples" in frame
    boot = paired_bootstrap_delta(frame.correct_base, frame.correct_other) if n else None
    return PairedComparison(
        checkpoint=other.checkpoint,
        base=base.checkpoint,
        batch_size=other.batch_size,
        paired=n,
        base_accuracy=float(frame.correct_base.mean()) if n else 0.0,
        accuracy=float(frame.correct_other.mean()) if n else 0.0,
        fixed=_examples(frame[frame.correct_other > frame.correct_base]),
        broken=_examples(frame[frame.correct_other < frame.correct_base]),
        p_value=_p_value(frame, sampled),
        bootstrap=boot.interval if boot else None,
        samples=(int(frame.samples.max()) if n else 0) if sampled else None,
    )


def paired_comparisons(runs: Sequence[Run], base: str) -> list[PairedComparison]:
    """Each non-base checkpoint vs base at the smallest batch size both have."""
    if base not in checkpoint_names(runs):
        return []
    pick = {(r.checkpoint, r.batch_size): r for r in runs}
    base_sizes = {r.batch_size for r in runs if r.checkpoint == base}
    result = []
    for name in checkpoint_names(runs):
        common = {r.batch_size for r in runs if r.checkpoint == name} & base_sizes
        if name != base and common:
            bs = min(common)
            result.append(paired_comparison(pick[(base, bs)], pick[(name, bs)]))
    return result


# ---------------------------------------------------------------- batch invariance


@dataclass(frozen=True)
class WorstDivergence:
    """The most severe divergence of a checkpoint: its comparison and divergence records."""

    comparison: dict[str, Any]
    divergence: dict[str, Any]


@dataclass(frozen=True)
class InvarianceSection:
    """Batch invariance of one checkpoint and sampler; `data` is its invariance file (None if
    not given)."""

    checkpoint: str
    batch_sizes: list[int]
    data: dict[str, Any] | None
    worst: WorstDivergence | None
    sampler: str

    @property
    def comparisons(self) -> list[dict[str, Any]]:
        return list(self.data["comparisons"]) if self.data else []

    @property
    def diverging(self) -> list[dict[str, Any]]:
        return [c for c in self.comparisons if c["divergences"]]

    @property
    def spot_checks(self) -> list[dict[str, Any]]:
        """Comparisons of a spot check (the first examples only), labelled by their `scope`."""
        return [c for c in self.comparisons if c.get("spot_check")]


def _severity(item: WorstDivergence) -> tuple[int, int, int]:
    index = item.divergence["first_token_index"]
    return (
        0 if item.divergence["correctness_flipped"] else 1,
        index if index is not None else 1 << 62,
        item.comparison["batch_size"],
    )


def worst_divergence(data: dict[str, Any]) -> WorstDivergence | None:
    """Correctness flips first, then the earliest first differing token, then batch size."""
    items = [WorstDivergence(c, d) for c in data["comparisons"] for d in c["divergences"]]
    return min(items, key=_severity) if items else None


def invariance_sections(
    runs: Sequence[Run], invariance: dict[tuple[str, str], dict[str, Any]]
) -> list[InvarianceSection]:
    """One section per checkpoint and sampler, in the runs' order."""
    sections = []
    for name, sampler in dict.fromkeys((r.checkpoint, r.sampler) for r in runs):
        sizes = sorted(r.batch_size for r in runs if (r.checkpoint, r.sampler) == (name, sampler))
        data = invariance.get((name, sampler))
        worst = worst_divergence(data) if data else None
        sections.append(InvarianceSection(name, sizes, data, worst, sampler))
    return sections
