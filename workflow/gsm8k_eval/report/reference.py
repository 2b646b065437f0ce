"""The "JAX vs PyTorch" section: the fixed sampler's rollouts against the transformers
reference (`gsm8k-eval reference`) of the same checkpoint, example by example.

The fixed sampler is batch invariant, so any of its batch sizes stands for all (the smallest
is used). Per checkpoint: identical token sequences, where they first diverge, the accuracy of
each framework and the exact McNemar test of their paired correctness.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gsm8k_eval.invariance import Divergence, RolloutRecord, compare_runs
from gsm8k_eval.report.inputs import Run, load_run
from gsm8k_eval.stats import mcnemar_exact

# The JAX samplers whose rollouts the reference is compared with (batch invariant ones).
COMPARED_SAMPLERS = ("fixed",)
# Ranges of the first differing token index [low, high) shown as the divergence distribution.
DIVERGENCE_BINS: tuple[tuple[int, int | None], ...] = (
    (0, 1),
    (1, 8),
    (8, 32),
    (32, 128),
    (128, 512),
    (512, None),
)
ALPHA = 0.05


@dataclass(frozen=True)
class DivergenceBin:
    """How many diverging examples first differ at a token index in [low, high)."""

    low: int
    high: int | None
    count: int


@dataclass(frozen=True)
class FrameworkComparison:
    """One checkpoint: the PyTorch reference run vs the fixed sampler's run (None: no such
    run to compare with; then only the reference's accuracy is shown)."""

    checkpoint: str
    torch_run: Run
    jax_run: Run | None
    num_examples: int = 0
    identical_tokens: int = 0
    identical_text: int = 0
    first_divergences: tuple[int, ...] = ()  # first differing token index, diverging examples
    bins: tuple[DivergenceBin, ...] = ()
    jax_correct: int = 0
    torch_correct: int = 0
    jax_only_correct: int = 0  # McNemar b: JAX right, PyTorch wrong
    torch_only_correct: int = 0  # McNemar c: JAX wrong, PyTorch right
    p_value: float = 1.0
    worst: Divergence | None = None
    alpha: float = ALPHA

    @property
    def diverging(self) -> int:
        return self.num_examples - self.identical_tokens

    @property
    def identical_token_rate(self) -> float | None:
        return self.identical_tokens / self.num_examples if self.num_examples else None

    @property
    def jax_accuracy(self) -> float | None:
        return self.jax_correct / self.num_examples if self.num_examples else None

    @property
    def torch_accuracy(self) -> float | None:
        return self.torch_correct / self.num_examples if self.num_examples else None

    @property
    def delta(self) -> float | None:
        """PyTorch accuracy minus JAX accuracy on the paired examples."""
        if not self.num_examples:
            return None
        return (self.torch_correct - self.jax_correct) / self.num_examples

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    @property
    def median_first_divergence(self) -> float | None:
        return statistics.median(self.first_divergences) if self.first_divergences else None

    @property
    def torch_dtype(self) -> str | None:
        return self.torch_run.summary.get("dtype")

    @property
    def jax_dtype(self) -> str | None:
        return self.jax_run.summary.get("dtype") if self.jax_run else None


def _records(run: Run) -> dict[int, RolloutRecord]:
    rows = run.rollouts.to_dict("records")
    return {int(row["id"]): RolloutRecord.from_json(row) for row in rows}


def divergence_bins(indices: Sequence[int]) -> tuple[DivergenceBin, ...]:
    """Counts of `indices` per `DIVERGENCE_BINS` range."""
    return tuple(
        DivergenceBin(low, high, sum(low <= i and (high is None or i < high) for i in indices))
        for low, high in DIVERGENCE_BINS
    )


def compare_frameworks(torch_run: Run, jax_run: Run | None) -> FrameworkComparison:
    """The reference against the JAX run on the examples both have (matched by id)."""
    if jax_run is None:
        return FrameworkComparison(torch_run.checkpoint, torch_run, None)
    jax, torch = _records(jax_run), _records(torch_run)
    ids = sorted(set(jax) & set(torch))
    jax, torch = {i: jax[i] for i in ids}, {i: torch[i] for i in ids}
    compared = compare_runs(
        jax, torch, reference_batch_size=jax_run.batch_size, batch_size=torch_run.batch_size
    )
    token_divergences = [d for d in compared.divergences if d.first_token_index is not None]
    indices = tuple(sorted(d.first_token_index for d in token_divergences))
    test = mcnemar_exact([jax[i].correct for i in ids], [torch[i].correct for i in ids])
    return FrameworkComparison(
        checkpoint=torch_run.checkpoint,
        torch_run=torch_run,
        jax_run=jax_run,
        num_examples=len(ids),
        identical_tokens=compared.identical_tokens,
        identical_text=compared.identical_text,
        first_divergences=indices,
        bins=divergence_bins(indices),
        jax_correct=compared.reference_correct,
        torch_correct=compared.correct,
        jax_only_correct=test.b,
        torch_only_correct=test.c,
        p_value=test.p_value,
        worst=compared.divergences[0] if compared.divergences else None,
    )


def compared_jax_run(runs: Sequence[Run], checkpoint: str) -> Run | None:
    """The smallest batch size of the checkpoint's fixed-sampler runs (None if it has none)."""
    candidates = [
        r
        for r in runs
        if r.checkpoint == checkpoint and r.summary.get("sampler") in COMPARED_SAMPLERS
    ]
    return min(candidates, key=lambda r: r.batch_size) if candidates else None


def framework_comparisons(
    runs: Sequence[Run], reference_summaries: Sequence[Path]
) -> list[FrameworkComparison]:
    """One comparison per reference summary, in the order of the JAX runs' checkpoints."""
    references = [load_run(Path(p)) for p in reference_summaries]
    order = {name: i for i, name in enumerate(dict.fromkeys(r.checkpoint for r in runs))}
    references.sort(key=lambda r: (order.get(r.checkpoint, len(order)), r.checkpoint))
    return [compare_frameworks(r, compared_jax_run(runs, r.checkpoint)) for r in references]
