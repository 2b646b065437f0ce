"""The shared GSM8K jsonl files: ../shared beside the repository (as in CI).

Tests that read them take the ``gsm8k_dir`` fixture (registered in conftest.py), which fails
-- never skips -- when the data is missing: a missing input must not look like a passing suite.
"""

from pathlib import Path

import pytest

GSM8K_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"
SPLITS = ("train.jsonl", "test.jsonl")


def require_gsm8k(directory: Path = GSM8K_DIR) -> Path:
    """``directory`` if it holds both splits; otherwise fail the calling test, loudly."""
    missing = [name for name in SPLITS if not (directory / name).is_file()]
    if missing:
        pytest.fail(
            f"shared GSM8K data missing: {', '.join(str(directory / m) for m in missing)}. "
            "Put openai/gsm8k main (train.jsonl, test.jsonl) in ../shared/data/gsm8k beside the "
            "repository, as CI does.",
            pytrace=False,
        )
    return directory


@pytest.fixture(scope="session")
def gsm8k_dir() -> Path:
    """The shared GSM8K directory (both splits present), or a failure naming what is missing."""
    return require_gsm8k()
