"""The report's checkpoint-sweep section: accuracy against training step, the best step, and
its paired comparison with the base model, plus the compilation cache's savings.

A sweep is a config checkpoint entry with `steps`/`every` (gsm8k_eval.sweeps); its members are
the runs named `<sweep>-step<N>`. Every step is compared with base by the exact McNemar test;
with several steps the best step's p-value is also given Holm-adjusted over all of them (picking
the best of m steps and testing it alone overstates significance).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from gsm8k_eval import sweeps
from gsm8k_eval.report.figures import save_figure
from gsm8k_eval.report.inputs import Run
from gsm8k_eval.report.tables import ALPHA, PairedComparison, paired_comparison
from gsm8k_eval.stats import DEFAULT_CONFIDENCE, Interval

SWEEP_FIGURE = "sweeps.png"


@dataclass(frozen=True)
class SweepPoint:
    step: int
    run: Run
    p_value: float | None  # exact McNemar vs base (None without a base run)


@dataclass(frozen=True)
class Sweep:
    """One sweep at one batch size (the smallest every step and base share)."""

    name: str
    batch_size: int
    points: list[SweepPoint]
    best: SweepPoint
    base: Run | None
    comparison: PairedComparison | None  # best step vs base
    holm_p: float | None  # the best step's p-value, Holm-adjusted over every step
    alpha: float = ALPHA

    @property
    def compared(self) -> int:
        return sum(p.p_value is not None for p in self.points)

    @property
    def significant_after_adjustment(self) -> bool:
        return self.holm_p is not None and self.holm_p < self.alpha


@dataclass(frozen=True)
class CompileCache:
    """Compilation-cache counters added up over every evaluation of the report."""

    hits: int
    misses: int
    seconds_saved: float
    compile_seconds: float


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def sweep_sections(runs: Sequence[Run], config: Mapping[str, Any], base: str) -> list[Sweep]:
    """One section per sweep entry of `config` that has evaluated steps."""
    sections = []
    for name in sweeps.sweep_names(config.get("checkpoints") or []):
        section = _sweep(name, runs, base)
        if section is not None:
            sections.append(section)
    return sections


def _sweep(name: str, runs: Sequence[Run], base: str) -> Sweep | None:
    members = [(sweeps.member_step(name, r.checkpoint), r) for r in runs]
    members = [(step, r) for step, r in members if step is not None]
    if not members:
        return None
    base_sizes = {r.batch_size for r in runs if r.checkpoint == base}
    steps = {step for step, _ in members}
    shared = [
        bs
        for bs in sorted({r.batch_size for _, r in members})
        if {step for step, r in members if r.batch_size == bs} == steps
    ]
    with_base = [bs for bs in shared if bs in base_sizes]
    batch_size = (with_base or shared or [min(r.batch_size for _, r in members)])[0]
    chosen = sorted((step, r) for step, r in members if r.batch_size == batch_size)
    base_run = next((r for r in runs if r.checkpoint == base and r.batch_size == batch_size), None)
    comparisons = [paired_comparison(base_run, r) if base_run else None for _, r in chosen]
    points = [
        SweepPoint(step, r, c.p_value if c else None)
        for (step, r), c in zip(chosen, comparisons, strict=True)
    ]
    best_index = max(range(len(points)), key=lambda i: (points[i].run.accuracy, -points[i].step))
    holm = holm_adjust([p.p_value for p in points]) if base_run else None
    return Sweep(
        name=name,
        batch_size=batch_size,
        points=points,
        best=points[best_index],
        base=base_run,
        comparison=comparisons[best_index],
        holm_p=holm[best_index] if holm else None,
    )


def plot_sweeps(sections: Sequence[Sweep], path: Path) -> Path:
    """Accuracy against step with Wilson bands, one line per sweep; base as a dashed line."""
    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot()
    for section in sections:
        xs = [p.step for p in section.points]
        acc = [100 * p.run.accuracy for p in section.points]
        low = [100 * p.run.interval.low for p in section.points]
        high = [100 * p.run.interval.high for p in section.points]
        (line,) = ax.plot(
            xs, acc, marker="o", label=f"{section.name} (batch size {section.batch_size})"
        )
        ax.fill_between(xs, low, high, alpha=0.2, color=line.get_color())
        ax.plot(
            [section.best.step],
            [100 * section.best.run.accuracy],
            marker="*",
            markersize=14,
            color=line.get_color(),
            linestyle="none",
        )
    for base in {s.base.checkpoint: s.base for s in sections if s.base is not None}.values():
        ax.axhline(100 * base.accuracy, color="black", linestyle="--", label=f"{base.checkpoint}")
        _band(ax, base.interval)
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"GSM8K accuracy by step, {100 * DEFAULT_CONFIDENCE:g}% Wilson bands")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def _band(ax: Any, interval: Interval) -> None:
    ax.axhspan(100 * interval.low, 100 * interval.high, color="black", alpha=0.07)


def compile_cache(runs: Sequence[Run]) -> CompileCache | None:
    """The cache counters of every summary that recorded a cache (None when none did)."""
    records = [(r.summary.get("compilation_cache") or {}, r) for r in runs]
    used = [(c, r) for c, r in records if c.get("dir")]
    if not used:
        return None
    return CompileCache(
        hits=sum(int(c.get("hits", 0)) for c, _ in used),
        misses=sum(int(c.get("misses", 0)) for c, _ in used),
        seconds_saved=sum(float(c.get("compile_seconds_saved", 0.0)) for c, _ in used),
        compile_seconds=sum(r.number("compile_seconds") or 0.0 for _, r in used),
    )
