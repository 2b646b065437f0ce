"""Protocols side by side (`gsm8k-eval compare-protocols`): several runs of the same model and
checkpoints, each with its own prompt and grading (one study config per protocol, e.g.
configs/gemma3-1b-it-gsm8k*.yaml), in one table, so "batch size vs numerics vs harness" is read
from data.

Rows: checkpoint, sampler and batch size (every full evaluation any run has; spot checks are
not evaluations of the whole set and are left out), then the PyTorch reference where a run has
one. Columns: one per run. Each cell is the run's accuracy by its primary method, lm-eval's
standard error and the number of examples, all computed from the rollouts (`inputs.load_run`
checks them against the summary). A run's protocol (prompt template, shots, stop sequences, new
token budget, primary method with lm-eval's metric name) is read from its summaries; a run
whose summaries disagree on it is an error.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsm8k_eval.config import BASE_CHECKPOINT
from gsm8k_eval.io import atomic_write_text
from gsm8k_eval.lm_eval_export import metric_key, num_fewshot, stop_sequences
from gsm8k_eval.report.inputs import (
    DEFAULT_TEMPLATE_DIR,
    ReportDataError,
    Run,
    discover_summaries,
    load_run,
    order_runs,
)
from gsm8k_eval.report.render import make_environment
from gsm8k_eval.report.tables import LM_EVAL_METRIC_NAMES

TEMPLATE_NAME = "protocols.md.j2"
REFERENCE_SAMPLER = "PyTorch reference"
# summary fields that make a protocol (one value per run)
PROTOCOL_FIELDS = ("prompt_template", "num_shots", "primary_method", "max_generation_steps")
# summary fields that should be the same across the runs compared (shown when they differ)
SHARED_FIELDS = ("model_source", "model_revision", "dtype", "dataset_sha256", "total")


@dataclass(frozen=True)
class Protocol:
    """One run: its label and the prompt and grading its summaries record."""

    label: str
    run_dir: Path
    template: str
    shots: int
    primary: str
    stops: list[str]
    max_new_tokens: int | None

    @property
    def stop_labels(self) -> list[str]:
        """The stop sequences as JSON strings (newlines visible as \\n)."""
        return [json.dumps(stop, ensure_ascii=False) for stop in self.stops]

    @property
    def metric(self) -> str:
        """lm-eval's results key when the primary method is one of its filters, else ours."""
        return metric_key(self.primary) if self.primary in LM_EVAL_METRIC_NAMES else self.primary


@dataclass(frozen=True)
class Cell:
    """One run's evaluation of one row: accuracy, lm-eval's standard error, examples."""

    correct: int
    total: int
    accuracy: float
    stderr: float | None


@dataclass(frozen=True)
class Row:
    checkpoint: str
    sampler: str
    batch_size: int | None  # None for the reference (its own batch size is in its summary)
    cells: list[Cell | None]  # one per protocol; None: that run has no such evaluation


@dataclass(frozen=True)
class ProtocolTable:
    protocols: list[Protocol]
    rows: list[Row]
    differences: list[tuple[str, list[Any]]]  # SHARED_FIELDS whose values differ between runs


def _cell(run: Run) -> Cell:
    return Cell(run.correct, run.total, run.accuracy, run.stderr)


def _one_value(runs: Sequence[Run], field: str, run_dir: Path) -> Any:
    values = {repr(r.summary.get(field)) for r in runs}
    if len(values) != 1:
        raise ReportDataError(
            f"{run_dir}: its summaries disagree on {field} ({sorted(values)}): one protocol per "
            "run folder"
        )
    return runs[0].summary.get(field)


def protocol_of(run_dir: Path, runs: Sequence[Run], label: str | None = None) -> Protocol:
    """The protocol a run's summaries record (all of them must agree)."""
    for field in PROTOCOL_FIELDS:
        _one_value(runs, field, run_dir)
    first = runs[0].summary
    return Protocol(
        label=label or run_dir.name,
        run_dir=run_dir,
        template=str(first.get("prompt_template")),
        shots=num_fewshot(first),
        primary=str(first.get("primary_method")),
        stops=stop_sequences(first),
        max_new_tokens=first.get("max_generation_steps"),
    )


