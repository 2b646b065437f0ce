"""Checkpoint sweeps: one config entry naming many steps becomes one checkpoint per step.

An entry with `steps: all`, `steps: [..]` or `every: N` (optionally within `from`/`to`) expands
into checkpoints named `<name>-step<N>`, sorted by step, each fetched and evaluated on its own.
`steps: all` and `every` list the source's step folders at planning time through the `lister`
the caller passes (the Snakefile: `targets.list_steps`, i.e. checkpoints/listing.py); an
explicit list does not touch the source. This module itself never imports a filesystem.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

SWEEP_KEYS = ("steps", "every", "from", "to")
_MEMBER = "{name}-step{step}"

StepLister = Callable[[str], Sequence[int]]


class SweepError(ValueError):
    """A sweep entry cannot be expanded; the message names the entry and the key."""


def is_sweep(entry: dict[str, Any]) -> bool:
    return entry.get("steps") is not None or entry.get("every") is not None


def member_name(name: str, step: int) -> str:
    """The checkpoint name of one step of sweep `name`."""
    return _MEMBER.format(name=name, step=step)


def member_step(sweep: str, checkpoint: str) -> int | None:
    """The step of `checkpoint` if it is a member of sweep `sweep`, else None."""
    match = re.fullmatch(re.escape(sweep) + r"-step(\d+)", checkpoint)
    return int(match.group(1)) if match else None


def sweep_steps(entry: dict[str, Any], lister: StepLister | None = None) -> list[int]:
    """The steps a sweep entry names, sorted (listing the source when it must)."""
    _check_keys(entry)
    name, steps, every = entry["name"], entry.get("steps"), entry.get("every")
    low, high = entry.get("from"), entry.get("to")
    if isinstance(steps, list):
        return sorted(steps)
    if lister is None:
        raise SweepError(
            f"checkpoints[{name}]: steps: all / every need the source's step listing "
            "(gsm8k_eval.targets.list_steps), which this caller did not give"
        )
    available = list(lister(entry["source"]))
    if not available:
        raise SweepError(
            f"checkpoints[{name}]: no step folders (integer names) found under "
            f"{entry['source']}: point source at the trainer's <run>/actor folder"
        )
    chosen = [
        s
        for s in available
        if (low is None or s >= low)
        and (high is None or s <= high)
        and (not every or s % every == 0)
    ]
    if not chosen:
        rule = f"multiples of every: {every}" if every else "steps"
        raise SweepError(
            f"checkpoints[{name}]: no {rule} between from: {low} and to: {high} among the steps "
            f"{available} under {entry['source']}: change every/from/to"
        )
    return chosen


def _check_keys(entry: dict[str, Any]) -> None:
    name, steps = entry["name"], entry.get("steps")
    if entry.get("step") is not None:
        raise SweepError(f"checkpoints[{name}]: step cannot be combined with steps or every")
    if steps is not None and entry.get("every") is not None:
        raise SweepError(f"checkpoints[{name}]: give steps or every, not both")
    if entry.get("source", "base") == "base":
        raise SweepError(f"checkpoints[{name}]: a sweep needs a source with steps, not base")
    ranged = entry.get("from") is not None or entry.get("to") is not None
    if isinstance(steps, list) and ranged:
        raise SweepError(f"checkpoints[{name}]: from/to apply to steps: all and every, not a list")
    low, high = entry.get("from"), entry.get("to")
    if low is not None and high is not None and low > high:
        raise SweepError(f"checkpoints[{name}]: from ({low}) is after to ({high})")


def expand(entries: Sequence[dict[str, Any]], lister: StepLister | None = None) -> list[dict]:
    """Config checkpoint entries with every sweep replaced by one entry per step.

    Each entry comes back as {name, source, step, sweep} (sweep: the entry's name, or None).
    """
    expanded = []
    for entry in entries:
        if not is_sweep(entry):
            if entry.get("from") is not None or entry.get("to") is not None:
                raise SweepError(f"checkpoints[{entry['name']}]: from/to need steps: all or every")
            expanded.append(_plain(entry))
            continue
        for step in sweep_steps(entry, lister):
            expanded.append(
                {
                    "name": member_name(entry["name"], step),
                    "source": entry["source"],
                    "step": step,
                    "sweep": entry["name"],
                }
            )
    return expanded


def _plain(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": entry["name"],
        "source": entry["source"],
        "step": entry.get("step"),
        "sweep": None,
    }


def sweep_names(config_checkpoints: Sequence[dict[str, Any]]) -> list[str]:
    """Names of the sweep entries of a (raw) config's checkpoints list."""
    return [entry["name"] for entry in config_checkpoints if is_sweep(entry)]
