"""Key findings and recommendations, decided from numbers (the templates word them).

Each item is a small dataclass whose `kind` selects its sentence in `_findings.md.j2` /
`_recommendations.md.j2`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gsm8k_eval.report.inputs import Run, checkpoint_names, reference_run
from gsm8k_eval.report.tables import InvarianceSection, PairedComparison

MAX_STEPS = "max_steps"  # the rollouts' stop_reason when the step limit ended a generation


@dataclass(frozen=True)
class BestCheckpoint:
    """The most accurate checkpoint(s) at their smallest batch size."""

    kind: ClassVar[str] = "best"
    runs: list[Run]
    accuracy: float
    only_one: bool


@dataclass(frozen=True)
class Comparison:
    kind: ClassVar[str] = "comparison"
    comparison: PairedComparison


@dataclass(frozen=True)
class InvarianceHolds:
    kind: ClassVar[str] = "invariance_holds"
    batch_sizes: list[int]
    checkpoints: list[str]
    spot_checks: list[str] = field(default_factory=list)  # "<label> at batch size B: <scope>"


@dataclass(frozen=True)
class InvarianceViolated:
    """Per checkpoint, its invariance comparisons that diverge."""

    kind: ClassVar[str] = "invariance_violated"
    diverging: list[tuple[str, dict[str, Any]]]


def best_checkpoint(runs: Sequence[Run]) -> BestCheckpoint:
    refs = [reference_run(runs, name) for name in checkpoint_names(runs)]
    top = max(r.accuracy for r in refs)
    return BestCheckpoint([r for r in refs if r.accuracy == top], top, len(refs) == 1)


def _label(key: tuple[str, str]) -> str:
    """`checkpoint (sampler)`."""
    return f"{key[0]} ({key[1]})"


def invariance_finding(
    invariance: dict[tuple[str, str], dict[str, Any]],
) -> InvarianceHolds | InvarianceViolated | None:
    comparisons = [(_label(k), c) for k, d in invariance.items() for c in d["comparisons"]]
    if not comparisons:
        return None
    diverging = [(n, c) for n, c in comparisons if c["divergences"]]
    if diverging:
        return InvarianceViolated(diverging)
    sizes = sorted({bs for d in invariance.values() for bs in d["batch_sizes"]})
    spots = [
        f"{name} at batch size {c['batch_size']}: {c['scope']}"
        for name, c in comparisons
        if c.get("spot_check")
    ]
    return InvarianceHolds(sizes, sorted(map(_label, invariance)), spots)


def findings(
    runs: Sequence[Run],
    comparisons: Sequence[PairedComparison],
    invariance: dict[tuple[str, str], dict[str, Any]],
) -> list[Any]:
    out: list[Any] = [best_checkpoint(runs), *map(Comparison, comparisons)]
    inv = invariance_finding(invariance)
    return [*out, inv] if inv else out


# ---------------------------------------------------------------- recommendations


@dataclass(frozen=True)
class BatchDependent:
    """Generations of a checkpoint changed with the batch size."""

    kind: ClassVar[str] = "batch_dependent"
    section: InvarianceSection


@dataclass(frozen=True)
class PickBatchSizeForSpeed:
    kind: ClassVar[str] = "pick_batch_size"
    run: Run
    examples_per_second: float


@dataclass(frozen=True)
class WithinNoise:
    kind: ClassVar[str] = "within_noise"
    comparison: PairedComparison


@dataclass(frozen=True)
class ExampleLimit:
    """Runs covered fewer examples than the dataset has."""

    kind: ClassVar[str] = "example_limit"
    totals: list[int]
    rows: int


@dataclass(frozen=True)
class StepLimit:
    """Generations stopped by the step limit (stop_reason == 'max_steps')."""

    kind: ClassVar[str] = "step_limit"
    run: Run
    count: int
    max_generation_steps: Any


@dataclass(frozen=True)
class NoIssues:
    kind: ClassVar[str] = "none"


def max_steps_count(run: Run) -> int:
    """Rows whose generation ended at the step limit (not at EOS or a stop sequence)."""
    return int((run.stop_reasons() == MAX_STEPS).sum())


def recommendations(
    runs: Sequence[Run],
    comparisons: Sequence[PairedComparison],
    sections: Sequence[InvarianceSection],
    dataset: dict[str, Any] | None,
) -> list[Any]:
    checked = [s for s in sections if s.data is not None]
    out: list[Any] = [BatchDependent(s) for s in checked if not s.data["invariant"]]
    measured = [r for r in runs if r.number("examples_per_second") is not None]
    if checked and all(s.data["invariant"] for s in checked) and measured:
        fastest = max(measured, key=lambda r: r.number("examples_per_second"))
        out.append(PickBatchSizeForSpeed(fastest, fastest.number("examples_per_second")))
    out += [WithinNoise(c) for c in comparisons if not c.significant]
    rows = dataset.get("rows") if dataset else None
    if isinstance(rows, int):
        small = sorted({r.total for r in runs if r.total < rows})
        if small:
            out.append(ExampleLimit(small, rows))
    for r in runs:
        if count := max_steps_count(r):
            out.append(StepLimit(r, count, r.summary.get("max_generation_steps")))
    return out or [NoIssues()]