def load_protocol_runs(run_dir: Path) -> tuple[list[Run], list[Run]]:
    """A run folder's full evaluations (`eval/`) and PyTorch reference runs (`reference/`)."""
    run_dir = Path(run_dir)
    if not (run_dir / "eval").is_dir():
        raise ReportDataError(f"{run_dir}: no eval/ folder (give results/<run> folders)")
    evals = [load_run(p) for p in discover_summaries([run_dir / "eval"])]
    references = [load_run(p) for p in sorted((run_dir / "reference").glob("*/summary.json"))]
    return evals, references


def protocol_table(run_dirs: Sequence[Path], labels: Sequence[str] = ()) -> ProtocolTable:
    """The side-by-side table of `run_dirs` (one protocol each), in the order given."""
    if labels and len(labels) != len(run_dirs):
        raise ReportDataError(f"{len(labels)} labels for {len(run_dirs)} runs")
    loaded = [load_protocol_runs(Path(d)) for d in run_dirs]
    protocols = [
        protocol_of(Path(d), evals, labels[i] if labels else None)
        for i, (d, (evals, _)) in enumerate(zip(run_dirs, loaded, strict=True))
    ]
    if len({p.label for p in protocols}) != len(protocols):
        raise ReportDataError(f"two runs share a label: {[p.label for p in protocols]}")
    keys = _evaluation_keys([r for evals, _ in loaded for r in evals])
    rows = [Row(c, s, b, [_find(evals, c, s, b) for evals, _ in loaded]) for c, s, b in keys]
    for checkpoint in dict.fromkeys(r.checkpoint for _, refs in loaded for r in refs):
        cells = [_find(refs, checkpoint, None, None) for _, refs in loaded]
        rows.append(Row(checkpoint, REFERENCE_SAMPLER, None, cells))
    return ProtocolTable(protocols, rows, _differences([evals for evals, _ in loaded]))


def _evaluation_keys(runs: Sequence[Run]) -> list[tuple[str, str, int]]:
    """(checkpoint, sampler, batch size) of every evaluation, in the report's order."""
    unique = {(r.checkpoint, r.sampler, r.batch_size): r for r in runs}
    ordered = order_runs(list(unique.values()), BASE_CHECKPOINT)
    return [(r.checkpoint, r.sampler, r.batch_size) for r in ordered]


def _find(runs: Sequence[Run], checkpoint: str, sampler: str | None, bs: int | None) -> Cell | None:
    """The cell of the run of `checkpoint` (with `sampler` and `bs`, unless None)."""
    for r in runs:
        if r.checkpoint != checkpoint:
            continue
        if sampler is None or (r.sampler, r.batch_size) == (sampler, bs):
            return _cell(r)
    return None


def _differences(runs_per_protocol: Sequence[Sequence[Run]]) -> list[tuple[str, list[str]]]:
    """SHARED_FIELDS whose values differ between the runs: each run's values, as text."""
    out = []
    for field in SHARED_FIELDS:
        per_run = [sorted({str(r.summary.get(field)) for r in runs}) for runs in runs_per_protocol]
        if len({tuple(v) for v in per_run}) > 1:
            out.append((field, [", ".join(v) for v in per_run]))
    return out


def render_protocols(
    run_dirs: Sequence[Path],
    out_path: Path,
    labels: Sequence[str] = (),
    template_dir: Path | None = None,
) -> Path:
    """Write the side-by-side Markdown of `run_dirs` to `out_path`."""
    table = protocol_table(run_dirs, labels)
    env = make_environment(Path(template_dir or DEFAULT_TEMPLATE_DIR))
    text = env.get_template(TEMPLATE_NAME).render(t=table)
    atomic_write_text(Path(out_path), text)
    return Path(out_path)
