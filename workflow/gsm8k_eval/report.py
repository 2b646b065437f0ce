"""Markdown report (Jinja2) and figures (matplotlib, Agg) for a GSM8K evaluation.

Every number is computed here from the rollouts, summaries, invariance files and manifests; the
templates in `report/templates/` only lay out pre-formatted strings (no numbers, no arithmetic).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import yaml
from matplotlib.figure import Figure

from gsm8k_eval import resources
from gsm8k_eval.io import atomic_write_text
from gsm8k_eval.stats import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    mcnemar_exact,
    paired_bootstrap_delta,
    wilson_interval,
)

DEFAULT_TEMPLATE_DIR = resources.report_template_dir()
TEMPLATE_NAME = "gsm8k_eval_report.md.j2"
ALPHA = 0.05
QUESTION_WIDTH = 80
MAX_LISTED_EXAMPLES = 10
BASE_CHECKPOINT = "base"
ACCURACY_FIGURE = "accuracy.png"
THROUGHPUT_FIGURE = "throughput.png"
NA = "n/a"
EXTERNAL_REFERENCE = (
    "The seed report quoted roughly 60% GSM8K accuracy for the base gemma-3-1b-it model as "
    "measured with lm-eval-harness. That figure is external reference text: it was not "
    "produced by this pipeline, and it used a different harness, prompt format, answer "
    "extraction and (possibly) model size, so it is not directly comparable with the numbers "
    "above."
)
CONFIG_KEYS = (
    ("model_source", "model source"),
    ("prompt_template", "prompt template"),
    ("num_shots", "few-shot examples"),
    ("max_generation_steps", "max generation steps"),
    ("eos_tokens", "EOS token ids"),
    ("temperature", "temperature"),
    ("primary_method", "primary extraction method"),
    ("dtype", "dtype"),
    ("sampler", "sampler"),
    ("decode_rows", "decode rows per call"),
)


class ReportDataError(ValueError):
    """Inputs are missing or inconsistent (e.g. a summary disagrees with its rollouts)."""


@dataclass
class ReportInputs:
    """Everything `render_report` reads.

    `eval_dirs`: summary.json files and/or directories searched recursively for them (e.g.
    `results/eval`); each needs a sibling rollouts.jsonl. `checkpoint_manifests`: the
    `results/checkpoints/{checkpoint}/manifest.json` files (name = parent directory).
    """

    eval_dirs: list[Path]
    invariance_paths: list[Path]
    checkpoint_manifests: list[Path]
    dataset_manifest: Path | None
    config: dict[str, Any]
    command: str
    out_path: Path = Path("report/gsm8k_eval_report.md")
    figures_dir: Path = Path("report/figures")
    template_dir: Path = DEFAULT_TEMPLATE_DIR
    base_checkpoint: str = BASE_CHECKPOINT


@dataclass
class Run:
    """One evaluation: a checkpoint at a batch size."""

    checkpoint: str
    batch_size: int
    summary: dict[str, Any]
    rollouts: pd.DataFrame
    summary_path: Path
    rollouts_path: Path

    @property
    def correct(self) -> int:
        return int(self.rollouts["correct"].astype(bool).sum())

    @property
    def total(self) -> int:
        return len(self.rollouts)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


@dataclass
class Table:
    """A markdown table of pre-formatted cells."""

    headers: list[str]
    rows: list[list[str]]


@dataclass
class PairedComparison:
    """Checkpoint vs base on the same examples at one batch size (formatted)."""

    checkpoint: str
    base: str
    batch_size: str
    paired: str
    base_accuracy: str
    accuracy: str
    delta: str
    fixed_count: str
    broken_count: str
    p_value: str
    bootstrap_ci: str
    verdict: str
    examples: Table
    more_fixed: str
    more_broken: str


@dataclass
class WorstDivergence:
    """The most severe divergence of one checkpoint (formatted)."""

    checkpoint: str
    id: str
    question: str
    reference_batch_size: str
    batch_size: str
    first_token_index: str
    first_char_index: str
    token_window_start: str
    reference_tokens: str
    other_tokens: str
    logits: Table
    common_prefix_tail: str
    reference_continuation: str
    other_continuation: str
    correctness: str


@dataclass
class InvarianceSection:
    """Batch-invariance results of one checkpoint."""

    checkpoint: str
    message: str
    table: Table | None
    worst: WorstDivergence | None


@dataclass
class Finding:
    """A key-findings bullet: a bold lead and a sentence."""

    lead: str
    text: str


@dataclass
class ReportContext:
    """All values handed to the template (strings and tables only)."""

    title_model: str
    confidence_label: str
    interval_label: str
    summary: Table
    findings: list[Finding]
    comparisons: list[PairedComparison]
    invariance: list[InvarianceSection]
    methods: Table
    throughput: Table
    accuracy_figure: str
    throughput_figure: str
    checkpoints: Table
    configuration: Table
    config_yaml: str
    provenance: Table
    versions: Table
    external_reference: str
    recommendations: list[str]
    command: str
    output_files: Table
    stats_note: str


# ---------------------------------------------------------------- formatting


def fmt_pct(x: float | None) -> str:
    """0.5572 -> '55.7%'."""
    return NA if x is None else f"{100 * x:.1f}%"


def fmt_pp(x: float | None) -> str:
    """Signed percentage points: 0.0123 -> '+1.2 pp'."""
    return NA if x is None else f"{100 * x:+.1f} pp"


def fmt_ci(low: float, high: float) -> str:
    """Interval of proportions: '[53.0%, 58.4%]'."""
    return f"[{fmt_pct(low)}, {fmt_pct(high)}]"


def fmt_pp_ci(low: float, high: float) -> str:
    """Interval of differences: '[-1.2 pp, +3.4 pp]'."""
    return f"[{fmt_pp(low)}, {fmt_pp(high)}]"


def fmt_p(p: float) -> str:
    """p-value with three decimals, '< 0.001' below that."""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def fmt_num(x: Any, spec: str) -> str:
    """Format a number with `spec`, or 'n/a' for missing/non-numeric values."""
    if x is None or isinstance(x, bool) or not isinstance(x, int | float):
        return NA
    return format(x, spec)


def fmt_logit(x: float | None) -> str:
    return fmt_num(x, ".4f")


def fmt_logit_delta(x: float | None) -> str:
    return fmt_num(x, "+.3g")


def shorten(text: str, width: int = QUESTION_WIDTH) -> str:
    """Collapse whitespace; cut to `width` characters ending in '…' when longer."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"


