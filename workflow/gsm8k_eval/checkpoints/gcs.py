"""Checkpoint sources (``base``, ``gs://``, local paths) and the filesystems that read them.

``gs://`` uses gcsfs with Google application default credentials when any are configured and
anonymous access otherwise (public buckets); one log line says which.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from gsm8k_eval.checkpoints.manifest import (
    BASE_SOURCE,
    CheckpointAccessError,
    CheckpointError,
    CheckpointNotFoundError,
)

log = logging.getLogger(__name__)

READ_ONLY_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"


@dataclass(frozen=True)
class Source:
    """A parsed checkpoint source."""

    kind: str  # "base" | "gcs" | "local"
    root: str  # "bucket/prefix" for gcs, an absolute path for local

    @property
    def url(self) -> str:
        return f"gs://{self.root}" if self.kind == "gcs" else self.root


def parse_source(source: str) -> Source:
    """``base``, ``gs://bucket/.../actor``, ``file:///abs/path`` or a local path."""
    if source == BASE_SOURCE:
        return Source("base", "")
    if source.startswith("gs://"):
        root = source.removeprefix("gs://").strip("/")
        if not root:
            raise CheckpointNotFoundError(f"{source!r}: no bucket given; use gs://BUCKET/path")
        return Source("gcs", root)
    if source.startswith("file://"):
        return Source("local", str(Path(urlparse(source).path).resolve()))
    if "://" in source:
        raise CheckpointNotFoundError(
            f"unsupported checkpoint source {source!r}: use base, gs://, file:// or a local path"
        )
    return Source("local", str(Path(source).expanduser().resolve()))


def gcs_access() -> tuple[Any, str]:
    """(gcsfs ``token``, one-line description): credentials if configured, else anonymous.

    Configured means Google application default credentials are found (a key file in
    ``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth application-default login``, or a GCE/GKE
    metadata server). Without any, access is anonymous, which reads public buckets only. A
    ``GOOGLE_APPLICATION_CREDENTIALS`` that cannot be loaded is an error, never anonymous.
    """
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        credentials, _ = google.auth.default(scopes=[READ_ONLY_SCOPE])
    except DefaultCredentialsError as exc:
        key_file = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if key_file:
            raise CheckpointAccessError(
                f"no usable Google Cloud credentials ({type(exc).__name__}: {exc}): fix "
                f"GOOGLE_APPLICATION_CREDENTIALS={key_file}, unset it for anonymous access to "
                "a public bucket, or run `gcloud auth application-default login`"
            ) from exc
        return "anon", "anonymous (no Google Cloud credentials configured; public buckets only)"
    kind = f"{type(credentials).__module__}.{type(credentials).__name__}"
    return credentials, f"Google application default credentials ({kind})"


def _gcs_filesystem() -> Any:
    """gcsfs filesystem, pinned to object generations, without listing caches."""
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # before importing
    import gcsfs

    token, mode = gcs_access()
    log.info("gs:// access: %s", mode)
    try:
        return gcsfs.GCSFileSystem(
            token=token, version_aware=True, skip_instance_cache=True, use_listings_cache=False
        )
    except Exception as exc:  # google.auth raises several types for unusable credentials
        raise CheckpointAccessError(
            f"no usable Google Cloud credentials ({type(exc).__name__}: {exc}): run `gcloud auth "
            "application-default login` or set GOOGLE_APPLICATION_CREDENTIALS to a key file"
        ) from exc


def filesystem(src: Source) -> Any:
    """The fsspec filesystem for ``src`` (gcsfs for ``gs://``, else the local one)."""
    if src.kind == "gcs":
        return _gcs_filesystem()
    import fsspec

    return fsspec.filesystem("file")


def _http_code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    if isinstance(exc, OSError) and str(exc).startswith("Forbidden"):
        return 403
    return None


def translate_error(exc: Exception, src: Source, what: str) -> CheckpointError:
    """Map gcsfs/OS errors to one-line checkpoint errors."""
    code = _http_code(exc)
    if code in (401, 403):
        return CheckpointAccessError(
            f"access denied (HTTP {code}) while {what} {src.url}: check the path, then run "
            "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS to a "
            "key with storage.objects.list/get on the bucket"
        )
    if isinstance(exc, FileNotFoundError):
        bucket = src.root.split("/", 1)[0]
        hint = f"bucket gs://{bucket} does not exist" if src.kind == "gcs" else "no such path"
        return CheckpointNotFoundError(
            f"{what} {src.url}: {hint}; fix the checkpoint source in the config"
        )
    return CheckpointError(f"{what} {src.url} failed: {type(exc).__name__}: {exc}")
