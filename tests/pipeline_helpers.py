"""Helpers to run the Snakemake pipeline on the tiny test config in a scratch directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from shared_data import require_gsm8k

from gsm8k_eval.config import PipelineConfig, load_config

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"
TINY_RUN = "tiny"  # `run:` of tiny.yaml: its outputs are under results/tiny/


def run_root(workdir: Path, run: str = TINY_RUN) -> Path:
    """results/<run>/ of a pipeline run in workdir."""
    return workdir / "results" / run


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """tests/configs/tiny.yaml with absolute dataset paths and the given top-level overrides.

    The tiny config reads the shared GSM8K data (../shared): a test using it fails, never
    skips, when that is missing."""
    require_gsm8k()
    config = yaml.safe_load(TINY_CONFIG.read_text())
    for key in ("source", "fewshot_source"):
        if config["dataset"].get(key):
            config["dataset"][key] = str((REPO / config["dataset"][key]).resolve())
    config.update(overrides)
    return config


def write_config(workdir: Path, config: dict[str, Any]) -> Path:
    path = workdir / "config.test.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_snakemake(
    workdir: Path,
    config_path: Path,
    *args: str,
    timeout: int = 900,
    check: bool = True,
    snakefile: Path = REPO / "Snakefile",
) -> subprocess.CompletedProcess[str]:
    """Run the repository's Snakefile (or a copy's) with workdir as working directory."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(snakefile),
        "--directory",
        str(workdir),
        "--configfile",
        str(config_path),
        "--cores",
        "2",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        logs = "\n".join(
            f"--- {p}\n{p.read_text()[-3000:]}"
            for p in sorted(workdir.glob("results/*/logs/**/*.log"))
        )
        raise AssertionError(
            f"snakemake failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}\n{logs}"
        )
    return result


def load_config_file(path: Path) -> PipelineConfig:
    """A YAML config file loaded, validated and typed (as the Snakefile does)."""
    return load_config(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
