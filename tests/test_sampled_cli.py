"""`gsm8k-eval evaluate` + `score` + invariance on a sampled run (issue 24), tiny random model:
n samples per question as requests, graded one by one, identical at batch sizes 1 and 3."""

from __future__ import annotations

import json
import subprocess

import pytest
import test_evaluate
from test_evaluate import _evaluate_command, _run

from gsm8k_eval.invariance import check_invariance

pytestmark = pytest.mark.usefixtures("gsm8k_dir")  # fails, never skips, without ../shared
tiny_model_dir = test_evaluate.tiny_model_dir  # the session fixture (one tiny model)
SAMPLING = ("--temperature", "0.9", "--top-p", "0.95", "--num-samples", "2", "--limit", "3")


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sampled_evaluate_scores_every_sample_and_is_batch_invariant(tiny_model_dir, tmp_path):
    runs = {}
    for bs in (1, 3):
        out = tmp_path / f"bs{bs}"
        command = _evaluate_command(tiny_model_dir, out, *SAMPLING)
        command[command.index("--batch-size") + 1] = str(bs)
        _run(command)
        runs[bs] = out
    rows = _rows(runs[1] / "rollouts.jsonl")
    requests = [(i, j) for i in range(3) for j in (0, 1)]
    assert [(r["id"], r["sample_index"]) for r in rows] == requests
    assert {(r["temperature"], r["top_p"], r["sampling_seed"]) for r in rows} == {(0.9, 0.95, 0)}
    assert any(a["tokens"] != b["tokens"] for a, b in zip(rows[::2], rows[1::2], strict=True))
    summary = json.loads((runs[3] / "summary.json").read_text())
    assert (summary["total"], summary["temperature"], summary["num_samples"]) == (6, 0.9, 2)
    assert summary["sampled"]["k"] == [1, 2] and summary["fingerprint"]["options"]["top_p"]
    result = check_invariance(
        {bs: out / "rollouts.jsonl" for bs, out in runs.items()},
        tmp_path / "invariance.json",
        checkpoint="base",
        sampler="fixed",
    )
    assert result.invariant and result.num_examples == 6 and result.logits_compared == 6


def test_cli_refuses_samples_without_temperature(tiny_model_dir, tmp_path):
    command = _evaluate_command(tiny_model_dir, tmp_path / "out", "--num-samples", "2")
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and "temperature > 0" in result.stderr
    static = _evaluate_command(tiny_model_dir, tmp_path / "out", "--temperature", "1")
    result = subprocess.run([*static, "--sampler", "static"], capture_output=True, text=True)
    assert result.returncode == 2 and "static sampler" in result.stderr