def md_cell(text: Any) -> str:
    """Make a value safe for a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def fmt_value(value: Any) -> str:
    """Configuration values: lists joined by ', ', None as 'n/a'."""
    if value is None:
        return NA
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def display_path(path: Path) -> str:
    """Path relative to the working directory when below it, POSIX style."""
    path = Path(path)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


# ---------------------------------------------------------------- loading


def discover_summaries(eval_dirs: Iterable[Path]) -> list[Path]:
    """summary.json files: given directly, or found recursively below given directories."""
    found: list[Path] = []
    for entry in map(Path, eval_dirs):
        if entry.is_dir():
            found.extend(sorted(entry.rglob("summary.json")))
        elif entry.is_file():
            found.append(entry)
        else:
            raise ReportDataError(f"evaluation input not found: {entry}")
    if not found:
        raise ReportDataError(f"no summary.json found in {list(map(str, eval_dirs))}")
    return sorted(set(found))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def load_rollouts(path: Path) -> pd.DataFrame:
    """rollouts.jsonl as a DataFrame (no dtype or date guessing), sorted by id."""
    if not path.is_file():
        raise ReportDataError(f"rollouts not found next to summary: {path}")
    frame = pd.read_json(path, lines=True, dtype=False)
    if frame.empty:
        return pd.DataFrame(columns=["id", "question", "correct", "correct_by_method"])
    return frame.sort_values("id").reset_index(drop=True)


def load_run(summary_path: Path) -> Run:
    """Load one summary.json and its rollouts; check they agree."""
    summary = read_json(summary_path)
    rollouts_path = summary_path.parent / "rollouts.jsonl"
    run = Run(
        checkpoint=str(summary["checkpoint"]),
        batch_size=int(summary["batch_size"]),
        summary=summary,
        rollouts=load_rollouts(rollouts_path),
        summary_path=summary_path,
        rollouts_path=rollouts_path,
    )
    if (run.correct, run.total) != (summary.get("correct"), summary.get("total")):
        raise ReportDataError(
            f"{summary_path}: summary says {summary.get('correct')}/{summary.get('total')} "
            f"but {rollouts_path} has {run.correct}/{run.total} correct"
        )
    return run


def order_runs(runs: list[Run], base: str) -> list[Run]:
    """Base checkpoint first, then by name; batch sizes ascending; duplicates are an error."""
    keys = [(r.checkpoint, r.batch_size) for r in runs]
    if len(set(keys)) != len(keys):
        raise ReportDataError(f"duplicate (checkpoint, batch size) runs: {sorted(keys)}")
    return sorted(runs, key=lambda r: (r.checkpoint != base, r.checkpoint, r.batch_size))


def checkpoint_names(runs: Sequence[Run]) -> list[str]:
    return list(dict.fromkeys(r.checkpoint for r in runs))


def reference_run(runs: Sequence[Run], checkpoint: str) -> Run:
    """The smallest batch size of a checkpoint."""
    return min((r for r in runs if r.checkpoint == checkpoint), key=lambda r: r.batch_size)


# ---------------------------------------------------------------- sections


def summary_table(runs: Sequence[Run], confidence_label: str) -> Table:
    rows = []
    for r in runs:
        ci = wilson_interval(r.correct, r.total)
        rows.append(
            [
                md_cell(r.summary.get("model_source", NA)),
                md_cell(r.checkpoint),
                str(r.batch_size),
                str(r.correct),
                str(r.total),
                fmt_pct(r.accuracy),
                fmt_ci(ci.low, ci.high),
            ]
        )
    headers = ["model", "checkpoint", "batch size", "correct", "total", "accuracy"]
    return Table([*headers, confidence_label], rows)


def method_names(runs: Sequence[Run]) -> list[str]:
    names: set[str] = set()
    for r in runs:
        for value in r.rollouts.get("correct_by_method", pd.Series(dtype=object)):
            names.update(value or {})
    return sorted(names)


def method_accuracy(run: Run, method: str) -> float | None:
    values = [v.get(method) for v in run.rollouts.get("correct_by_method", []) if v]
    if not run.total or len(values) != run.total or any(v is None for v in values):
        return None
    return sum(bool(v) for v in values) / run.total


def methods_table(runs: Sequence[Run]) -> Table:
    names = method_names(runs)
    primaries = {r.summary.get("primary_method") for r in runs} - {None}
    headers = [f"{m} (primary)" if m in primaries else m for m in names]
    rows = [
        [md_cell(r.checkpoint), str(r.batch_size)] + [fmt_pct(method_accuracy(r, m)) for m in names]
        for r in runs
    ]
    return Table(["checkpoint", "batch size", *headers], rows)


def throughput_table(runs: Sequence[Run]) -> Table:
    rows = [
        [
            md_cell(r.checkpoint),
            str(r.batch_size),
            fmt_num(r.summary.get("examples_per_second"), ".2f"),
            fmt_num(r.summary.get("tokens_per_second"), ".1f"),
            fmt_num(r.summary.get("generated_tokens"), "d"),
            fmt_num(r.summary.get("wall_seconds"), ".1f"),
            fmt_num(r.summary.get("peak_memory_mb"), ".0f"),
        ]
        for r in runs
    ]
    headers = ["checkpoint", "batch size", "examples/s", "tokens/s", "generated tokens"]
    return Table([*headers, "wall time (s)", "peak memory (MB)"], rows)


def _paired_frame(base: Run, other: Run) -> pd.DataFrame:
    left = base.rollouts[["id", "question", "correct"]]
    right = other.rollouts[["id", "correct"]]
    merged = left.merge(right, on="id", suffixes=("_base", "_other"), validate="one_to_one")
    return merged.astype({"correct_base": bool, "correct_other": bool})


def _example_rows(frame: pd.DataFrame, label: str) -> tuple[list[list[str]], str]:
    shown = frame.head(MAX_LISTED_EXAMPLES)
    rows = [
        [label, str(int(i)), md_cell(shorten(q))]
        for i, q in zip(shown.id, shown.question, strict=True)
    ]
    more = len(frame) - len(shown)
    return rows, (str(more) if more > 0 else "")


def _verdict(p_value: float) -> str:
    alpha = f"{ALPHA:g}"
    if p_value < ALPHA:
        return (
            f"At α = {alpha} the difference is statistically significant by the exact McNemar "
            "test (two-sided)."
        )
    return (
        f"At α = {alpha} the difference is not statistically significant by the exact McNemar "
        "test (two-sided); it is consistent with no real change."
    )


def paired_comparison(base: Run, other: Run) -> PairedComparison:
    """Checkpoint vs base on the examples both evaluated (matched by id)."""
    frame = _paired_frame(base, other)
    test = mcnemar_exact(frame.correct_base, frame.correct_other)
    fixed = frame[~frame.correct_base & frame.correct_other]
    broken = frame[frame.correct_base & ~frame.correct_other]
    n = len(frame)
    acc_base = frame.correct_base.mean() if n else 0.0
    acc_other = frame.correct_other.mean() if n else 0.0
    boot = paired_bootstrap_delta(frame.correct_base, frame.correct_other) if n else None
    fixed_rows, more_fixed = _example_rows(fixed, "fixed")
    broken_rows, more_broken = _example_rows(broken, "broken")
    return PairedComparison(
        checkpoint=other.checkpoint,
        base=base.checkpoint,
        batch_size=str(other.batch_size),
        paired=str(n),
        base_accuracy=fmt_pct(acc_base),
        accuracy=fmt_pct(acc_other),
        delta=fmt_pp(acc_other - acc_base),
        fixed_count=str(len(fixed)),
        broken_count=str(len(broken)),
        p_value=fmt_p(test.p_value),
        bootstrap_ci=fmt_pp_ci(boot.interval.low, boot.interval.high) if boot else NA,
        verdict=_verdict(test.p_value),
        examples=Table(["change", "id", "question"], fixed_rows + broken_rows),
        more_fixed=more_fixed,
        more_broken=more_broken,
    )


def paired_comparisons(runs: Sequence[Run], base: str) -> list[PairedComparison]:
    """Each non-base checkpoint vs base at the smallest batch size both have."""
    if base not in checkpoint_names(runs):
        return []
    result = []
    for name in checkpoint_names(runs):
        if name == base:
            continue
        common = {r.batch_size for r in runs if r.checkpoint == name} & {
            r.batch_size for r in runs if r.checkpoint == base
        }
        if not common:
            continue
        bs = min(common)
        pick = {(r.checkpoint, r.batch_size): r for r in runs}
        result.append(paired_comparison(pick[(base, bs)], pick[(name, bs)]))
    return result


def best_checkpoint_finding(runs: Sequence[Run]) -> Finding:
    refs = [reference_run(runs, name) for name in checkpoint_names(runs)]
    top = max(r.accuracy for r in refs)
    best = [r for r in refs if r.accuracy == top]
    names = ", ".join(f"{r.checkpoint} (batch size {r.batch_size})" for r in best)
    if len(refs) == 1:
        return Finding("Only one checkpoint evaluated", f"{names}: accuracy {fmt_pct(top)}.")
    lead = "Best checkpoint" if len(best) == 1 else "Best checkpoints (tied)"
    return Finding(lead, f"{names}: accuracy {fmt_pct(top)} at its smallest batch size.")


def load_invariance(paths: Iterable[Path]) -> dict[str, dict[str, Any]]:
    data = [read_json(p) for p in paths]
    return {str(d["checkpoint"]): d for d in data}


def invariance_table(data: dict[str, Any]) -> Table:
    rows = [
        [
            f"{c['reference_batch_size']} vs {c['batch_size']}",
            str(c["num_examples"]),
            fmt_pct(c["identical_text_rate"]),
            fmt_pct(c["identical_token_rate"]),
            fmt_pct(c["reference_accuracy"]),
            fmt_pct(c["accuracy"]),
            fmt_pp(c["accuracy_delta"]),
            str(c["correctness_flips"]),
        ]
        for c in data["comparisons"]
    ]
    headers = ["batch sizes", "examples", "identical text", "identical tokens"]
    return Table(
        [*headers, "accuracy (ref)", "accuracy", "accuracy difference", "correctness flips"], rows
    )


def _severity(item: tuple[dict[str, Any], dict[str, Any]]) -> tuple[int, int, int]:
    comparison, div = item
    index = div["first_token_index"]
    return (
        0 if div["correctness_flipped"] else 1,
        index if index is not None else 1 << 62,
        comparison["batch_size"],
    )


def worst_divergence(data: dict[str, Any]) -> WorstDivergence | None:
    items = [(c, d) for c in data["comparisons"] for d in c["divergences"]]
    if not items:
        return None
    comp, div = min(items, key=_severity)
    ref_bs, bs = str(comp["reference_batch_size"]), str(comp["batch_size"])
    logits = Table(
        ["batch size", "token id at first difference", "chosen-token logit"],
        [
            [ref_bs, fmt_num(div["reference_token"], "d"), fmt_logit(div["reference_logit"])],
            [bs, fmt_num(div["other_token"], "d"), fmt_logit(div["other_logit"])],
            ["difference", "", fmt_logit_delta(div["logit_delta"])],
        ],
    )
    return WorstDivergence(
        checkpoint=str(data["checkpoint"]),
        id=str(div["id"]),
        question=shorten(div["question"]),
        reference_batch_size=ref_bs,
        batch_size=bs,
        first_token_index=fmt_num(div["first_token_index"], "d"),
        first_char_index=str(div["first_char_index"]),
        token_window_start=str(div["token_window_start"]),
        reference_tokens=", ".join(map(str, div["reference_tokens"])),
        other_tokens=", ".join(map(str, div["other_tokens"])),
        logits=logits,
        common_prefix_tail=div["common_prefix_tail"],
        reference_continuation=div["reference_continuation"],
        other_continuation=div["other_continuation"],
        correctness=_correctness_text(div, ref_bs, bs),
    )


def _correctness_text(div: dict[str, Any], ref_bs: str, bs: str) -> str:
    def word(ok: bool) -> str:
        return "correct" if ok else "wrong"

    change = "flips" if div["correctness_flipped"] else "does not change"
    return (
        f"Correctness {change}: {word(div['reference_correct'])} at batch size {ref_bs}, "
        f"{word(div['other_correct'])} at batch size {bs}."
    )


def invariance_sections(
    runs: Sequence[Run], invariance: dict[str, dict[str, Any]]
) -> list[InvarianceSection]:
    sections = []
    for name in checkpoint_names(runs):
        sizes = sorted(r.batch_size for r in runs if r.checkpoint == name)
        data = invariance.get(name)
        if data is None:
            text = (
                "only one batch size evaluated: nothing to compare"
                if len(sizes) == 1
                else "no invariance file was given for this checkpoint"
            )
            sections.append(InvarianceSection(name, text, None, None))
            continue
        table = invariance_table(data) if data["comparisons"] else None
        sections.append(InvarianceSection(name, data["message"], table, worst_divergence(data)))
    return sections


def invariance_finding(invariance: dict[str, dict[str, Any]]) -> Finding | None:
    comparisons = [(n, c) for n, d in invariance.items() for c in d["comparisons"]]
    if not comparisons:
        return None
    diverging = [(n, c) for n, c in comparisons if c["divergences"]]
    if not diverging:
        sizes = sorted({bs for d in invariance.values() for bs in d["batch_sizes"]})
        names = ", ".join(sorted(invariance))
        return Finding(
            "Batch invariance holds",
            f"identical tokens for every example at batch sizes {', '.join(map(str, sizes))} "
            f"({names}).",
        )
    parts = [
        f"{n}: {len(c['divergences'])} of {c['num_examples']} examples differ between batch "
        f"size {c['reference_batch_size']} and {c['batch_size']} (accuracy difference "
        f"{fmt_pp(c['accuracy_delta'])}, correctness flips: {c['correctness_flips']})"
        for n, c in diverging
    ]
    return Finding("Batch invariance violated", "; ".join(parts) + ".")


def comparison_finding(c: PairedComparison) -> Finding:
    return Finding(
        f"{c.checkpoint} vs {c.base}",
        f"{c.base_accuracy} → {c.accuracy} ({c.delta}) on {c.paired} paired examples at batch "
        f"size {c.batch_size}; {c.fixed_count} fixed, {c.broken_count} broken; McNemar exact "
        f"p = {c.p_value}. {c.verdict}",
    )


def max_steps_counts(runs: Sequence[Run]) -> list[tuple[Run, int]]:
    out = []
    for r in runs:
        reasons = r.rollouts.get("stop_reason", pd.Series(dtype=object))
        out.append((r, int((reasons == "max_steps").sum())))
    return out


# ---------------------------------------------------------------- manifests, provenance


def load_checkpoint_manifests(paths: Iterable[Path]) -> dict[str, tuple[Path, dict[str, Any]]]:
    return {Path(p).parent.name: (Path(p), read_json(p)) for p in paths}


def checkpoints_table(
    runs: Sequence[Run], manifests: dict[str, tuple[Path, dict[str, Any]]]
) -> Table:
    rows = []
    for name in checkpoint_names(runs):
        path, manifest = manifests.get(name, (None, None))
        if manifest is None:
            manifest = reference_run(runs, name).summary.get("checkpoint_manifest") or {}
        objects = manifest.get("objects")
        rows.append(
            [
                md_cell(name),
                md_cell(manifest.get("source", NA)),
                fmt_value(manifest.get("step")),
                str(len(objects)) if isinstance(objects, list | dict) else NA,
                md_cell(display_path(path)) if path else NA,
            ]
        )
    return Table(["checkpoint", "source", "step", "objects", "manifest"], rows)


def distinct_values(runs: Sequence[Run], key: str) -> str:
    """One value if all runs agree; otherwise each value with the runs that used it."""
    groups: dict[str, list[str]] = {}
    for r in runs:
        groups.setdefault(fmt_value(r.summary.get(key)), []).append(
            f"{r.checkpoint}/bs{r.batch_size}"
        )
    if len(groups) == 1:
        return md_cell(next(iter(groups)))
    return md_cell("; ".join(f"{v} ({', '.join(names)})" for v, names in groups.items()))


def configuration_table(runs: Sequence[Run]) -> Table:
    rows = [[label, distinct_values(runs, key)] for key, label in CONFIG_KEYS]
    rows.append(["extraction methods", md_cell(", ".join(method_names(runs)) or NA)])
    return Table(["setting", "value"], rows)


def provenance_table(runs: Sequence[Run], dataset: dict[str, Any] | None) -> Table:
    rows = [
        ["device", distinct_values(runs, "device")],
        ["config hash", distinct_values(runs, "config_hash")],
        ["dataset sha256 (summaries)", distinct_values(runs, "dataset_sha256")],
    ]
    if dataset is not None:
        for key in ("source", "revision", "rows", "sha256"):
            rows.append([f"dataset {key} (manifest)", md_cell(fmt_value(dataset.get(key)))])
        shas = {r.summary.get("dataset_sha256") for r in runs}
        agree = shas == {dataset.get("sha256")}
        rows.append(["dataset checksum matches manifest", "yes" if agree else "NO"])
    return Table(["item", "value"], rows)


def versions_table(runs: Sequence[Run]) -> Table:
    packages = sorted({k for r in runs for k in (r.summary.get("versions") or {})})
    rows = []
    for pkg in packages:
        values = list(dict.fromkeys(str((r.summary.get("versions") or {}).get(pkg)) for r in runs))
        rows.append([md_cell(pkg), md_cell(", ".join(values))])
    return Table(["package", "version"], rows)


def recommendations(
    runs: Sequence[Run],
    comparisons: Sequence[PairedComparison],
    invariance: dict[str, dict[str, Any]],
    dataset: dict[str, Any] | None,
) -> list[str]:
    out = []
    for name, data in invariance.items():
        if not data["invariant"]:
            out.append(
                f"Generations of {name} depend on the batch size ({data['message']}); report "
                "results at one fixed batch size, or use the batch-invariant sampler."
            )
    measured = [r for r in runs if isinstance(r.summary.get("examples_per_second"), int | float)]
    if invariance and all(d["invariant"] for d in invariance.values()) and measured:
        fastest = max(measured, key=lambda r: r.summary["examples_per_second"])
        speed = fmt_num(fastest.summary["examples_per_second"], ".2f")
        out.append(
            f"Generations do not depend on the batch size, so pick it for speed: batch size "
            f"{fastest.batch_size} was fastest ({speed} examples/s, {fastest.checkpoint})."
        )
    for c in comparisons:
        if c.verdict.startswith(f"At α = {ALPHA:g} the difference is not"):
            out.append(
                f"The difference between {c.checkpoint} and {c.base} is within noise on "
                f"{c.paired} examples; evaluate more examples before drawing conclusions."
            )
    rows = dataset.get("rows") if dataset else None
    if isinstance(rows, int):
        small = sorted({r.total for r in runs if r.total < rows})
        if small:
            out.append(
                f"Runs covered {', '.join(map(str, small))} of the {rows} test examples; run "
                "without an example limit for final numbers."
            )
    for r, n in max_steps_counts(runs):
        if n:
            steps = fmt_value(r.summary.get("max_generation_steps"))
            out.append(
                f"{n} of {r.total} generations of {r.checkpoint} at batch size {r.batch_size} "
                f"stopped at the step limit ({steps}); consider raising max_generation_steps."
            )
    return out or ["No issues detected in these results."]


def output_files(inputs: ReportInputs, runs: Sequence[Run], figures: Sequence[Path]) -> Table:
    rows = [["report", md_cell(display_path(inputs.out_path))]]
    rows += [["figure", md_cell(display_path(p))] for p in figures]
    for r in runs:
        rows.append(["summary", md_cell(display_path(r.summary_path))])
        rows.append(["rollouts", md_cell(display_path(r.rollouts_path))])
    rows += [["invariance", md_cell(display_path(p))] for p in inputs.invariance_paths]
    rows += [["checkpoint manifest", md_cell(display_path(p))] for p in inputs.checkpoint_manifests]
    if inputs.dataset_manifest is not None:
        rows.append(["dataset manifest", md_cell(display_path(inputs.dataset_manifest))])
    return Table(["kind", "path"], rows)


# ---------------------------------------------------------------- figures


def plot_accuracy(runs: Sequence[Run], path: Path) -> Path:
    """Accuracy with Wilson intervals, one marker per checkpoint × batch size."""
    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot()
    names = checkpoint_names(runs)
    sizes = sorted({r.batch_size for r in runs})
    width = 0.8 / max(len(sizes), 1)
    for j, bs in enumerate(sizes):
        sel = [r for r in runs if r.batch_size == bs]
        xs = [names.index(r.checkpoint) - 0.4 + width * (j + 0.5) for r in sel]
        acc = [100 * r.accuracy for r in sel]
        cis = [wilson_interval(r.correct, r.total) for r in sel]
        err = [[a - 100 * c.low for a, c in zip(acc, cis, strict=True)]]
        err.append([100 * c.high - a for a, c in zip(acc, cis, strict=True)])
        ax.errorbar(xs, acc, yerr=err, fmt="o", capsize=4, label=f"batch size {bs}")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"GSM8K accuracy with {100 * DEFAULT_CONFIDENCE:g}% Wilson intervals")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def plot_throughput(runs: Sequence[Run], path: Path) -> Path:
    """Examples/s and tokens/s against batch size, one line per checkpoint."""
    fig = Figure(figsize=(9, 4), dpi=100)
    axes = fig.subplots(1, 2)
    sizes = sorted({r.batch_size for r in runs})
    for ax, key, label in zip(
        axes, ("examples_per_second", "tokens_per_second"), ("examples/s", "tokens/s"), strict=True
    ):
        for name in checkpoint_names(runs):
            pts = [
                (r.batch_size, r.summary[key])
                for r in runs
                if r.checkpoint == name and isinstance(r.summary.get(key), int | float)
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


def figure_link(figure: Path, out_path: Path) -> str:
    """Path of `figure` relative to the report's directory (for markdown links)."""
    return Path(os.path.relpath(figure.resolve(), out_path.resolve().parent)).as_posix()


