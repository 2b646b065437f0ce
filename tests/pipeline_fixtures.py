"""pytest plugin: the tiny config run once per session through the repository's Snakefile."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_helpers import run_snakemake, tiny_config, write_config


@pytest.fixture(scope="session")
def tiny_pipeline_run(tmp_path_factory, gsm8k_dir) -> tuple[Path, Path, object]:
    """(work folder, config file, snakemake's CompletedProcess) of tests/configs/tiny.yaml as is,
    run locally (`--cores 2`). test_pipeline.py checks it; test_cluster.py compares a SLURM run
    of the same config with it. Tests may plan (`-n`) in it, not change its results."""
    workdir = tmp_path_factory.mktemp("pipeline")
    config_path = write_config(workdir, tiny_config())
    result = run_snakemake(workdir, config_path)
    return workdir, config_path, result
