"""Report tests for optional and new inputs: the few-shot count, compile time, slot
utilisation, XLA flags, scoring methods added later, and a standalone `evaluate` run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from report_expected import (
    bullets,
    expected_for,
    section,
    table_rows,
    tables,
    unexplained_numbers,
)
from report_fixture import (
    N,
    render,
    rollouts_for,
    schema_run_name,
    write_tree,
)
from shared_data import GSM8K_DIR

from gsm8k_eval import cli, codegraph
from gsm8k_eval.report import ReportDataError

REPO = Path(__file__).resolve().parents[1]


def test_few_shot_count_only_for_fewshot_runs(tmp_path: Path) -> None:
    root = tmp_path / "results"
    runs = {(c, 1): rollouts_for(c, 1) for c in ("base", "lora_final")}
    write_tree(root, runs, settings={"prompt_template": "fewshot", "num_shots": 3})
    md = render(root)
    settings = dict(map(tuple, table_rows(md, "setting")))
    assert (settings["prompt template"], settings["few-shot examples"]) == ("fewshot", "3")
    assert unexplained_numbers(md, expected_for(root)) == []
    summary_path = root / "eval" / "lora_final" / "fixed" / "bs1" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary_path.write_text(json.dumps(dict(summary, prompt_template="chat")))
    settings = dict(map(tuple, table_rows(render(root), "setting")))
    assert settings["prompt template"] == "fewshot (base/fixed/bs1); chat (lora_final/fixed/bs1)"
    assert settings["few-shot examples"] == "3 (base/fixed/bs1); n/a (lora_final/fixed/bs1)"


# ---------------------------------------------------------------- optional summary fields


def test_optional_throughput_and_provenance_fields(tmp_path: Path) -> None:
    root = tmp_path / "results"
    runs = {(c, bs): rollouts_for(c, bs) for c in ("base", "lora_final") for bs in (1, 4)}
    flags = "--xla_gpu_deterministic_ops=true --xla_gpu_autotune_level=0"
    extra = {"xla_flags": flags, "determinism": {"XLA_FLAGS": flags, "jax_threefry": True}}
    write_tree(root, runs, settings={"compile_seconds": 12.345, **extra})
    for (ckpt, bs), utilization in {("base", 4): 0.8771, ("lora_final", 4): 0.5}.items():
        path = root / "eval" / ckpt / "fixed" / f"bs{bs}" / "summary.json"
        path.write_text(
            json.dumps(dict(json.loads(path.read_text()), slot_utilization=utilization))
        )
    path = root / "eval" / "lora_final" / "fixed" / "bs1" / "summary.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), compile_seconds=None)))
    md = render(root)
    exp = expected_for(root)
    assert exp.throughput_header[-2:] == ["compile time (s)", "slot utilisation"]
    assert [rows for h, rows in tables(md) if h == exp.throughput_header] == [exp.throughput]
    assert [row[-2:] for row in exp.throughput] == [
        ["12.3", "n/a"],
        ["12.3", "87.7%"],
        ["n/a", "n/a"],
        ["12.3", "50.0%"],
    ]
    throughput = " ".join(section(md, "## Throughput").split())
    assert "it is not part of the examples/s and tokens/s figures." in throughput
    provenance = dict(map(tuple, table_rows(md, "item")))
    assert provenance["XLA flags"] == flags
    assert provenance["determinism settings"] == f"XLA_FLAGS={flags}, jax_threefry=True"
    assert unexplained_numbers(md, exp) == []


def test_methods_follow_the_summaries(tmp_path: Path) -> None:
    root = tmp_path / "results"
    rows = rollouts_for("base", 1)
    for r in rows:  # a scoring method added after this report was written
        r["correct_by_method"]["strict-match-numeric"] = r["correct"] or r["id"] % 7 == 0
    write_tree(root, {("base", 1): rows})
    path = root / "eval" / "base" / "fixed" / "bs1" / "summary.json"
    methods = ("flexible", "strict", "strict-match-numeric")
    by_method = {m: sum(r["correct_by_method"][m] for r in rows) / N for m in methods}
    by_method["summary-only"] = 0.375  # in the summary, not in the rollouts
    path.write_text(json.dumps(dict(json.loads(path.read_text()), accuracy_by_method=by_method)))
    md = render(root)
    exp = expected_for(root)
    assert exp.methods_header[3:] == [
        "flexible",
        "strict (primary)",
        "strict-match-numeric",
        "summary-only",
    ]
    assert [rows for h, rows in tables(md) if h == exp.methods_header] == [exp.methods]
    assert exp.methods[0][-1] == "37.5%"
    assert unexplained_numbers(md, exp) == []


def test_method_accuracy_disagreeing_with_rollouts_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_tree(root, {("base", 1): rollouts_for("base", 1)})
    path = root / "eval" / "base" / "fixed" / "bs1" / "summary.json"
    path.write_text(
        json.dumps(dict(json.loads(path.read_text()), accuracy_by_method={"strict": 1}))
    )
    with pytest.raises(ReportDataError, match=r"accuracy_by_method\['strict'\]"):
        render(root)


# ---------------------------------------------------------------- standalone use, pipeline inputs


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gsm8k_eval.models import fetch_model

    out = tmp_path_factory.mktemp("tiny-model") / "model"
    fetch_model("random:tiny", out)
    return out


def test_standalone_evaluate_then_render_report(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gsm8k-eval evaluate` and `score` (no config, no model source) then `render-report`."""
    run_dir = tmp_path / "results" / "eval" / "base" / "fixed" / "bs2"
    evaluate = [sys.executable, "-m", "gsm8k_eval", "evaluate", "--model-dir", str(tiny_model_dir)]
    evaluate += ["--dataset", str(GSM8K_DIR / "test.jsonl"), "--checkpoint", "base"]
    evaluate += ["--batch-size", "2", "--max-new-tokens", "4", "--max-prompt-length", "640"]
    evaluate += ["--prompt-template", "chat", "--device", "cpu", "--limit", "2"]
    result = subprocess.run(
        [*evaluate, "--output-dir", str(run_dir)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    score = [sys.executable, "-m", "gsm8k_eval", "score", "--generations-dir", str(run_dir)]
    result = subprocess.run(score, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["model_source"] is None and summary["prompt_template"] == "chat"
    monkeypatch.chdir(tmp_path)
    assert cli.main(["render-report", "--results-dir", "results", "--out", "out/r.md"]) == 0
    md = (tmp_path / "out" / "r.md").read_text()
    assert md.splitlines()[0] == f"# GSM8K evaluation report: {schema_run_name()}"
    assert "None" not in md and "few-shot" not in md
    assert table_rows(md, "model")[0][:4] == ["n/a", "base", "fixed", "2"]
    steps = [json.loads(line)["stop_reason"] for line in (run_dir / "rollouts.jsonl").open()]
    limit = [b for b in bullets(md, "## Recommendations") if "step limit" in b]
    expected = (
        f"{steps.count('max_steps')} of 2 generations of base (fixed sampler) at batch size 2 "
        "stopped"
    )
    assert [b.startswith(expected) for b in limit] == ([True] if "max_steps" in steps else [])


def test_every_report_module_is_in_the_report_stage_code() -> None:
    """Editing any report module re-renders the report (its code digest, from the imports)."""
    modules = set((REPO / "workflow" / "gsm8k_eval" / "report").glob("*.py"))
    assert len(modules) >= 5
    assert modules <= set(codegraph.stage_files("render-report"))