# ---------------------------------------------------------------- assembly


def build_context(
    inputs: ReportInputs, runs: list[Run], figures: tuple[Path, Path]
) -> ReportContext:
    """Compute and format every value of the report."""
    invariance = load_invariance(inputs.invariance_paths)
    dataset = read_json(inputs.dataset_manifest) if inputs.dataset_manifest else None
    manifests = load_checkpoint_manifests(inputs.checkpoint_manifests)
    comparisons = paired_comparisons(runs, inputs.base_checkpoint)
    confidence = f"{100 * DEFAULT_CONFIDENCE:g}%"
    findings = [best_checkpoint_finding(runs), *map(comparison_finding, comparisons)]
    inv_finding = invariance_finding(invariance)
    if inv_finding:
        findings.append(inv_finding)
    models = list(dict.fromkeys(str(r.summary.get("model_source", NA)) for r in runs))
    return ReportContext(
        title_model=str(inputs.config.get("run_name") or ", ".join(models)),
        confidence_label=f"{confidence} Wilson CI",
        interval_label=f"{confidence} CI",
        summary=summary_table(runs, f"{confidence} Wilson CI"),
        findings=findings,
        comparisons=comparisons,
        invariance=invariance_sections(runs, invariance),
        methods=methods_table(runs),
        throughput=throughput_table(runs),
        accuracy_figure=figure_link(figures[0], inputs.out_path),
        throughput_figure=figure_link(figures[1], inputs.out_path),
        checkpoints=checkpoints_table(runs, manifests),
        configuration=configuration_table(runs),
        config_yaml=config_yaml(inputs.config),
        provenance=provenance_table(runs, dataset),
        versions=versions_table(runs),
        external_reference=EXTERNAL_REFERENCE,
        recommendations=recommendations(runs, comparisons, invariance, dataset),
        command=inputs.command,
        output_files=output_files(inputs, runs, figures),
        stats_note=(
            f"Intervals are {confidence} Wilson score intervals. Checkpoint differences are "
            f"paired by example: exact two-sided McNemar test and a {confidence} paired "
            f"percentile bootstrap interval ({DEFAULT_RESAMPLES} resamples, seed {DEFAULT_SEED})."
        ),
    )


