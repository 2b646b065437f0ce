"""Checkpoint locations, evaluation settings, provenance and package versions, as typed values
(a setting groups the runs by value when they disagree)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gsm8k_eval.lm_eval_export import stop_sequences
from gsm8k_eval.provenance import Checkout
from gsm8k_eval.report.inputs import Run, checkpoint_names, reference_run
from gsm8k_eval.report.tables import method_names

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
FEWSHOT_TEMPLATE = "fewshot"  # the one prompt template that uses num_shots
OPTIONAL_PROVENANCE_KEYS = (  # summary fields shown only when some run has them
    ("determinism", "determinism settings"),
)
FINGERPRINT_KEYS = (  # digests each evaluation's fingerprint records (gsm8k_eval.fingerprint)
    ("code_sha256", "code sha256 (evaluation)"),
    ("model_sha256", "model files sha256"),
    ("checkpoint_sha256", "checkpoint sha256"),
    ("prompts_sha256", "rendered prompts sha256"),
)
NO_STOPS = "none (EOS only)"
NO_XLA_FLAGS = "none"


@dataclass(frozen=True)
class CheckpointRow:
    name: str
    source: Any
    step: Any
    objects: int | None
    manifest: Path | None


def checkpoints_table(
    runs: Sequence[Run], manifests: dict[str, tuple[Path, dict[str, Any]]]
) -> list[CheckpointRow]:
    rows = []
    for name in checkpoint_names(runs):
        path, manifest = manifests.get(name, (None, None))
        if manifest is None:
            manifest = reference_run(runs, name).summary.get("checkpoint_manifest") or {}
        objects = manifest.get("objects")
        count = len(objects) if isinstance(objects, list | dict) else None
        rows.append(CheckpointRow(name, manifest.get("source"), manifest.get("step"), count, path))
    return rows


@dataclass(frozen=True)
class RunRef:
    checkpoint: str
    batch_size: int
    sampler: str


@dataclass(frozen=True)
class Setting:
    """A setting and its values: one group if all runs agree, else each value with its runs."""

    label: str
    groups: list[tuple[Any, list[RunRef]]] = field(default_factory=list)


def setting(label: str, runs: Sequence[Run], values: Sequence[Any]) -> Setting:
    groups: dict[str, tuple[Any, list[RunRef]]] = {}
    for r, value in zip(runs, values, strict=True):
        key = repr(value)
        groups.setdefault(key, (value, []))[1].append(RunRef(r.checkpoint, r.batch_size, r.sampler))
    return Setting(label, list(groups.values()))


def summary_setting(label: str, runs: Sequence[Run], key: str) -> Setting:
    return setting(label, runs, [r.summary.get(key) for r in runs])


def uses_few_shot(run: Run) -> bool:
    return run.summary.get("prompt_template") == FEWSHOT_TEMPLATE


def num_shots(run: Run) -> Any:
    """The run's few-shot example count; None for templates that ignore it."""
    return run.summary.get("num_shots") if uses_few_shot(run) else None


def configuration_table(runs: Sequence[Run]) -> list[Setting]:
    """Generation settings; few-shot examples only when some run used the few-shot template."""
    fewshot = any(uses_few_shot(r) for r in runs)
    rows = []
    for key, label in CONFIG_KEYS:
        if key != "num_shots":
            rows.append(summary_setting(label, runs, key))
        elif fewshot:
            rows.append(setting(label, runs, [num_shots(r) for r in runs]))
    rows.append(setting("stop sequences", runs, [stops_text(r) for r in runs]))
    rows.append(setting("extraction methods", runs, [method_names(runs) or None] * len(runs)))
    return rows


def stops_text(run: Run) -> str:
    """The run's stop sequences as code spans (`none (EOS only)` without any)."""
    stops = stop_sequences(run.summary)
    return ", ".join(f"`{s}`" for s in stops) if stops else NO_STOPS


def provenance_table(
    runs: Sequence[Run],
    dataset: dict[str, Any] | None,
    config: dict[str, Any] | None = None,
    commit: str | None = None,
) -> list[Setting]:
    """What produced the results: code, model, checkpoints, data, device and XLA flags."""
    model = (config or {}).get("model") or {}
    rows = [
        setting("workflow git commit (at rendering)", runs[:1], [commit or "not recorded"]),
        setting("model revision (config)", runs[:1], [model.get("revision") or "not pinned"]),
        *(
            setting(label, runs, [fingerprint(r, key) for r in runs])
            for key, label in FINGERPRINT_KEYS
        ),
        summary_setting("device", runs, "device"),
        setting("XLA flags", runs, [r.summary.get("xla_flags") or NO_XLA_FLAGS for r in runs]),
        summary_setting("config hash", runs, "config_hash"),
        summary_setting("dataset sha256 (summaries)", runs, "dataset_sha256"),
    ]
    for key, label in OPTIONAL_PROVENANCE_KEYS:
        if any(r.summary.get(key) not in (None, "", {}) for r in runs):
            rows.append(summary_setting(label, runs, key))
    if dataset is not None:
        for key in ("source", "revision", "rows", "sha256"):
            rows.append(setting(f"dataset {key} (manifest)", runs[:1], [dataset.get(key)]))
    return rows


def commit_text(workflow_dir: Path | None, checkout: Checkout | None) -> str | None:
    """The workflow checkout's commit (and whether it had uncommitted changes)."""
    if workflow_dir is None:
        return None
    if checkout is None:
        return f"none ({workflow_dir} is not a git checkout)"
    return checkout.commit + (" with uncommitted changes" if checkout.dirty else "")


def fingerprint(run: Run, key: str) -> Any:
    """A digest from the run's fingerprint (None for summaries without one)."""
    return (run.summary.get("fingerprint") or {}).get(key)


def dataset_checksum_matches(runs: Sequence[Run], dataset: dict[str, Any] | None) -> bool | None:
    """Whether every summary's dataset sha256 is the manifest's (None without a manifest)."""
    if dataset is None:
        return None
    return {r.summary.get("dataset_sha256") for r in runs} == {dataset.get("sha256")}


def versions_table(runs: Sequence[Run]) -> list[tuple[str, list[str]]]:
    """Each package with the distinct versions the runs recorded: the summary's `versions` and
    its fingerprint's (which adds the installed PJRT plugins, e.g. `jax-cuda12-plugin`)."""
    recorded = [run_versions(r) for r in runs]
    packages = sorted({k for versions in recorded for k in versions})
    return [(pkg, list(dict.fromkeys(str(v.get(pkg)) for v in recorded))) for pkg in packages]


def run_versions(run: Run) -> dict[str, Any]:
    fingerprinted = (run.summary.get("fingerprint") or {}).get("versions") or {}
    return {**fingerprinted, **(run.summary.get("versions") or {})}
