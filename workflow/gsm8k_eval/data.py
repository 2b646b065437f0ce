"""Dataset stage: fetch GSM8K, pin it by checksum, and load examples.

`download_dataset` turns a source into one *canonical* jsonl file: one
``{"question": ..., "answer": ...}`` object per line, keys in that order, UTF-8 with
``ensure_ascii=False``, ``\\n`` line endings. The sha256 of those bytes is the dataset's
identity: it is written to the manifest and may be pinned with ``expected_sha256``.

Sources:
  ``hf:<repo>``              e.g. ``hf:openai/gsm8k``, via ``datasets.load_dataset`` at a pinned
                             ``revision`` (a commit sha), config ``config_name``, split ``split``.
  ``<path>.jsonl|.parquet``  a local file, also read through ``datasets`` (json/parquet builders).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsm8k_eval.io import atomic_write_bytes, sha256_file, write_json

HF_PREFIX = "hf:"
LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
FIELDS = ("question", "answer")
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")


class DatasetError(ValueError):
    """Malformed dataset input (names the file and line where it can)."""


class ChecksumMismatchError(DatasetError):
    """The canonical jsonl does not have the pinned sha256."""


@dataclass(frozen=True)
class Example:
    """One GSM8K test item; ``id`` is its index in the dataset file."""

    id: int
    question: str
    answer: str


# --------------------------------------------------------------------------- loading


def load_examples(path: Path, limit: int | None = None) -> list[Example]:
    """Read a jsonl of ``{"question", "answer"}`` objects; blank lines are skipped."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    path = Path(path)
    examples: list[Example] = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if limit is not None and len(examples) >= limit:
                break
            if not line.strip():
                continue
            row = _parse_line(line, path, lineno)
            examples.append(Example(len(examples), row["question"], row["answer"]))
    return examples


