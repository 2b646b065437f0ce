"""End to end: the whole Snakemake DAG on a tiny random-weight Gemma3, then a rerun that does
nothing, then a config change that reruns only what depends on it."""

from __future__ import annotations

import json

import pytest
from pipeline_helpers import run_root, run_snakemake, tiny_config, write_config


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pipeline")
    config_path = write_config(workdir, tiny_config())
    result = run_snakemake(workdir, config_path)
    return workdir, config_path, result


def test_dag_produces_every_output(pipeline_run):
    workdir, _, _ = pipeline_run
    results = run_root(workdir)
    assert (results / "data" / "gsm8k_test.jsonl").exists()
    assert json.loads((results / "data" / "gsm8k_test.manifest.json").read_text())["sha256"]
    assert (results / "model" / "model.safetensors").exists()
    assert json.loads((results / "checkpoints" / "base" / "manifest.json").read_text())
    for batch_size in (1, 4):
        eval_dir = results / "eval" / "base" / f"bs{batch_size}"
        rows = [json.loads(line) for line in (eval_dir / "rollouts.jsonl").read_text().splitlines()]
        assert [row["id"] for row in rows] == list(range(6))
        for field in (
            "id",
            "question",
            "prompt",
            "response",
            "tokens",
            "extracted_answer",
            "gold",
            "correct",
        ):
            assert all(field in row for row in rows), field
        summary = json.loads((eval_dir / "summary.json").read_text())
        assert summary["total"] == 6
        assert summary["batch_size"] == batch_size
        assert summary["correct"] == sum(row["correct"] for row in rows)
        for field in (
            "accuracy",
            "checkpoint",
            "wall_seconds",
            "generated_tokens",
            "tokens_per_second",
        ):
            assert field in summary, field
    assert (results / "invariance" / "base.json").exists()
    assert (results / "report" / "gsm8k_eval_report.md").read_text().strip()
    assert sorted(p.name for p in (results / "logs").rglob("*.log"))


def test_batch_sizes_give_identical_tokens(pipeline_run):
    workdir, _, _ = pipeline_run

    def tokens(bs: int) -> list[list[int]]:
        path = run_root(workdir) / "eval" / "base" / f"bs{bs}" / "rollouts.jsonl"
        return [json.loads(line)["tokens"] for line in path.read_text().splitlines()]

    assert tokens(1) == tokens(4)
    assert any(tokens(1)), "the tiny model generated nothing at all"


def test_rerun_does_nothing(pipeline_run):
    workdir, config_path, _ = pipeline_run
    result = run_snakemake(workdir, config_path, "-n")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_changed_parameter_reruns_dependent_jobs_only(pipeline_run):
    workdir, _, _ = pipeline_run
    changed = write_config(workdir, tiny_config(scoring={"primary": "flexible-extract"}))
    result = run_snakemake(workdir, changed, "-n")
    out = result.stdout + result.stderr
    assert "evaluate" in out and "render_report" in out
    assert "fetch_model" not in out and "download_dataset" not in out


def test_snakemake_html_report(pipeline_run):
    workdir, config_path, _ = pipeline_run
    html = workdir / "report.html"
    run_snakemake(workdir, config_path, "--report", str(html))
    text = html.read_text(errors="replace")
    assert "gsm8k_eval_report.md" in text
    assert "accuracy.png" in text
