"""Fetch one tunix LoRA checkpoint step (GCS or local), verified, resumable and atomic.

Objects are listed with their size, md5/crc32c and GCS generation, downloaded (pinned to that
generation) into the sibling staging folder ``.<out>.partial``, verified, and the folder is
renamed to ``out_dir`` once everything is verified and ``manifest.json`` is written. A rerun
after an interruption re-verifies staged files and downloads only what is missing or bad.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fsspec.callbacks import Callback
from tqdm import tqdm

from gsm8k_eval.checkpoints.gcs import Source, filesystem, parse_source, translate_error
from gsm8k_eval.checkpoints.manifest import (
    BASE_SOURCE,
    MANIFEST_FORMAT,
    SKIPPED_ITEMS,
    STEP_METADATA,
    CheckpointIntegrityError,
    CheckpointNotFoundError,
    RemoteObject,
    file_digests,
    mismatch,
    write_manifest,
)
from gsm8k_eval.checkpoints.steps import Selection, select_step
from gsm8k_eval.io import read_json, staged_dir

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # downloads per object before a checksum mismatch is reported


@dataclass
class FetchStats:
    """Counts recorded in the manifest's ``fetch_stats``."""

    downloaded: int = 0
    reused: int = 0
    retried: int = 0
    bytes_downloaded: int = 0


def _list_objects(fs: Any, src: Source) -> list[RemoteObject]:
    """Every file under the source root, with size, checksums and generation."""
    try:
        found = fs.find(src.root, detail=True)
    except Exception as exc:
        raise translate_error(exc, src, "listing") from exc
    if not found:
        raise CheckpointNotFoundError(
            f"no objects under {src.url}: check the checkpoint source path in the config"
        )
    return [_remote_object(src, path, info) for path, info in sorted(found.items())]


def _remote_object(src: Source, path: str, info: dict[str, Any]) -> RemoteObject:
    name = path[len(src.root) :].lstrip("/")
    if src.kind == "gcs":
        generation = info.get("generation")
        return RemoteObject(
            name,
            path,
            int(info["size"]),
            info.get("md5Hash"),
            info.get("crc32c"),
            str(generation) if generation else None,
        )
    md5, crc = file_digests(Path(path))
    return RemoteObject(name, path, int(info["size"]), md5, crc)


class _BarCallback(Callback):
    """fsspec callback that forwards byte progress of one download to a shared tqdm bar."""

    def __init__(self, bar: tqdm):
        super().__init__()
        self.bar = bar
        self.reported = 0

    def call(self, *args: Any, **kwargs: Any) -> None:
        if self.value > self.reported:
            self.bar.update(self.value - self.reported)
            self.reported = self.value


