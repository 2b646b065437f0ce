"""Checkpoint sources (``base``, ``gs://``, local paths) and the filesystems that read them.

``gs://`` uses gcsfs with Google application default credentials when any are configured and
anonymous access otherwise (public buckets); one log line says which.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
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
PROBE_SECONDS = 3.0  # the first contact: one connection attempt, no retries
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")


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


def storage_endpoint() -> tuple[str, int]:
    """(host, port) gcsfs will talk to: STORAGE_EMULATOR_HOST (as gcsfs reads it), else GCS."""
    emulator = os.environ.get("STORAGE_EMULATOR_HOST", "")
    if emulator in {"", "default"}:
        return "storage.googleapis.com", 443
    url = urlparse(emulator if "://" in emulator else f"http://{emulator}")
    return url.hostname or "localhost", url.port or (443 if url.scheme == "https" else 80)


def probe_endpoint(timeout: float = PROBE_SECONDS) -> None:
    """One TCP connection to the storage endpoint, bounded by `timeout` (DNS included).

    gcsfs retries a failed request six times with backoff (~35 s, a traceback per attempt on
    the console); offline or with an unreachable endpoint this fails once, in seconds, with one
    line. Skipped behind a proxy (gcsfs goes through it; a direct connection may not).
    """
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return
    host, port = storage_endpoint()
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    if outcome and outcome[0] is None:
        return
    reason = (
        f"{type(outcome[0]).__name__}: {outcome[0]}" if outcome else f"no answer in {timeout:g} s"
    )
    raise CheckpointAccessError(
        f"cannot reach Google Cloud Storage at {host}:{port} ({reason}): check the network "
        "(offline? a proxy? STORAGE_EMULATOR_HOST?) and rerun"
    )


def _gcs_filesystem() -> Any:
    """gcsfs filesystem, pinned to object generations, without listing caches."""
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # before importing
    import gcsfs

    token, mode = gcs_access()  # local checks first: a bad key file is its own error
    probe_endpoint()
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
