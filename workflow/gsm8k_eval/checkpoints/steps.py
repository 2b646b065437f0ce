"""Which step of a trainer's ``<run>/actor`` folder to fetch, and which of its objects.

A step is complete when it has ``_CHECKPOINT_METADATA`` and ``model_params/_METADATA``; the
latest complete one is the default. ``optimizer_state/`` is never fetched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gsm8k_eval.checkpoints.gcs import Source
from gsm8k_eval.checkpoints.manifest import (
    PARAMS_DIR,
    SKIPPED_ITEMS,
    STEP_METADATA,
    CheckpointNotFoundError,
    RemoteObject,
)


@dataclass
class Selection:
    """The chosen step and the objects to fetch for it."""

    step: int | None
    step_dir: str  # name of the step folder (its local name under out_dir)
    objects: list[RemoteObject]
    available_steps: list[int] = field(default_factory=list)
    skipped_steps: list[int] = field(default_factory=list)
    root_is_step: bool = False


def _usable(objects: list[RemoteObject], prefix: str) -> bool:
    names = {o.name for o in objects}
    return f"{prefix}{STEP_METADATA}" in names and f"{prefix}{PARAMS_DIR}/_METADATA" in names


def _wanted(obj: RemoteObject, prefix: str) -> bool:
    rest = obj.name[len(prefix) :]
    return obj.name.startswith(prefix) and rest.split("/", 1)[0] not in SKIPPED_ITEMS


def select_step(objects: list[RemoteObject], src: Source, step: int | None) -> Selection:
    """Pick the requested or latest complete step; keep only what evaluation needs."""
    if any(o.name.startswith(f"{PARAMS_DIR}/") for o in objects):  # root is a step folder
        return _select_step_root(objects, src, step)
    steps = sorted({int(n) for n in (o.name.split("/", 1)[0] for o in objects) if n.isdigit()})
    if not steps:
        raise CheckpointNotFoundError(
            f"no step folders (integers) under {src.url}: point the source at <run>/actor"
        )
    usable = [s for s in steps if _usable(objects, f"{s}/")]
    if step is None:
        if not usable:
            raise CheckpointNotFoundError(
                f"no complete step under {src.url} (steps {steps} lack {STEP_METADATA} or "
                f"{PARAMS_DIR}/_METADATA): wait for the trainer or pick another run"
            )
        step = usable[-1]
    elif step not in usable:
        state = "is incomplete" if step in steps else "does not exist"
        raise CheckpointNotFoundError(
            f"step {step} under {src.url} {state}; complete steps: {usable}: fix `step` in "
            "the config"
        )
    prefix = f"{step}/"
    wanted = [o for o in objects if _wanted(o, prefix)]
    skipped = [s for s in steps if s not in usable]
    return Selection(step, str(step), wanted, steps, skipped)


def _select_step_root(objects: list[RemoteObject], src: Source, step: int | None) -> Selection:
    base = src.root.rstrip("/").rsplit("/", 1)[-1]
    found_step = int(base) if base.isdigit() else None
    if step is not None and step != found_step:
        raise CheckpointNotFoundError(
            f"{src.url} is a single step folder ({base}) but step {step} was requested: drop "
            "`step` or point the source at <run>/actor"
        )
    if not _usable(objects, ""):
        raise CheckpointNotFoundError(
            f"{src.url} lacks {STEP_METADATA} or {PARAMS_DIR}/_METADATA: not a complete step"
        )
    wanted = [
        RemoteObject(f"{base}/{o.name}", o.path, o.size, o.md5, o.crc32c, o.generation)
        for o in objects
        if _wanted(o, "")
    ]
    steps = [found_step] if found_step is not None else []
    return Selection(found_step, base, wanted, steps, root_is_step=True)
