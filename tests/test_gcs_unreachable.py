"""Offline or unreachable GCS: one line, at once, without gcsfs's retries and tracebacks.

Only loopback addresses are contacted: a closed port on 127.0.0.1 stands for the endpoint.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from gsm8k_eval.checkpoints import gcs
from gsm8k_eval.checkpoints.fetch import fetch_checkpoint
from gsm8k_eval.checkpoints.manifest import CheckpointAccessError

NO_CREDENTIALS = {
    "GOOGLE_APPLICATION_CREDENTIALS": "",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def unreachable(monkeypatch):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    for name in gcs.PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**NO_CREDENTIALS, "STORAGE_EMULATOR_HOST": endpoint}.items():
        monkeypatch.setenv(name, value)
    return endpoint


def test_unreachable_endpoint_fails_once_before_gcsfs_retries(unreachable, monkeypatch, tmp_path):
    import gcsfs

    attempts = []
    real_connect = socket.create_connection
    monkeypatch.setattr(
        socket, "create_connection", lambda *a, **k: attempts.append(a) or real_connect(*a, **k)
    )

    def never(*args, **kwargs):
        raise AssertionError("gcsfs was used (and would retry) after a failed probe")

    monkeypatch.setattr(gcsfs, "GCSFileSystem", never)
    with pytest.raises(
        CheckpointAccessError, match=r"cannot reach Google Cloud Storage at 127\.0\.0\.1"
    ):
        fetch_checkpoint("gs://bucket/run/actor", tmp_path / "out")
    assert len(attempts) == 1  # one connection attempt, no retries


def test_storage_endpoint_follows_the_emulator_variable(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "localhost:4443")
    assert gcs.storage_endpoint() == ("localhost", 4443)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    assert gcs.storage_endpoint() == ("storage.googleapis.com", 443)


def test_cli_prints_one_line_and_no_traceback(unreachable, tmp_path):
    import os

    result = subprocess.run(
        [sys.executable, "-m", "gsm8k_eval", "fetch-checkpoint", "--source",
         "gs://bucket/run/actor", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, env=dict(os.environ),
    )  # fmt: skip
    assert result.returncode == 1
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("gsm8k-eval fetch-checkpoint: error: cannot reach Google Cloud")
    assert unreachable.removeprefix("http://") in lines[0]
