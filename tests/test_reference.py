"""The PyTorch reference stage (issue 13): config keys, the rule in the DAG only when enabled,
the CLI's errors, the rollouts it writes (the evaluate stage's schema, same prompts), and the
report's JAX vs PyTorch section computed from planted rollouts."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
from pipeline_helpers import run_snakemake, tiny_config, write_config
from report_fixture import base_correct, diverge, rollouts_for, write_tree
from test_cli import _error_line, _gsm8k_eval

from gsm8k_eval import cli, schema
from gsm8k_eval.config import ConfigError, ReferenceSpec, load_config
from gsm8k_eval.reference import INSTALL_HINT, ReferenceOptions
from gsm8k_eval.report import DEFAULT_TEMPLATE_DIR, ReportInputs, render_report
from gsm8k_eval.report.inputs import load_run
from gsm8k_eval.report.reference import compare_frameworks, framework_comparisons

REFERENCE_KEYS = {"enabled": False, "dtype": "float32", "batch_size": 1, "device": "auto"}


# ---------------------------------------------------------------- config


def test_reference_defaults_are_the_schemas_and_off():
    assert schema.default("reference") == REFERENCE_KEYS
    cfg = load_config({"checkpoints": [{"name": "base"}]})
    assert cfg.reference == ReferenceSpec(**REFERENCE_KEYS)
    options = ReferenceOptions(Path("d"), Path("m"), Path("o"))
    assert (options.dtype, options.batch_size, options.device) == (
        schema.default("reference.dtype"),
        schema.default("reference.batch_size"),
        schema.default("reference.device"),
    )
    assert options.max_generation_steps == schema.default("sampling.max_generation_steps")


def test_reference_without_a_base_checkpoint_is_a_config_error():
    config = {
        "checkpoints": [{"name": "ppo", "source": "/ckpt/ppo"}],
        "lora": {"alpha": 16.0},
        "reference": {"enabled": True},
    }
    with pytest.raises(ConfigError, match=r"reference\.enabled: .*base model only"):
        load_config(config)


def test_the_readme_command_line_override_enables_it():
    """`snakemake --config reference='{enabled: true}'` (README) gives a typed mapping."""
    config = schema.coerce({"reference": "{enabled: true, batch_size: '4'}"})
    assert config == {"reference": {"enabled": True, "batch_size": 4}}
    assert load_config({"reference": "{enabled: true}"}).reference.enabled is True


def test_unknown_reference_key_is_rejected():
    with pytest.raises(ConfigError, match="dtyp"):
        load_config({"reference": {"dtyp": "float32"}})


# ---------------------------------------------------------------- the DAG


def _dry_run(tmp_path: Path, **overrides) -> str:
    config = write_config(tmp_path, tiny_config(**overrides))
    result = run_snakemake(tmp_path, config, "--dry-run", "--printshellcmds", timeout=300)
    return result.stdout + result.stderr


def test_reference_rule_runs_only_when_enabled(tmp_path):
    off = _dry_run(tmp_path)
    assert "gsm8k_eval reference" not in off
    assert "--reference " in off  # the report rule's flag, with no files
    assert "results/tiny/reference/" not in off
    on = _dry_run(tmp_path, reference={"enabled": True, "dtype": "bfloat16"})
    command = next(line for line in on.splitlines() if "gsm8k_eval reference" in line)
    assert "--checkpoint base" in command and "--dtype bfloat16" in command
    assert "--max-new-tokens 12" in command and "--prompt-template chat" in command
    assert "--output-dir results/tiny/reference/base" in command
    report = next(line for line in on.splitlines() if "gsm8k_eval render-report" in line)
    assert "--reference results/tiny/reference/base/summary.json" in report


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def reference_args(tmp_path, gsm8k_dir) -> list[str]:
    model = tmp_path / "model"
    model.mkdir()
    return [
        "reference",
        "--dataset",
        str(gsm8k_dir / "test.jsonl"),
        "--model-dir",
        str(model),
        "--prompt-template",
        "chat",
        "--output-dir",
        str(tmp_path / "out"),
    ]


def test_a_lora_checkpoint_is_refused_with_the_reason(reference_args):
    result = _gsm8k_eval(*reference_args, "--checkpoint", "results/x/checkpoints/ppo")
    assert result.returncode == 2
    line = _error_line(result)
    assert "--checkpoint results/x/checkpoints/ppo" in line
    assert "base model only" in line and "LoRA" in line


def test_missing_inputs_name_the_flag(reference_args, tmp_path):
    args = [*reference_args, "--model-dir", str(tmp_path / "nope")]
    line = _error_line(_gsm8k_eval(*args))
    assert "--model-dir" in line and "gsm8k-eval fetch-model" in line
    args = [*reference_args, "--prompt-template", "fewshot"]
    assert "--fewshot-data" in _error_line(_gsm8k_eval(*args))
    assert "--dtype" in _error_line(_gsm8k_eval(*reference_args, "--dtype", "float16"))


def test_missing_torch_says_how_to_install_it(reference_args, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    assert cli.main(reference_args) == 1
    err = capsys.readouterr().err
    assert "gsm8k-eval reference: error: the PyTorch reference needs torch" in err
    assert INSTALL_HINT in err


# ---------------------------------------------------------------- the stage on the tiny model


def test_reference_rollouts_have_the_evaluate_schema_and_prompts(tmp_path, gsm8k_dir):
    """Tiny random model, float32: the same rows (fields, prompts, prompt lengths, grading)
    as the JAX evaluation, and here the same tokens."""
    model = tmp_path / "model"
    fetched = _gsm8k_eval("fetch-model", "--source", "random:tiny", "--out", str(model))
    assert fetched.returncode == 0, fetched.stderr[-2000:]
    common = ["--dataset", str(gsm8k_dir / "test.jsonl"), "--model-dir", str(model)]
    common += ["--limit", "2", "--max-new-tokens", "8", "--max-prompt-length", "640"]
    common += ["--prompt-template", "chat"]
    jax = _gsm8k_eval("evaluate", *common, "--batch-size", "1", "--out", str(tmp_path / "jax"))
    assert jax.returncode == 0, jax.stderr[-2000:]
    ref = _gsm8k_eval("reference", *common, "--device", "cpu", "--out", str(tmp_path / "pt"))
    assert ref.returncode == 0, ref.stderr[-2000:]
    for name in ("jax", "pt"):  # the score stage grades both with one function
        graded = _gsm8k_eval("score", "--generations-dir", str(tmp_path / name))
        assert graded.returncode == 0, graded.stderr[-2000:]
    rows = {name: _rows(tmp_path / name / "rollouts.jsonl") for name in ("jax", "pt")}
    assert len(rows["pt"]) == 2
    for a, b in zip(rows["jax"], rows["pt"], strict=True):
        assert a.keys() == b.keys()
        for key in ("id", "prompt", "prompt_tokens", "gold", "checkpoint", "tokens"):
            assert a[key] == b[key], key
        assert b["num_steps"] == len(b["tokens"]) and len(b["token_logits"]) == len(b["tokens"])
    summary = json.loads((tmp_path / "pt" / "summary.json").read_text())
    assert summary["framework"] == "pytorch" and summary["total"] == 2
    assert summary["versions"]["torch"].startswith("2.13.0")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------- the report section

# Planted PyTorch divergences from the base bs1 rollouts: id -> (first differing index, correct)
PLANTED = {2: (0, False), 5: (5, True), 9: (12, True), 12: (20, True)}


def _reference_rows() -> list[dict]:
    rows = rollouts_for("base", 1)
    for i, (k, correct) in PLANTED.items():
        rows[i] = diverge(rows[i], k, "# a different continuation", correct)
    return rows


def _write_reference(root: Path, rows: list[dict], dtype: str = "float32") -> Path:
    out = root / "reference" / "base"
    out.mkdir(parents=True)
    (out / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {"checkpoint": "base", "batch_size": 1, "correct": sum(r["correct"] for r in rows)}
    summary |= {"total": len(rows), "dtype": dtype, "framework": "pytorch"}
    (out / "summary.json").write_text(json.dumps(summary))
    return out / "summary.json"


@pytest.fixture
def results(tmp_path) -> Path:
    root = tmp_path / "results"
    write_tree(root, {("base", 1): rollouts_for("base", 1), ("base", 4): rollouts_for("base", 4)})
    return root


def test_framework_comparison_numbers(results):
    summary = _write_reference(results, _reference_rows())
    runs = [load_run(p) for p in sorted((results / "eval").rglob("summary.json"))]
    (c,) = framework_comparisons(runs, [summary])
    assert c.jax_run.batch_size == 1  # the smallest fixed-sampler batch size
    assert (c.num_examples, c.identical_tokens, c.diverging) == (20, 16, 4)
    assert c.first_divergences == (0, 5, 12, 20)
    assert [b.count for b in c.bins] == [1, 1, 2, 0, 0, 0]
    jax_correct = sum(base_correct(i) for i in range(20))
    assert (c.jax_correct, c.torch_correct) == (jax_correct, jax_correct + 1)
    assert (c.jax_only_correct, c.torch_only_correct) == (1, 2)
    assert c.p_value == 1.0  # exact two-sided binomial, 1 vs 2 discordant pairs
    assert c.delta == pytest.approx(1 / 20)
    assert c.median_first_divergence == 8.5
    assert c.worst.id == 2 and c.worst.first_token_index == 0  # the correctness flip first


def test_identical_frameworks_have_no_divergence(results):
    summary = _write_reference(results, rollouts_for("base", 1))
    fixed = results / "eval/base/fixed"
    c = compare_frameworks(load_run(summary), load_run(fixed / "bs4/summary.json"))
    # bs4 carries two planted batch-size divergences of its own: the comparison sees them
    assert (c.identical_tokens, c.first_divergences) == (18, (10, 25))
    c = compare_frameworks(load_run(summary), load_run(fixed / "bs1/summary.json"))
    assert (c.identical_tokens, c.diverging, c.p_value, c.worst) == (20, 0, 1.0, None)


def _render(results: Path, reference: list[Path]) -> str:
    inputs = ReportInputs(
        eval_dirs=[results / "eval"],
        invariance_paths=sorted((results / "invariance").glob("*.json")),
        checkpoint_manifests=[],
        dataset_manifest=None,
        config={},
        command="snakemake",
        out_path=results / "report" / "report.md",
        figures_dir=results / "report" / "figures",
        template_dir=DEFAULT_TEMPLATE_DIR,
        reference_summaries=reference,
    )
    return render_report(inputs).read_text()


def test_report_section_appears_only_with_a_reference(results):
    assert "JAX vs PyTorch" not in _render(results, [])
    summary = _write_reference(results, _reference_rows(), dtype="bfloat16")
    text = _render(results, [summary])
    section = text.split("## JAX vs PyTorch", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in section.splitlines() if line.startswith("| base |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells == [
        "base",
        "bfloat16, batch size 1",
        "bfloat16, batch size 1",
        "20",
        "16 (80.0%)",
        "65.0%",
        "70.0%",
        "+5.0 pp",
        "1 / 2",
        "1.000",
    ]
    assert "4 of 20 examples diverge" in section and "median 8.5" in section
    assert "| 8–31 | 2 |" in section and "| 512+ | 0 |" in section
    assert "example 2" in section and "with a correctness flip" in section
    assert "reference rollouts" in text  # listed under Output files


def test_report_without_a_fixed_sampler_run_says_so(tmp_path):
    root = tmp_path / "results"
    tunix = {"sampler": "tunix"}
    write_tree(root, {("base", 1): rollouts_for("base", 1)}, settings=tunix)
    summary = _write_reference(root, rollouts_for("base", 1))
    text = _render(root, [summary])
    assert "no fixed-sampler evaluation to compare" in text


def test_reference_spec_has_exactly_the_schema_keys():
    fields = {f.name for f in dataclasses.fields(ReferenceSpec)}
    assert fields == set(REFERENCE_KEYS)


def test_the_reference_stage_code_is_derived_from_its_imports():
    """Its module is out of the evaluate digest and in the reference rule's; grading is in
    neither (the score stage's); the prompt-length check (sampling.types) is in both."""
    from gsm8k_eval import codegraph

    reference, evaluate = codegraph.stage_modules("reference"), codegraph.stage_modules("evaluate")
    assert "gsm8k_eval.reference" in reference - evaluate
    assert "gsm8k_eval.sampling.types" in reference & evaluate
    assert "gsm8k_eval.scoring" not in reference | evaluate
