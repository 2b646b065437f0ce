"""envs/*.yaml (for --sdm conda) parse and pin exactly what pyproject.toml pins."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;]+)", requirement.strip())
        assert match, f"not an exact pin: {requirement}"
        pins[match[1].lower().replace("_", "-")] = match[2]
    return pins


def _pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return _pins(project["dependencies"])


def test_there_is_an_env_per_stage_kind():
    assert {p.stem for p in ENV_FILES} == {"fetch", "evaluate", "report"}


def test_runtime_dependencies_exclude_torch():
    assert not any(name.startswith("torch") for name in _pyproject_pins())


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.name)
def test_env_parses_and_agrees_with_pyproject(env_file):
    env = yaml.safe_load(env_file.read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = _pins(pip_section)
    expected = _pyproject_pins()
    assert pins, env_file
    for name, version in pins.items():
        assert name in expected, f"{env_file.name}: {name} is not pinned in pyproject.toml"
        assert version == expected[name], f"{env_file.name}: {name}=={version} != {expected[name]}"


def test_every_rule_env_exists():
    rules = (REPO / "workflow" / "rules").glob("*.smk")
    referenced = {
        m for p in rules for m in re.findall(r'"\.\./\.\./(envs/\w+\.yaml)"', p.read_text())
    }
    assert referenced
    for path in referenced:
        assert (REPO / path).exists(), path
