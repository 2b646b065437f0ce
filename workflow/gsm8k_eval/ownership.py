"""Which config files a run folder belongs to: the default run name, and the check that one
config's run never overwrites another's (results/<run>/run.json)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from gsm8k_eval.paths import RunPaths

EMBEDDED_CONFIG = "config.yaml"
EMBEDDED_RUN = "demo"
_RUN_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def default_run(configfiles: Sequence[str | Path]) -> str:
    """`run` when the config leaves it null: the last config file's name, else the demo's."""
    if not configfiles:
        return EMBEDDED_RUN
    name = _RUN_NAME.sub("-", Path(configfiles[-1]).stem).strip("-.") or EMBEDDED_RUN
    return name if name[0].isalnum() else f"run-{name}"


def check_owner(paths: RunPaths, configfiles: Sequence[str | Path]) -> None:
    """Refuse to let one config's run overwrite another's: results/<run>/run.json says whose."""
    owner = Path(paths.owner)
    if not owner.exists():
        return
    recorded = json.loads(owner.read_text(encoding="utf-8")).get("configfiles", [])
    mine = _config_identity(configfiles)
    if recorded != mine:
        raise ValueError(
            f"{paths.root}/ holds the results of {', '.join(recorded)}, not of "
            f"{', '.join(mine)}: set `run:` in your config (or --config run=NAME) to keep both, "
            f"or delete {paths.root}/ to replace them"
        )


def claim_run(paths: RunPaths, configfiles: Sequence[str | Path]) -> None:
    """Record which config files this run folder belongs to (at the start of a real run)."""
    check_owner(paths, configfiles)
    owner = Path(paths.owner)
    owner.parent.mkdir(parents=True, exist_ok=True)
    claim = {"configfiles": _config_identity(configfiles)}
    owner.write_text(json.dumps(claim, indent=1) + "\n", encoding="utf-8")


def _config_identity(configfiles: Sequence[str | Path]) -> list[str]:
    if not configfiles:
        return [f"<embedded {EMBEDDED_CONFIG}>"]
    here = Path.cwd().resolve()
    names = []
    for path in configfiles:
        resolved = Path(path).resolve()
        names.append(
            str(resolved.relative_to(here)) if resolved.is_relative_to(here) else str(resolved)
        )
    return names
