"""gsm8k_eval.provenance: the command the report records and the workflow checkout's state."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from gsm8k_eval.cpu_kind import cpu_kind
from gsm8k_eval.provenance import checkout, machine, profiles, snakemake_command


def test_command_has_config_files_overrides_and_profile(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["snakemake", "-n", "--profile", "profiles/local-gpu", "--cores", "3"]
    command = snakemake_command(
        [tmp_path / "configs" / "study.yaml", "/elsewhere/extra.yaml"],
        ["limit=8", "batch_sizes=[1, 8]"],
        argv,
        environ={},
    )
    assert shlex.split(command) == [
        "snakemake",
        "--cores",
        "all",
        "--profile",
        "profiles/local-gpu",
        "--configfile",
        "configs/study.yaml",  # relative to the working directory when below it
        "--configfile",
        "/elsewhere/extra.yaml",
        "--config",
        "limit=8",
        "batch_sizes=[1, 8]",
    ]


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        (["snakemake", "--profile=profiles/slurm"], {}, ["--profile", "profiles/slurm"]),
        ([], {"SNAKEMAKE_PROFILE": "slurm"}, ["--profile", "slurm"]),
        (["snakemake", "--profile", "a"], {"SNAKEMAKE_PROFILE": "b"}, ["--profile", "a"]),
        (
            ["snakemake", "--workflow-profile", "profiles/local-gpu"],
            {},
            ["--workflow-profile", "profiles/local-gpu"],
        ),
        (["python", "-m", "pytest"], {}, []),
    ],
)
def test_profiles(argv: list[str], environ: dict[str, str], expected: list[str]) -> None:
    assert profiles(argv, environ) == expected


def test_no_overrides_no_profile_is_the_plain_command() -> None:
    assert snakemake_command([], None, [], environ={}) == "snakemake --cores all"


def test_checkout_commit_and_dirty_flag(tmp_path: Path) -> None:
    assert checkout(tmp_path) is None  # not a git checkout
    assert checkout(None) is None
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a.txt").write_text("1\n")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    (tmp_path / "untracked.txt").write_text("not counted\n")
    state = checkout(tmp_path)
    assert state is not None and (state.commit, state.dirty) == (head.strip(), False)
    (tmp_path / "a.txt").write_text("2\n")
    assert checkout(tmp_path).dirty is True


def test_machine_names_the_cpu_kind_and_the_checkout(tmp_path: Path) -> None:
    assert machine(tmp_path) == {"cpu": cpu_kind(), "checkout": None}
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert machine(tmp_path)["checkout"] == {"commit": head.strip(), "dirty": False}
