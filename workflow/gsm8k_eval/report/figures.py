"""The report's figures (matplotlib, Agg): accuracy with Wilson intervals, and throughput."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from gsm8k_eval.report.inputs import Run
from gsm8k_eval.stats import DEFAULT_CONFIDENCE

ACCURACY_FIGURE = "accuracy.png"
THROUGHPUT_FIGURE = "throughput.png"


def series_label(run: Run, runs: Sequence[Run]) -> str:
    """The checkpoint, and its sampler when the runs used more than one."""
    many = len({r.sampler for r in runs}) > 1
    return f"{run.checkpoint} ({run.sampler})" if many else run.checkpoint


def plot_accuracy(runs: Sequence[Run], path: Path) -> Path:
    """Accuracy with Wilson intervals, one marker per checkpoint × sampler × batch size."""
    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot()
    names = list(dict.fromkeys(series_label(r, runs) for r in runs))
    sizes = sorted({r.batch_size for r in runs})
    width = 0.8 / max(len(sizes), 1)
    for j, bs in enumerate(sizes):
        sel = [r for r in runs if r.batch_size == bs]
        xs = [names.index(series_label(r, runs)) - 0.4 + width * (j + 0.5) for r in sel]
        acc = [100 * r.accuracy for r in sel]
        err = [[a - 100 * r.interval.low for a, r in zip(acc, sel, strict=True)]]
        err.append([100 * r.interval.high - a for a, r in zip(acc, sel, strict=True)])
        ax.errorbar(xs, acc, yerr=err, fmt="o", capsize=4, label=f"batch size {bs}")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"GSM8K accuracy with {100 * DEFAULT_CONFIDENCE:g}% Wilson intervals")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def plot_throughput(runs: Sequence[Run], path: Path) -> Path:
    """Examples/s and tokens/s against batch size, one line per checkpoint (and sampler)."""
    fig = Figure(figsize=(9, 4), dpi=100)
    axes = fig.subplots(1, 2)
    sizes = sorted({r.batch_size for r in runs})
    for ax, key, label in zip(
        axes, ("examples_per_second", "tokens_per_second"), ("examples/s", "tokens/s"), strict=True
    ):
        for name in dict.fromkeys(series_label(r, runs) for r in runs):
            pts = [
                (r.batch_size, r.number(key))
                for r in runs
                if series_label(r, runs) == name and r.number(key) is not None
            ]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(bs) for bs in sizes])
        ax.minorticks_off()
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
        ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def render_figures(runs: Sequence[Run], figures_dir: Path) -> tuple[Path, Path]:
    """Both figures in `figures_dir`."""
    return (
        plot_accuracy(runs, Path(figures_dir) / ACCURACY_FIGURE),
        plot_throughput(runs, Path(figures_dir) / THROUGHPUT_FIGURE),
    )


def figure_link(figure: Path, out_path: Path) -> str:
    """Path of `figure` relative to the report's directory (for markdown links)."""
    return Path(os.path.relpath(figure.resolve(), out_path.resolve().parent)).as_posix()
