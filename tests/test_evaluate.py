"""The evaluate stage: CLI contract, resumable shards (a real run killed midway), summary."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from shared_data import GSM8K_DIR

from gsm8k_eval.scoring import METHODS

TEST_JSONL = GSM8K_DIR / "test.jsonl"
pytestmark = pytest.mark.usefixtures("gsm8k_dir")  # fails, never skips, without ../shared


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from gsm8k_eval.models import fetch_model

    out = tmp_path_factory.mktemp("tiny-model") / "model"
    fetch_model("random:tiny", out)
    return out


def _evaluate_command(model_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gsm8k_eval",
        "evaluate",
        "--dataset",
        str(TEST_JSONL),
        "--model-dir",
        str(model_dir),
        "--checkpoint",
        "base",
        "--batch-size",
        "2",
        "--max-new-tokens",
        "24",
        "--max-prompt-length",
        "640",
        "--prompt-template",
        "chat",
        "--device",
        "cpu",
        "--output-dir",
        str(out),
        *extra,
    ]


def _run(command: list[str], primary_method: str | None = None) -> None:
    """Run an evaluate command, then grade its output folder as the `score` stage does."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    out = command[command.index("--output-dir") + 1]
    score = [sys.executable, "-m", "gsm8k_eval", "score", "--generations-dir", out]
    score += ["--primary-method", primary_method] if primary_method else []
    result = subprocess.run(score, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]


# `gsm8k-eval <argv[2:]>` that kills itself (SIGKILL, as an outside kill would) once it has
# written argv[1] shard files: every file write goes through io.atomic_write_text.
_KILLED_AFTER_SHARDS = """
import os, signal, sys
from pathlib import Path
from gsm8k_eval import io
after, written, real = int(sys.argv[1]), [], io.atomic_write_text
def write(path, text, *args, **kwargs):
    real(path, text, *args, **kwargs)
    if Path(path).name.startswith("shard-") and Path(path).suffix == ".jsonl":
        written.append(path)
        if len(written) == after:
            os.kill(os.getpid(), signal.SIGKILL)
io.atomic_write_text = write
from gsm8k_eval.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_killed_run_resumes_to_byte_identical_rollouts(tiny_model_dir, tmp_path):
    args = ("--limit", "16", "--shard-size", "2")
    reference = tmp_path / "uninterrupted"
    _run(_evaluate_command(tiny_model_dir, reference, *args))

    resumed = tmp_path / "resumed"
    # killed right after the second shard's rows are written (no race with the run's progress)
    command = _evaluate_command(tiny_model_dir, resumed, *args)[3:]  # after `python -m gsm8k_eval`
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_SHARDS, "2", *command],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
    shards = resumed / "shards"
    finished_before = sorted(p.name for p in shards.glob("shard-*.jsonl"))
    # shards stream through one engine call: any two may be the first complete
    assert len(finished_before) == 2, finished_before
    assert not (resumed / "rollouts.jsonl").exists()
    mtimes = {name: (shards / name).stat().st_mtime_ns for name in finished_before}

    _run(_evaluate_command(tiny_model_dir, resumed, *args))
    assert (resumed / "rollouts.jsonl").read_bytes() == (reference / "rollouts.jsonl").read_bytes()
    for name, mtime in mtimes.items():
        assert (shards / name).stat().st_mtime_ns == mtime, f"{name} was regenerated"
    summary = json.loads((resumed / "summary.json").read_text())
    assert summary["total"] == 16


def test_changed_options_discard_old_shards(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    _run(_evaluate_command(tiny_model_dir, out, "--limit", "2", "--shard-size", "2"))
    first = (out / "rollouts.jsonl").read_text()
    _run(
        _evaluate_command(
            tiny_model_dir, out, "--limit", "2", "--shard-size", "2", "--max-new-tokens", "3"
        )
    )
    rows = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    assert all(len(row["tokens"]) <= 3 for row in rows)
    assert (out / "rollouts.jsonl").read_text() != first


def test_summary_fields(tiny_model_dir, tmp_path):
    import jax
    import numpy as np

    out = tmp_path / "run"
    extra = ("--limit", "3", "--config-hash", "cafe01")
    auto = ("--decode-rows", "auto", "--prefill-rows", "auto")  # resolved for the CPU: 8 and 1
    _run(_evaluate_command(tiny_model_dir, out, *extra, *auto), primary_method="flexible-extract")
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    assert summary["total"] == 3 == len(rows)
    assert summary["generated_tokens"] == sum(len(row["tokens"]) for row in rows) > 0
    assert summary["correct"] == sum(row["correct"] for row in rows)
    assert summary["accuracy"] == summary["correct"] / 3
    low, high = summary["wilson_95"]
    assert 0 <= low <= summary["accuracy"] <= high <= 1
    assert (summary["decode_rows"], summary["prefill_rows"], summary["segment_steps"]) == (8, 1, 16)
    assert summary["fingerprint"]["options"]["decode_rows"] == "8"
    assert (summary["dtype"], summary["sampler"], summary["config_hash"]) == (
        "float32",
        "fixed",
        "cafe01",
    )
    assert summary["primary_method"] == "flexible-extract"
    assert summary["device"].startswith("cpu")
    assert summary["versions"]["jax"] == jax.__version__
    assert summary["versions"]["numpy"] == np.__version__
    assert summary["peak_memory_mb"] > 0
    assert summary["accuracy_by_method"] == {
        method: sum(row["correct_by_method"][method] for row in rows) / 3 for method in METHODS
    }
    assert summary["accuracy_by_method"]["flexible-extract"] == summary["accuracy"]
    for row in rows:
        assert row["extracted_answer"] == row["extracted"]["flexible-extract"]
        assert row["correct"] == row["correct_by_method"]["flexible-extract"]
    # both rates are over the same time: their ratio is tokens per example
    assert summary["examples_per_second"] > 0 and summary["tokens_per_second"] > 0
    ratio = summary["tokens_per_second"] / summary["examples_per_second"]
    assert ratio == pytest.approx(summary["generated_tokens"] / 3, rel=1e-9)


def test_bad_dataset_is_a_one_line_error(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\nnot json\n')
    command = _evaluate_command(tiny_model_dir, tmp_path / "out")
    command[command.index(str(TEST_JSONL))] = str(bad)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    # one line that names the file and the bad line number
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"gsm8k-eval evaluate: error: {bad}:2: invalid JSON"), result.stderr


def test_one_decode_row_is_refused_by_the_cli(tiny_model_dir, tmp_path):
    command = [*_evaluate_command(tiny_model_dir, tmp_path / "out"), "--decode-rows", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    assert "--decode-rows: must be at least 2" in result.stderr
    assert not (tmp_path / "out").exists()


def test_deprecated_primary_method_still_gives_graded_output(tiny_model_dir, tmp_path):
    """Old scripts ran `evaluate --primary-method M` and read rollouts.jsonl: they still work,
    with a deprecation message, through the score stage in its own process."""
    out = tmp_path / "old"
    command = _evaluate_command(tiny_model_dir, out, "--limit", "2")
    result = subprocess.run(
        [*command, "--primary-method", "flexible-extract"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "--primary-method is deprecated" in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["primary_method"], summary["total"]) == ("flexible-extract", 2)
    assert len((out / "rollouts.jsonl").read_text().splitlines()) == 2
