"""The step folders under a trainer's ``<run>/actor`` source, listed cheaply for planning.

One directory listing (gcsfs ``ls`` of the prefix, or ``os.listdir``): folder names only, no
object metadata, so planning a sweep (``snakemake -n``) costs one request per source. Whether a
step is complete is checked when it is fetched. Listings are cached per process (one parse of
the Snakefile lists each source once).
"""

from __future__ import annotations

import functools

from gsm8k_eval.checkpoints.gcs import filesystem, parse_source, translate_error
from gsm8k_eval.checkpoints.manifest import PARAMS_DIR, CheckpointNotFoundError


@functools.cache
def list_steps(source: str) -> tuple[int, ...]:
    """The integer-named folders directly under `source`, sorted numerically."""
    src = parse_source(source)
    if src.kind == "base":
        raise CheckpointNotFoundError("source base has no steps: a sweep needs <run>/actor")
    fs = filesystem(src)
    try:
        entries = fs.ls(src.root, detail=False)
    except Exception as exc:
        raise translate_error(exc, src, "listing the steps of") from exc
    names = {str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in entries}
    if PARAMS_DIR in names:
        raise CheckpointNotFoundError(
            f"{src.url} is a single step folder: a sweep needs the <run>/actor folder above it"
        )
    return tuple(sorted(int(name) for name in names if name.isdigit()))
