"""The report's inputs: summaries and rollouts, invariance files, manifests, configuration."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from gsm8k_eval import resources, schema
from gsm8k_eval.config import BASE_CHECKPOINT
from gsm8k_eval.io import read_json, read_jsonl
from gsm8k_eval.lm_eval_export import proportion_stderr
from gsm8k_eval.parts import is_part_dir
from gsm8k_eval.stats import Interval, wilson_interval

DEFAULT_TEMPLATE_DIR = resources.report_template_dir()
ROLLOUT_COLUMNS = ["id", "question", "correct", "correct_by_method"]
# Summaries written before samplers became an axis ran the schema's default sampler.
DEFAULT_SAMPLER = schema.default("samplers")[0]


class ReportDataError(ValueError):
    """Inputs are missing or inconsistent (e.g. a summary disagrees with its rollouts)."""


@dataclass
class ReportInputs:
    """Everything `render_report` reads.

    `eval_dirs`: summary.json files and/or directories searched recursively for them (e.g.
    `results/eval`); each needs a sibling rollouts.jsonl. `checkpoint_manifests`: the
    `results/checkpoints/{checkpoint}/manifest.json` files (name = parent directory).
    `config`: the run's configuration; its `run_name` titles the report (the schema's default
    when absent).
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
    reference_summaries: list[Path] = field(default_factory=list)  # `gsm8k-eval reference`
    workflow_dir: Path | None = None  # its git commit is recorded (None: not recorded)


@dataclass
class Run:
    """One evaluation: a checkpoint with a sampler at a batch size."""

    checkpoint: str
    batch_size: int
    summary: dict[str, Any]
    rollouts: pd.DataFrame
    summary_path: Path
    rollouts_path: Path
    sampler: str = DEFAULT_SAMPLER
    interval: Interval = field(init=False)

    def __post_init__(self) -> None:
        self.interval = wilson_interval(self.correct, self.total)

    @property
    def correct(self) -> int:
        return int(self.rollouts["correct"].astype(bool).sum())

    @property
    def total(self) -> int:
        return len(self.rollouts)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def stderr(self) -> float | None:
        """Standard error of the accuracy as lm-eval computes `exact_match_stderr`."""
        return proportion_stderr(self.correct, self.total)

    @property
    def model_source(self) -> str | None:
        return self.summary.get("model_source")

    def number(self, key: str) -> float | None:
        """A numeric summary field, or None when absent or not a number."""
        return as_number(self.summary.get(key))

    def stop_reasons(self) -> pd.Series:
        """The rollouts' `stop_reason` column (empty when the rollouts have none)."""
        return self.rollouts.get("stop_reason", pd.Series(dtype=object))


def as_number(value: Any) -> float | None:
    """`value` if it is an int or float (not a bool), else None."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def report_title(config: Mapping[str, Any]) -> str:
    """The configured `run_name`, or the schema's default."""
    name = config.get("run_name")
    return str(name) if name else str(schema.default("run_name"))


def discover_summaries(eval_dirs: Iterable[Path]) -> list[Path]:
    """summary.json files: given directly, or found recursively below given directories
    (leaving out the parts of split evaluations: their gathered summary stands for them)."""
    found: list[Path] = []
    for entry in map(Path, eval_dirs):
        if entry.is_dir():
            found.extend(
                p for p in sorted(entry.rglob("summary.json")) if not is_part_dir(p.parent)
            )
        elif entry.is_file():
            found.append(entry)
        else:
            raise ReportDataError(f"evaluation input not found: {entry}")
    if not found:
        raise ReportDataError(f"no summary.json found in {list(map(str, eval_dirs))}")
    return sorted(set(found))


def load_rollouts(path: Path) -> pd.DataFrame:
    """rollouts.jsonl as a DataFrame, sorted by id."""
    if not path.is_file():
        raise ReportDataError(f"rollouts not found next to summary: {path}")
    rows = read_jsonl(path)
    if not rows:
        return pd.DataFrame(columns=ROLLOUT_COLUMNS)
    return pd.DataFrame(rows).sort_values("id").reset_index(drop=True)


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
        sampler=str(summary.get("sampler") or DEFAULT_SAMPLER),
    )
    if (run.correct, run.total) != (summary.get("correct"), summary.get("total")):
        raise ReportDataError(
            f"{summary_path}: summary says {summary.get('correct')}/{summary.get('total')} "
            f"but {rollouts_path} has {run.correct}/{run.total} correct"
        )
    return run


def order_runs(runs: list[Run], base: str) -> list[Run]:
    """Base checkpoint first, then by name; then sampler; batch sizes ascending.

    Duplicates are an error.
    """
    keys = [(r.checkpoint, r.sampler, r.batch_size) for r in runs]
    if len(set(keys)) != len(keys):
        raise ReportDataError(f"duplicate (checkpoint, sampler, batch size) runs: {sorted(keys)}")
    return sorted(runs, key=lambda r: (r.checkpoint != base, r.checkpoint, r.sampler, r.batch_size))


def load_runs(inputs: ReportInputs) -> list[Run]:
    """Every run of `inputs`, ordered (see `order_runs`)."""
    runs = [load_run(p) for p in discover_summaries(inputs.eval_dirs)]
    return order_runs(runs, inputs.base_checkpoint)


def checkpoint_names(runs: Sequence[Run]) -> list[str]:
    return list(dict.fromkeys(r.checkpoint for r in runs))


def reference_run(runs: Sequence[Run], checkpoint: str) -> Run:
    """The smallest batch size of a checkpoint."""
    return min((r for r in runs if r.checkpoint == checkpoint), key=lambda r: r.batch_size)


def primary_sampler(runs: Sequence[Run], config: Mapping[str, Any]) -> str | None:
    """The sampler the checkpoint comparisons use: the config's first, else the default's."""
    found = {r.sampler for r in runs}
    preferred = [*(config.get("samplers") or []), DEFAULT_SAMPLER, *sorted(found)]
    return next((s for s in preferred if s in found), None)


def runs_of_sampler(runs: Sequence[Run], sampler: str | None) -> list[Run]:
    return [r for r in runs if r.sampler == sampler]


def load_invariance(paths: Iterable[Path]) -> dict[tuple[str, str], dict[str, Any]]:
    """Invariance files (see `gsm8k_eval.invariance`) by (checkpoint, sampler)."""
    data = [read_json(p) for p in paths]
    return {(str(d["checkpoint"]), str(d.get("sampler") or DEFAULT_SAMPLER)): d for d in data}


def load_checkpoint_manifests(paths: Iterable[Path]) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Checkpoint manifests by checkpoint name (the manifest's parent directory)."""
    return {Path(p).parent.name: (Path(p), read_json(p)) for p in paths}


def config_to_show(config: Path | Mapping[str, Any] | None) -> dict[str, Any]:
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
        invariance_paths=sorted((results_dir / "invariance").rglob("*.json")),
        checkpoint_manifests=sorted((results_dir / "checkpoints").glob("*/manifest.json")),
        dataset_manifest=dataset if dataset.is_file() else None,
        reference_summaries=sorted((results_dir / "reference").glob("*/summary.json")),
        config=config_to_show(config_path),
        command=command,
        out_path=Path(out_path),
        figures_dir=Path(out_path).parent / "figures",
    )
