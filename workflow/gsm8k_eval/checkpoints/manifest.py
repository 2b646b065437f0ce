"""What a fetched checkpoint is: its objects, their checksums and ``manifest.json``.

Local layout written by ``fetch_checkpoint`` (``out_dir``)::

    manifest.json        provenance: source, step, every object's size/generation/md5/crc32c
    <step>/_CHECKPOINT_METADATA, <step>/model_params/...   (same layout as the trainer's)

Owns the errors of both halves (fetching and restoring) and the file verification they share.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c

from gsm8k_eval.io import read_json, write_json

BASE_SOURCE = "base"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "gsm8k-eval/checkpoint/v1"
PARAMS_DIR = "model_params"
STEP_METADATA = "_CHECKPOINT_METADATA"
SKIPPED_ITEMS = ("optimizer_state",)  # orbax items evaluation never needs
_CHUNK = 1 << 20


class CheckpointError(RuntimeError):
    """Base class; the message is one line naming the path and what to do."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))


class CheckpointNotFoundError(CheckpointError):
    """Missing bucket, path, step folder or ``model_params``."""


class CheckpointAccessError(CheckpointError):
    """401/403 or no credentials."""


class CheckpointIntegrityError(CheckpointError):
    """An object failed md5/crc32c/size verification or changed on the server mid-fetch."""


@dataclass(frozen=True)
class RemoteObject:
    """One file of a checkpoint as listed at the source."""

    name: str  # relative to the checkpoint root, e.g. "5/model_params/_METADATA"
    path: str  # full path for the filesystem ("bucket/key" for GCS)
    size: int
    md5: str | None  # base64 digest, as GCS's md5Hash
    crc32c: str | None  # base64 big-endian, as GCS's crc32c
    generation: str | None = None  # GCS object generation (None for local files)


def file_digests(path: Path) -> tuple[str, str]:
    """(md5, crc32c) of a local file, base64-encoded like GCS's object metadata."""
    md5 = hashlib.md5(usedforsecurity=False)
    crc = google_crc32c.Checksum()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            md5.update(chunk)
            crc.update(chunk)
    return base64.b64encode(md5.digest()).decode(), base64.b64encode(crc.digest()).decode()


def mismatch(path: Path, obj: RemoteObject) -> str | None:
    """Why ``path`` is not a verified copy of ``obj`` (None if it is)."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != obj.size:
        return f"size {size} != {obj.size}"
    md5, crc = file_digests(path)
    if obj.md5 is not None and md5 != obj.md5:
        return f"md5 {md5} != {obj.md5}"
    if obj.crc32c is not None and crc != obj.crc32c:
        return f"crc32c {crc} != {obj.crc32c}"
    if obj.md5 is None and obj.crc32c is None:
        return "source lists no checksum"
    return None


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    """``out_dir/manifest.json`` (sorted keys, atomic)."""
    write_json(Path(out_dir) / MANIFEST_NAME, manifest, sort_keys=True)


def read_manifest(ckpt_dir: Path) -> dict[str, Any]:
    """The manifest written by :func:`fetch_checkpoint`."""
    path = Path(ckpt_dir) / MANIFEST_NAME
    try:
        return read_json(path)
    except FileNotFoundError as exc:
        raise CheckpointNotFoundError(
            f"{path} missing: {ckpt_dir} is not a fetched checkpoint; run fetch-checkpoint first"
        ) from exc


def verify_checkpoint_dir(ckpt_dir: Path, manifest: dict[str, Any]) -> None:
    """Re-check every file listed in the manifest (size, md5, crc32c)."""
    for entry in manifest["objects"]:
        obj = RemoteObject(entry["name"], "", entry["size"], entry["md5Hash"], entry["crc32c"])
        problem = mismatch(Path(ckpt_dir) / obj.name, obj)
        if problem is not None:
            raise CheckpointIntegrityError(
                f"{ckpt_dir}/{obj.name} no longer matches its manifest ({problem}): delete "
                f"{ckpt_dir} and fetch again"
            )
