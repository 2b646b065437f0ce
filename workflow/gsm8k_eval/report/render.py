"""Rendering: the template context (typed values) and the Jinja filters that format them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from gsm8k_eval import provenance, schema
from gsm8k_eval.io import atomic_write_text, read_json
from gsm8k_eval.report import findings as fnd
from gsm8k_eval.report import sampled, settings, sweeps, tables
from gsm8k_eval.report.batch_dependence import BatchDependence, batch_dependence
from gsm8k_eval.report.figures import figure_link, render_figures
from gsm8k_eval.report.inputs import (
    ReportInputs,
    Run,
    as_number,
    inputs_from_results,
    load_checkpoint_manifests,
    load_invariance,
    load_runs,
    primary_sampler,
    report_title,
    runs_of_sampler,
)
from gsm8k_eval.report.reference import FrameworkComparison, framework_comparisons
from gsm8k_eval.stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED, Interval

TEMPLATE_NAME = "gsm8k_eval_report.md.j2"
SAMPLER_NAMES = {"tunix": "stock tunix sampler"}
NA = "n/a"
QUESTION_WIDTH = 80


@dataclass(frozen=True)
class ExternalReference:
    """config `report.external_reference`: an accuracy measured elsewhere, shown as such."""

    label: str
    accuracy: float
    source: str


def external_reference(config: Mapping[str, Any]) -> ExternalReference | None:
    ref = (config.get("report") or {}).get("external_reference")
    return None if not ref else ExternalReference(ref["label"], ref["accuracy"], ref["source"])


# ---------------------------------------------------------------- filters


def num(x: Any, spec: str = "") -> str:
    """A number formatted with `spec`; 'n/a' for missing or non-numeric values."""
    x = as_number(x)
    return NA if x is None else format(x, spec)


def pct(x: Any, spec: str = ".1f") -> str:
    """A proportion as a percentage: 0.5572 -> '55.7%'."""
    x = as_number(x)
    return NA if x is None else f"{format(100 * x, spec)}%"


def pp(x: Any) -> str:
    """A difference of proportions in signed percentage points: 0.0123 -> '+1.2 pp'."""
    x = as_number(x)
    return NA if x is None else f"{100 * x:+.1f} pp"


def seconds(x: Any) -> str:
    """Seconds with one decimal (the unit is in the column header)."""
    return num(x, ".1f")


def pvalue(p: Any) -> str:
    """p-value with three decimals, '< 0.001' below that."""
    p = as_number(p)
    if p is None:
        return NA
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def ci(interval: Interval | None) -> str:
    """Interval of proportions: '[53.0%, 58.4%]'."""
    return NA if interval is None else f"[{pct(interval.low)}, {pct(interval.high)}]"


def pp_ci(interval: Interval | None) -> str:
    """Interval of differences: '[-1.2 pp, +3.4 pp]'."""
    return NA if interval is None else f"[{pp(interval.low)}, {pp(interval.high)}]"


def value(x: Any) -> str:
    """A setting's value: lists joined by ', ', mappings as 'k=v', None as 'n/a'."""
    if x is None:
        return NA
    if isinstance(x, Mapping):
        return ", ".join(f"{k}={value(v)}" for k, v in x.items())
    if isinstance(x, list | tuple):
        return ", ".join(str(v) for v in x)
    return str(x)


def cell(x: Any) -> str:
    """A value made safe for a markdown table cell."""
    return value(x).replace("|", "\\|").replace("\n", " ")


