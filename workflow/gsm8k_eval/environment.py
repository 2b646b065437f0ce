"""The environment rule shells need: `python -m gsm8k_eval` finds this interpreter and this
package. Called explicitly by the Snakefile (`onstart`, before any job runs), never at import or
parse time."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def export_environment(basedir: str) -> None:
    """Make `python -m gsm8k_eval` in rule shells find this interpreter and this package."""
    package_root = str(Path(basedir) / "workflow")
    _prepend_env("PYTHONPATH", package_root)
    _prepend_env("PATH", str(Path(sys.executable).parent))


def _prepend_env(name: str, entry: str) -> None:
    parts = [p for p in os.environ.get(name, "").split(os.pathsep) if p]
    if entry not in parts:
        os.environ[name] = os.pathsep.join([entry, *parts])