def config_yaml(config: dict[str, Any]) -> str:
    """The configuration as YAML ('' when empty)."""
    return yaml.safe_dump(config, sort_keys=False).rstrip() if config else ""


def make_environment(template_dir: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(inputs: ReportInputs) -> Path:
    """Render the markdown report and its figures; returns `inputs.out_path`."""
    runs = order_runs(
        [load_run(p) for p in discover_summaries(inputs.eval_dirs)], inputs.base_checkpoint
    )
    figures = (
        plot_accuracy(runs, Path(inputs.figures_dir) / ACCURACY_FIGURE),
        plot_throughput(runs, Path(inputs.figures_dir) / THROUGHPUT_FIGURE),
    )
    context = build_context(inputs, runs, figures)
    template = make_environment(Path(inputs.template_dir)).get_template(TEMPLATE_NAME)
    text = template.render(r=context)
    atomic_write_text(Path(inputs.out_path), text)
    return Path(inputs.out_path)


def load_config(config: Path | Mapping[str, Any] | None) -> dict[str, Any]:
    """The configuration to show: a YAML/JSON file, an already-loaded mapping, or None ({})."""
    if config is None:
        return {}
    if isinstance(config, Mapping):
        return dict(config)
    data = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ReportDataError(f"{config}: configuration must be a mapping")
    return data


def inputs_from_results(
    results_dir: Path,
    out_path: Path,
    config_path: Path | Mapping[str, Any] | None,
    command: str,
) -> ReportInputs:
    """Inputs found in the standard layout: eval/, invariance/, checkpoints/, data/."""
    results_dir = Path(results_dir)
    dataset = results_dir / "data" / "gsm8k_test.manifest.json"
    return ReportInputs(
        eval_dirs=[results_dir / "eval"],
        invariance_paths=sorted((results_dir / "invariance").glob("*.json")),
        checkpoint_manifests=sorted((results_dir / "checkpoints").glob("*/manifest.json")),
        dataset_manifest=dataset if dataset.is_file() else None,
        config=load_config(config_path),
        command=command,
        out_path=Path(out_path),
        figures_dir=Path(out_path).parent / "figures",
    )


def render_report_from_results(
    results_dir: Path,
    out_path: Path,
    config_path: Path | Mapping[str, Any] | None,
    command: str,
) -> Path:
    """`render_report` on the files discovered below `results_dir`.

    `config_path`: the configuration file (YAML/JSON) or an already-loaded mapping, or None.
    Figures go to `out_path.parent / "figures"`.
    """
    return render_report(inputs_from_results(results_dir, out_path, config_path, command))
