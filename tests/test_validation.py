"""Config errors a person can act on: one line per problem naming the key, no schema dumps."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gsm8k_eval import validation
from gsm8k_eval.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
LORA_CHECKPOINT = {"name": "grpo", "source": "gs://bucket/run/actor"}

# Ten wrong inputs, each with the dotted key its one error line must start with.
WRONG_INPUTS = [
    ({"batch_sizse": [1, 8]}, "batch_sizse: unknown key; did you mean 'batch_sizes'?"),
    ({"sampling": {"decode_rowz": 4}}, "sampling.decode_rowz: unknown key; did you mean"),
    ({"prompt": {"num_shots": "five"}}, "prompt.num_shots: 'five' is not of type integer"),
    ({"sampling": {"max_generation_steps": 0}}, "sampling.max_generation_steps: 0 is less"),
    ({"batch_sizes": [0]}, "batch_sizes[0]: 0 is less than the minimum 1"),
    ({"batch_sizes": [8, 8]}, "batch_sizes: [8, 8] has duplicate items"),
    ({"samplers": ["fixed", "greedy"]}, "samplers[1]: 'greedy' is not one of"),
    ({"sampling": {"dtype": "float16"}}, "sampling.dtype: 'float16' is not one of"),
    ({"checkpoints": [{"name": "bad name!"}]}, "checkpoints[0].name: 'bad name!' does not match"),
    ({"lora": {"alpha": 0}}, "lora.alpha: 0 must be greater than 0"),
]
# a key that takes a number or `auto` (anyOf): both alternatives are named
AUTO_OR_NUMBER = (
    {"sampling": {"decode_rows": 1}},
    "sampling.decode_rows: 1 is less than the minimum 2 or 1 is not allowed: it must be 'auto'",
)


def test_a_number_or_auto_key_names_both_alternatives():
    config, expected = AUTO_OR_NUMBER
    assert validation.config_errors(config) == [expected]


@pytest.mark.parametrize(("config", "expected"), WRONG_INPUTS)
def test_each_wrong_input_is_one_line_naming_the_key(config, expected):
    lines = validation.config_errors(config)
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected), lines[0]
    with pytest.raises(ConfigError) as error:
        load_config(config)
    assert str(error.value) == lines[0]


def test_every_problem_of_a_config_is_reported_at_once():
    config = {}
    for wrong, _ in WRONG_INPUTS:
        for key, value in wrong.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key].update(value)
            else:
                config[key] = value
    lines = validation.config_errors(config)
    # batch_sizes appears twice in WRONG_INPUTS: the later value ([8, 8]) wins.
    assert len(lines) == len(WRONG_INPUTS) - 1, lines
    assert all(len(line) < 300 for line in lines), lines


def test_unknown_key_without_a_close_match_lists_the_known_keys():
    (line,) = validation.config_errors({"sampling": {"zzz": 1}})
    assert line.startswith("sampling.zzz: unknown key (known: ")
    assert "decode_rows" in line


def test_lora_checkpoint_without_an_explicit_alpha_is_an_error():
    with pytest.raises(ConfigError) as error:
        load_config({"checkpoints": [{"name": "base"}, LORA_CHECKPOINT]})
    message = str(error.value)
    assert message.startswith("lora.alpha: required with LoRA checkpoints (grpo)")
    assert "changes every logit" in message and "\n" not in message
    # Explicit alpha: fine; only base: no alpha needed.
    assert load_config({"checkpoints": [LORA_CHECKPOINT], "lora": {"alpha": 32.0}}).lora.alpha == 32
    assert load_config({"checkpoints": [{"name": "base"}]}).lora.alpha > 0


def test_enabled_reference_without_torch_names_the_install_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r'reference.enabled: .*pip install -e "\.\[reference\]"'):
        validation.check_reference_runtime(True, uses_conda=False)
    validation.check_reference_runtime(True, uses_conda=True)  # conda: the job's own env
    validation.check_reference_runtime(False, uses_conda=False)


def _dry_run_errors(tmp_path: Path, config: dict) -> list[str]:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output and 'File "' not in output, output
    lines = output.split("Config error:\n", 1)[1].strip().splitlines()
    return lines


def test_snakemake_prints_one_line_per_problem(tmp_path):
    lines = _dry_run_errors(tmp_path, {"batch_sizes": [0], "sampling": {"decode_rowz": 4}})
    assert lines == [
        "batch_sizes[0]: 0 is less than the minimum 1",
        "sampling.decode_rowz: unknown key; did you mean 'decode_rows'?",
    ]


def test_snakemake_stops_a_lora_study_without_alpha(tmp_path):
    study = yaml.safe_load((REPO / "configs" / "gemma3-1b-it-gsm8k.yaml").read_text())
    del study["lora"]["alpha"]
    (line,) = _dry_run_errors(tmp_path, study)
    assert line.startswith("lora.alpha: required with LoRA checkpoints (on-policy-gsm8k-ppo-v2")
