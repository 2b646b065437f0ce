"""The model directory: file names, source records, errors and the writers of its files.

::

    config.json        HF Gemma3 text config
    model.safetensors  HF tensor names, read by tunix ``params_safetensors``
    tokenizer.json     HF ``tokenizers`` file
    source.json        provenance: source, revision, sha256 of inputs and of the files above
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gsm8k_eval.io import read_json, sha256_file, write_json
from gsm8k_eval.tokenizer import TOKENIZER_FILE

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SOURCE_FILE = "source.json"
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE)
LAYOUT_VERSION = 1


class ModelSourceError(RuntimeError):
    """A model source cannot be fetched or converted (message is user-facing)."""


@dataclass(frozen=True)
class ModelSource:
    """A parsed source string: ``kind`` selects the fetcher, ``target`` its argument."""

    kind: str
    target: str
    revision: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def canonical(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.kind}:{self.target}" + (f"?{query}" if query else "")


def write_config(config: dict[str, Any], model_dir: Path) -> None:
    """``config.json`` (sorted keys)."""
    write_json(model_dir / CONFIG_FILE, config, sort_keys=True)


def save_tensors(tensors: dict[str, np.ndarray], model_dir: Path) -> None:
    """``model.safetensors``; every tensor must have the same dtype."""
    from safetensors.numpy import save_file

    dtypes = {a.dtype for a in tensors.values()}
    if len(dtypes) != 1:  # tunix's fast loader reads a file with a single dtype
        raise ModelSourceError(f"tensors must share one dtype, got {dtypes}")
    save_file(tensors, str(model_dir / WEIGHTS_FILE), metadata={"format": "pt"})


def write_source_json(model_dir: Path, src: ModelSource, inputs: dict[str, Any]) -> None:
    """``source.json``: the source, its inputs and the sha256 of every model file."""
    missing = [name for name in MODEL_FILES if not (model_dir / name).is_file()]
    if missing:
        raise ModelSourceError(f"fetcher for {src.kind} did not write {missing}")
    record = {
        "layout_version": LAYOUT_VERSION,
        "source": src.canonical,
        "revision": src.revision,
        "kind": src.kind,
        "inputs": inputs,
        "files": {name: sha256_file(model_dir / name) for name in MODEL_FILES},
    }
    write_json(model_dir / SOURCE_FILE, record, sort_keys=True)


def is_fetched(out_dir: Path, src: ModelSource) -> bool:
    """Whether ``out_dir`` already holds ``src`` with intact files."""
    try:
        record = read_json(out_dir / SOURCE_FILE)
    except (OSError, ValueError):
        return False
    if (record.get("source"), record.get("revision")) != (src.canonical, src.revision):
        return False
    files = record.get("files", {})
    return set(files) == set(MODEL_FILES) and all(
        (out_dir / name).is_file() and sha256_file(out_dir / name) == digest
        for name, digest in files.items()
    )