def _parse_line(line: str, path: Path, lineno: int) -> dict[str, str]:
    """Parse one jsonl line into question/answer strings, or raise naming file:line."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from exc
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
    try:
        return _row_fields(obj)
    except DatasetError as exc:
        raise DatasetError(f"{path}:{lineno}: {exc}") from None


def _row_fields(row: Mapping[str, Any]) -> dict[str, str]:
    """Return the question/answer of a row, checking both are present strings."""
    missing = [key for key in FIELDS if key not in row]
    if missing:
        raise DatasetError(f"missing field(s) {missing}; got {sorted(row)}")
    for key in FIELDS:
        if not isinstance(row[key], str):
            raise DatasetError(f"field {key!r} must be a string, got {type(row[key]).__name__}")
    return {key: row[key] for key in FIELDS}


# --------------------------------------------------------------------------- canonical form


def canonical_jsonl(rows: Iterable[Mapping[str, Any]]) -> bytes:
    """Serialise rows to the canonical jsonl bytes (question then answer, UTF-8, ``\\n``)."""
    lines = []
    for index, row in enumerate(rows):
        try:
            fields = _row_fields(row)
        except DatasetError as exc:
            raise DatasetError(f"row {index}: {exc}") from None
        lines.append(json.dumps(fields, ensure_ascii=False) + "\n")
    return "".join(lines).encode("utf-8")


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _Loaded:
    """Rows read from a source, plus what the manifest records about the source."""

    rows: list[dict[str, str]]
    kind: str  # "hf" | "local"
    revision: str | None
    config_name: str | None
    source_sha256: str | None


def _load_hf(repo_id: str, revision: str | None, split: str, config_name: str) -> _Loaded:
    """Load a Hub dataset at a pinned commit."""
    if not revision:
        raise ValueError(f"hf:{repo_id}: a pinned revision (commit sha) is required")
    import datasets

    dataset = datasets.load_dataset(repo_id, config_name, split=split, revision=revision)
    _check_cached_revision(dataset, repo_id, revision)
    return _Loaded(_dataset_rows(dataset, f"hf:{repo_id}"), "hf", revision, config_name, None)


def _check_cached_revision(dataset: Any, repo_id: str, revision: str) -> None:
    """Refuse a cached copy of another commit (offline ``datasets`` falls back to any cache)."""
    if not _COMMIT_SHA.fullmatch(revision):
        return
    files = [entry["filename"] for entry in getattr(dataset, "cache_files", [])]
    if files and not all(revision in Path(name).parts for name in files):
        raise DatasetError(
            f"hf:{repo_id}: pinned revision {revision} but datasets loaded {files[0]}"
        )


def _load_local(path: Path, split: str) -> _Loaded:
    """Load a local .jsonl/.parquet file through ``datasets`` into a throwaway cache."""
    builder = LOCAL_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise ValueError(
            f"unsupported dataset source {str(path)!r}: expected hf:<repo> or a local "
            f"file ending in {sorted(LOCAL_BUILDERS)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"dataset source file not found: {path}")
    import datasets

    with tempfile.TemporaryDirectory(prefix="gsm8k-ds-") as cache_dir:
        dataset = datasets.load_dataset(
            builder, data_files={split: str(path)}, split=split, cache_dir=cache_dir
        )
        rows = _dataset_rows(dataset, str(path))
    return _Loaded(rows, "local", None, None, sha256_file(path))


def _dataset_rows(dataset: Any, label: str) -> list[dict[str, str]]:
    """Project a ``datasets.Dataset`` onto question/answer rows, in order."""
    missing = [key for key in FIELDS if key not in dataset.column_names]
    if missing:
        raise DatasetError(f"{label}: missing column(s) {missing}; got {dataset.column_names}")
    columns = [list(dataset[key]) for key in FIELDS]
    rows = [dict(zip(FIELDS, values, strict=True)) for values in zip(*columns, strict=True)]
    for index, row in enumerate(rows):
        try:
            _row_fields(row)
        except DatasetError as exc:
            raise DatasetError(f"{label}: row {index}: {exc}") from None
    return rows


def _load_source(source: str, revision: str | None, split: str, config_name: str) -> _Loaded:
    """Dispatch on the source string."""
    if source.startswith(HF_PREFIX):
        repo_id = source[len(HF_PREFIX) :].strip("/")
        if not repo_id:
            raise ValueError(f"empty Hub repo in dataset source {source!r}")
        return _load_hf(repo_id, revision, split, config_name)
    if revision:
        warnings.warn(f"revision {revision!r} ignored for local source {source}", stacklevel=3)
    return _load_local(Path(source), split)


# --------------------------------------------------------------------------- stage


def download_dataset(
    source: str,
    out_path: Path,
    manifest_path: Path,
    *,
    revision: str | None,
    expected_sha256: str | None,
    split: str = "test",
    config_name: str = "main",
) -> None:
    """Write the canonical jsonl of ``source`` and its manifest; nothing on checksum mismatch."""
    loaded = _load_source(source, revision, split, config_name)
    payload = canonical_jsonl(loaded.rows)
    digest = sha256_bytes(payload)
    if expected_sha256 and digest != expected_sha256.strip().lower():
        raise ChecksumMismatchError(
            f"{source} (split={split}): canonical jsonl sha256 is {digest}, "
            f"expected {expected_sha256}; nothing written"
        )
    manifest = _manifest(source, split, loaded, rows=len(loaded.rows), sha256=digest)
    atomic_write_bytes(Path(out_path), payload)
    write_json(Path(manifest_path), manifest, sort_keys=True)


def _manifest(source: str, split: str, loaded: _Loaded, *, rows: int, sha256: str) -> dict:
    """Provenance record; deterministic (no timestamps) so reruns are byte-identical."""
    import datasets

    return {
        "source": source,
        "kind": loaded.kind,
        "revision": loaded.revision,
        "config_name": loaded.config_name,
        "split": split,
        "rows": rows,
        "sha256": sha256,
        "source_sha256": loaded.source_sha256,
        "format": "jsonl {question, answer}; utf-8; ensure_ascii=False; \\n",
        "datasets_version": datasets.__version__,
    }
