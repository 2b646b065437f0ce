"""Small file helpers: atomic writes, staging folders, hashing, JSON/JSONL reading and writing.

The one place for these facts: every JSON file the package writes goes through
:func:`write_json` (JSONL: :func:`write_jsonl`), every JSON(L) file it reads through
:func:`read_json`/:func:`read_jsonl` (:func:`iter_jsonl` when line numbers matter), and every
output folder is built in the sibling
:func:`staging_dir` and published by :func:`staged_dir`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write data to path via a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Atomically write UTF-8 text ('\\n' line endings as given)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: Path, chunk_size: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: Path, data: Any, *, sort_keys: bool = False) -> None:
    """Atomically write pretty JSON (2-space indent, UTF-8, trailing newline)."""
    text = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=sort_keys)
    atomic_write_text(path, text + "\n")


def write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    """Atomically write one compact JSON value per line (UTF-8, keys in the given order)."""
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def read_json(path: Path) -> Any:
    """The JSON value in a UTF-8 file."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line; a malformed line names the file and line."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from error


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every object of a JSON-lines file (blank lines skipped)."""
    return [row for _, row in iter_jsonl(path)]


def staging_dir(out_dir: Path) -> Path:
    """The sibling folder ``<parent>/.<name>.partial`` where ``out_dir`` is built."""
    out_dir = Path(out_dir)
    return out_dir.with_name(f".{out_dir.name}.partial")


@contextlib.contextmanager
def staged_dir(out_dir: Path, *, resume: bool = False) -> Iterator[Path]:
    """Yields :func:`staging_dir`; it replaces ``out_dir`` when the block succeeds.

    ``resume=False``: the staging folder starts empty and is removed if the block fails, so a
    failure leaves nothing. ``resume=True``: it keeps what an interrupted run left there (or the
    previous ``out_dir``, moved back) for the caller to re-verify and reuse, and survives a
    failure.
    """
    out_dir = Path(out_dir)
    staging = staging_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if not resume:
        shutil.rmtree(staging, ignore_errors=True)
    elif out_dir.exists():
        if staging.exists():
            shutil.rmtree(out_dir)
        else:
            out_dir.rename(staging)
    staging.mkdir(parents=True, exist_ok=True)
    try:
        yield staging
    except BaseException:
        if not resume:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    _replace_dir(staging, out_dir)


def _replace_dir(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``, removing a previous ``target`` only once ``new`` is there."""
    if not target.exists():
        new.rename(target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    target.rename(old / target.name)
    new.rename(target)
    shutil.rmtree(old)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
