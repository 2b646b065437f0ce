"""What the report records about how it was made: the Snakemake command, the workflow checkout.

`snakemake_command` rebuilds the command from what Snakemake tells the workflow: the config
files (`workflow.overwrite_configfiles`), the `--config` overrides as typed
(`workflow.config_settings.config_args`) and the profile (`--profile` on the command line or
`$SNAKEMAKE_PROFILE`). Targets, `--cores` and other flags given outside a profile are not
recorded (they do not change results; the report says so). `checkout` reads the git commit and
dirty flag of the workflow's folder (None when it is not a git checkout); `machine` adds the CPU
kind, for the benchmarks' JSON. Imports no JAX: the Snakefile imports this module.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from gsm8k_eval.cpu_kind import cpu_kind

PROFILE_FLAGS = ("--profile", "--workflow-profile")
PROFILE_ENV = "SNAKEMAKE_PROFILE"
GIT_TIMEOUT_S = 10


def _display(path: str | Path) -> str:
    """A path relative to the working directory when below it."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def profiles(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """`--profile`/`--workflow-profile` flags of `argv` (as `flag value`), else the
    `$SNAKEMAKE_PROFILE` profile."""
    found = []
    for i, arg in enumerate(argv):
        for flag in PROFILE_FLAGS:
            if arg == flag and i + 1 < len(argv):
                found += [flag, argv[i + 1]]
            elif arg.startswith(f"{flag}="):
                found += [flag, arg.split("=", 1)[1]]
    environ = os.environ if environ is None else environ
    if not any(flag == "--profile" for flag in found[::2]) and environ.get(PROFILE_ENV):
        found += ["--profile", environ[PROFILE_ENV]]
    return found


def snakemake_command(
    configfiles: Sequence[str | Path],
    config_args: Sequence[str] | None,
    argv: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> str:
    """The command line that reruns this workflow with the same settings."""
    parts = ["snakemake", "--cores", "all", *profiles(argv, environ)]
    for path in configfiles:
        parts += ["--configfile", _display(path)]
    if config_args:
        parts += ["--config", *config_args]
    return shlex.join(parts)


@dataclass(frozen=True)
class Checkout:
    """The git state of the workflow folder when the report was rendered."""

    commit: str
    dirty: bool  # tracked files differ from the commit (untracked files are not counted)


def checkout(folder: Path | str | None) -> Checkout | None:
    """The git commit and dirty flag of `folder`; None when it is not in a git checkout (or git
    is missing)."""
    if folder is None:
        return None
    try:
        commit = _git(folder, "rev-parse", "HEAD")
        status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    if commit is None or status is None:
        return None
    return Checkout(commit.strip(), bool(status.strip()))


def machine(folder: Path | str | None) -> dict[str, object]:
    """Where a benchmark ran, for its JSON: the CPU kind (vendor and vector extensions: XLA:CPU's
    bits and speed depend on it) and the checkout of `folder` (commit, dirty; None outside git)."""
    state = checkout(folder)
    return {"cpu": cpu_kind(), "checkout": None if state is None else asdict(state)}


def _git(folder: Path | str, *args: str) -> str | None:
    result = subprocess.run(
        ["git", "-C", str(folder), *args],
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT_S,
        check=False,
    )
    return result.stdout if result.returncode == 0 else None