def shorten(text: Any, width: int = QUESTION_WIDTH) -> str:
    """Collapse whitespace; cut to `width` characters ending in '…' when longer."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"


def display_path(path: Path | str | None) -> str:
    """Path relative to the working directory when below it, POSIX style."""
    if path is None:
        return NA
    path = Path(path)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def sampler_name(sampler: Any) -> str:
    """A sampler as the report names it: 'tunix' -> 'stock tunix sampler'."""
    return SAMPLER_NAMES.get(str(sampler), f"{sampler} sampler")


FILTERS = {
    "sampler_name": sampler_name,
    "num": num,
    "pct": pct,
    "pp": pp,
    "seconds": seconds,
    "pvalue": pvalue,
    "ci": ci,
    "pp_ci": pp_ci,
    "value": value,
    "cell": cell,
    "shorten": shorten,
    "path": display_path,
}


# ---------------------------------------------------------------- context


@dataclass(frozen=True)
class ReportContext:
    """Everything the template shows, as typed values (the filters format them)."""

    title: str
    model_name: str | None  # config `model.name`: shown instead of each run's model source
    confidence: float
    alpha: float
    resamples: int
    seed: int
    runs: list[Run]
    samplers: list[str]
    primary_sampler: str | None  # the checkpoint comparisons use this sampler's runs
    batch_dependence: BatchDependence
    findings: list[Any]
    comparisons: list[tables.PairedComparison]
    invariance: list[tables.InvarianceSection]
    reference: list[FrameworkComparison]  # JAX vs PyTorch; empty without the reference stage
    methods: tables.MethodsTable
    throughput: tables.ThroughputTable
    accuracy_figure: str
    throughput_figure: str
    checkpoints: list[settings.CheckpointRow]
    configuration: list[settings.Setting]
    config_yaml: str
    provenance: list[settings.Setting]
    checksum_matches: bool | None
    versions: list[tuple[str, list[str]]]
    external_reference: ExternalReference | None  # config report.external_reference
    shown_divergences: set[tuple[str, str, int, Any]]  # (ckpt, sampler, bs, id) in batch dependence
    recommendations: list[Any]
    command: str
    output_files: list[tuple[str, Path]]
    sweeps: list[sweeps.Sweep]  # checkpoint sweeps (report/sweeps.py; empty: no section)
    sweep_figure: str | None
    compile_cache: sweeps.CompileCache | None
    sampled: list[sampled.SampledRun]  # sampled runs (report/sampled.py; empty: no section)
    sampled_figure: str | None


def output_files(
    inputs: ReportInputs, runs: Sequence[Run], figures: Sequence[Path]
) -> list[tuple[str, Path]]:
    rows = [("report", Path(inputs.out_path))]
    rows += [("figure", p) for p in figures]
    for r in runs:
        rows += [("summary", r.summary_path), ("rollouts", r.rollouts_path)]
    rows += [("invariance", Path(p)) for p in inputs.invariance_paths]
    for p in map(Path, inputs.reference_summaries):
        rows += [("reference summary", p), ("reference rollouts", p.parent / "rollouts.jsonl")]
    rows += [("checkpoint manifest", Path(p)) for p in inputs.checkpoint_manifests]
    if inputs.dataset_manifest is not None:
        rows.append(("dataset manifest", Path(inputs.dataset_manifest)))
    return rows


def shown_divergences(dependence: BatchDependence) -> set[tuple[str, str, int, Any]]:
    """The examples the batch-dependence section shows in full (other sections refer to it
    instead of repeating them)."""
    return {
        (p.checkpoint, p.sampler, p.batch_size, e.divergence.id)
        for p in dependence.pairs
        for e in p.examples
    }


def config_yaml(config: dict[str, Any]) -> str:
    """The configuration as YAML ('' when empty), without deprecated keys (whose values their
    replacements carry, e.g. `sampling.sampler` in `samplers`)."""
    config = schema.without_deprecated(config) if config else config
    return yaml.safe_dump(config, sort_keys=False).rstrip() if config else ""


def build_context(
    inputs: ReportInputs, runs: list[Run], figures: tuple[Path, Path]
) -> ReportContext:
    """Compute every value of the report (numbers stay numbers)."""
    invariance = load_invariance(inputs.invariance_paths)
    dataset = read_json(inputs.dataset_manifest) if inputs.dataset_manifest else None
    dependence = batch_dependence(runs, invariance)
    commit = settings.commit_text(inputs.workflow_dir, provenance.checkout(inputs.workflow_dir))
    primary = primary_sampler(runs, inputs.config)
    primary_runs = runs_of_sampler(runs, primary)
    comparisons = tables.paired_comparisons(primary_runs, inputs.base_checkpoint)
    sections = tables.invariance_sections(runs, invariance)
    swept = sweeps.sweep_sections(primary_runs, inputs.config, inputs.base_checkpoint)
    sweep_figure = (
        sweeps.plot_sweeps(swept, Path(inputs.figures_dir) / sweeps.SWEEP_FIGURE) if swept else None
    )
    sampled_runs = sampled.sampled_runs(runs)
    sampled_figure = (
        sampled.plot_sampled(sampled_runs, Path(inputs.figures_dir) / sampled.SAMPLED_FIGURE)
        if sampled_runs
        else None
    )
    return ReportContext(
        title=report_title(inputs.config),
        model_name=(inputs.config.get("model") or {}).get("name"),
        confidence=DEFAULT_CONFIDENCE,
        alpha=tables.ALPHA,
        resamples=DEFAULT_RESAMPLES,
        seed=DEFAULT_SEED,
        runs=runs,
        samplers=list(dict.fromkeys(r.sampler for r in runs)),
        primary_sampler=primary,
        batch_dependence=dependence,
        findings=fnd.findings(primary_runs, comparisons, invariance),
        comparisons=comparisons,
        invariance=sections,
        reference=framework_comparisons(runs, inputs.reference_summaries),
        methods=tables.methods_table(runs),
        throughput=tables.throughput_table(runs),
        accuracy_figure=figure_link(figures[0], inputs.out_path),
        throughput_figure=figure_link(figures[1], inputs.out_path),
        checkpoints=settings.checkpoints_table(
            runs, load_checkpoint_manifests(inputs.checkpoint_manifests)
        ),
        configuration=settings.configuration_table(runs),
        config_yaml=config_yaml(inputs.config),
        provenance=settings.provenance_table(runs, dataset, inputs.config, commit),
        checksum_matches=settings.dataset_checksum_matches(runs, dataset),
        versions=settings.versions_table(runs),
        external_reference=external_reference(inputs.config),
        shown_divergences=shown_divergences(dependence),
        recommendations=fnd.recommendations(runs, comparisons, sections, dataset),
        command=inputs.command,
        output_files=output_files(inputs, runs, figures),
        sweeps=swept,
        sweep_figure=figure_link(sweep_figure, inputs.out_path) if sweep_figure else None,
        compile_cache=sweeps.compile_cache(runs),
        sampled=sampled_runs,
        sampled_figure=figure_link(sampled_figure, inputs.out_path) if sampled_figure else None,
    )


# ---------------------------------------------------------------- rendering


def make_environment(template_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    return env


def render_report(inputs: ReportInputs) -> Path:
    """Render the markdown report and its figures; returns `inputs.out_path`."""
    runs = load_runs(inputs)
    figures = render_figures(runs, Path(inputs.figures_dir))
    context = build_context(inputs, runs, figures)
    template = make_environment(Path(inputs.template_dir)).get_template(TEMPLATE_NAME)
    atomic_write_text(Path(inputs.out_path), template.render(r=context))
    return Path(inputs.out_path)


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
