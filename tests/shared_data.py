"""Where the shared GSM8K jsonl files live: ../shared beside the repository (as in CI)."""

from pathlib import Path

GSM8K_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"