def _download_object(fs: Any, obj: RemoteObject, dest: Path, callback: Any) -> None:
    """Download one object (pinned to its listed generation) into ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    remote = f"{obj.path}#{obj.generation}" if obj.generation else obj.path
    fs.get_file(remote, str(dest), callback=callback)


def _fetch_one(
    fs: Any, obj: RemoteObject, staging: Path, bar: tqdm, stats: FetchStats, src: Source
) -> None:
    """Make ``staging/obj.name`` a verified copy of ``obj``, downloading only if needed."""
    final = staging / obj.name
    problem = mismatch(final, obj)
    if problem is None:
        stats.reused += 1
        bar.update(obj.size)
        return
    if problem != "missing":
        log.warning("refetching %s (staged copy: %s)", obj.name, problem)
    part = final.with_name(final.name + ".part")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        callback = _BarCallback(bar)
        try:
            _download_object(fs, obj, part, callback)
        except FileNotFoundError as exc:
            raise CheckpointIntegrityError(
                f"{src.url}/{obj.name} (generation {obj.generation}) changed or vanished on the "
                "server after listing: rerun the fetch once the trainer has finished writing"
            ) from exc
        except Exception as exc:
            raise translate_error(exc, src, f"downloading {obj.name} from") from exc
        bar.update(max(obj.size - callback.reported, 0))
        stats.bytes_downloaded += part.stat().st_size
        problem = mismatch(part, obj)
        if problem is None:
            os.replace(part, final)
            stats.downloaded += 1
            return
        log.warning(
            "%s failed verification (%s), attempt %d/%d", obj.name, problem, attempt, MAX_ATTEMPTS
        )
        stats.retried += 1
    part.unlink(missing_ok=True)
    raise CheckpointIntegrityError(
        f"{src.url}/{obj.name} failed verification {MAX_ATTEMPTS} times ({problem}): the "
        "object or its metadata is corrupt; re-upload it or pick another step"
    )


def _prune(staging: Path, keep: set[str]) -> None:
    """Delete staged files that are not part of this checkpoint (old steps, ``*.part``)."""
    for path in sorted(staging.rglob("*"), reverse=True):
        rel = path.relative_to(staging).as_posix()
        if path.is_file() and rel not in keep:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _step_metadata(staging: Path, selection: Selection) -> dict[str, Any] | None:
    try:
        return read_json(staging / selection.step_dir / STEP_METADATA)
    except (OSError, ValueError):
        return None


def _manifest(
    src: Source, source: str, selection: Selection, stats: FetchStats, staging: Path
) -> dict[str, Any]:
    meta = _step_metadata(staging, selection) or {}
    objects = [
        {
            "name": o.name,
            "size": o.size,
            "generation": o.generation,
            "md5Hash": o.md5,
            "crc32c": o.crc32c,
        }
        for o in selection.objects
    ]
    step_url = src.url.rstrip("/")
    if not selection.root_is_step:
        step_url = f"{step_url}/{selection.step_dir}"
    return {
        "format": MANIFEST_FORMAT,
        "source": source,
        "kind": src.kind,
        "lora": True,
        "bucket_path": step_url if src.kind == "gcs" else None,
        "path": step_url,
        "step": selection.step,
        "checkpoint_dir": selection.step_dir,
        "available_steps": selection.available_steps,
        "incomplete_steps_skipped": selection.skipped_steps,
        "skipped_items": list(SKIPPED_ITEMS),
        "objects": objects,
        "total_bytes": sum(o.size for o in selection.objects),
        "custom_metadata": meta.get("custom_metadata"),
        "fetched_at": _now(),
        "fetch_stats": asdict(stats),
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _fetch_base(out_dir: Path) -> Path:
    manifest = {
        "format": MANIFEST_FORMAT,
        "source": BASE_SOURCE,
        "kind": "base",
        "lora": False,
        "step": None,
        "objects": [],
        "fetched_at": _now(),
    }
    with staged_dir(out_dir) as staging:
        write_manifest(staging, manifest)
    return out_dir


def fetch_checkpoint(source: str, out_dir: Path, step: int | None = None) -> Path:
    """Fetch, verify and record one checkpoint step into ``out_dir``; returns ``out_dir``.

    ``source``: ``base`` (manifest only), ``gs://bucket/.../actor``, ``file://...`` or a path
    (``<run>/actor`` or one ``<step>`` folder). Picks ``step`` or the latest complete step,
    downloads everything in it except ``optimizer_state/``, verifies each object's size and
    md5/crc32c, and renames the staging dir to ``out_dir`` once all objects are verified. A rerun
    after an interruption re-verifies staged files and downloads only what is missing or bad.
    """
    out_dir = Path(out_dir)
    src = parse_source(source)
    if src.kind == "base":
        return _fetch_base(out_dir)
    fs = filesystem(src)
    selection = select_step(_list_objects(fs, src), src, step)
    stats = FetchStats()
    with staged_dir(out_dir, resume=True) as staging:
        total = sum(o.size for o in selection.objects)
        desc = f"fetch step {selection.step}"
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc, mininterval=1.0) as bar:
            for obj in selection.objects:
                _fetch_one(fs, obj, staging, bar, stats, src)
        _prune(staging, {o.name for o in selection.objects})
        write_manifest(staging, _manifest(src, source, selection, stats, staging))
    log.info(
        "checkpoint %s step %s: %d downloaded, %d reused, %d retried -> %s",
        *(src.url, selection.step, stats.downloaded, stats.reused, stats.retried, out_dir),
    )
    return out_dir
