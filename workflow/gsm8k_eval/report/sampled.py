"""The report's sampled-evaluation section (issue 24): pass@k and maj@k of every sampled run.

A run is sampled when its rollouts carry `sample_index` (temperature > 0, docs/sampled.md).
Its numbers are computed here from the rollouts (`sampled_summary.sampled_summary`: the
primary method's verdicts and votes, bootstrap intervals over questions), not read from the
summary; the figure draws pass@k and maj@k against k for every sampled run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from gsm8k_eval.passk import Estimate
from gsm8k_eval.report.figures import save_figure, series_label
from gsm8k_eval.report.inputs import Run
from gsm8k_eval.sampled_summary import is_sampled, reported_ks, sampled_summary

SAMPLED_FIGURE = "sampled.png"
SETTINGS = ("temperature", "top_k", "top_p", "sampling_seed")


@dataclass(frozen=True)
class SampledRun:
    """pass@k and maj@k of one sampled run at the reported k (1, 2, 4, ... and n)."""

    run: Run
    samples: int
    questions: int
    ks: list[int]
    pass_at: list[Estimate]
    maj_at: list[Estimate]
    settings: dict[str, object]

    @property
    def label(self) -> str:
        return f"{self.run.checkpoint} ({self.run.sampler}, bs {self.run.batch_size})"


def sampled_runs(runs: Sequence[Run]) -> list[SampledRun]:
    """The sampled runs among `runs` (empty when none is: no section)."""
    out = []
    for run in runs:
        rows = run.rollouts.to_dict("records")
        if not rows or not is_sampled(rows):
            continue
        method = str(run.summary.get("primary_method") or "strict")
        summary = sampled_summary(rows, method)
        ks = reported_ks(summary.samples)
        settings = {key: rows[0].get(key, run.summary.get(key)) for key in SETTINGS}
        out.append(
            SampledRun(
                run=run,
                samples=summary.samples,
                questions=summary.questions,
                ks=ks,
                pass_at=[summary.pass_at_k[k - 1] for k in ks],
                maj_at=[summary.maj_at_k[k - 1] for k in ks],
                settings=settings,
            )
        )
    return out


def plot_sampled(sections: Sequence[SampledRun], path: Path) -> Path:
    """pass@k (left) and maj@k (right) against k with their intervals, one line per run."""
    fig = Figure(figsize=(9, 4), dpi=100)
    axes = fig.subplots(1, 2, sharey=True)
    runs = [s.run for s in sections]
    for ax, name in zip(axes, ("pass", "maj"), strict=True):
        for s in sections:
            values = s.pass_at if name == "pass" else s.maj_at
            mid = [100 * e.value for e in values]
            low = [100 * e.interval.low for e in values]
            high = [100 * e.interval.high for e in values]
            label = f"{series_label(s.run, runs)}, bs {s.run.batch_size}"
            (line,) = ax.plot(s.ks, mid, marker="o", label=label)
            ax.fill_between(s.ks, low, high, alpha=0.2, color=line.get_color())
        ks = sorted({k for s in sections for k in s.ks})
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("k (samples)")
        ax.set_title(f"{name}@k")
    axes[0].set_ylabel("accuracy (%)")
    axes[0].set_ylim(0, 100)
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path)
