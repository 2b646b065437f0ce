"""Installs as users make them: a wheel (what `pip install .` builds) and an editable install.

Each is built from a copy of the files pyproject.toml names, installed into a fresh venv that
sees this environment's third-party packages only through a .pth line (so nothing is
downloaded), and run from a directory outside the repository with PYTHONPATH unset. The
package must then find its data files (config schema, report and prompt templates) in the
installation, not in the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate
from test_report import COMMAND, CONFIG, rollouts_for, write_tree

from gsm8k_eval.report import render_report_from_results

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
PACKAGE_ROOT = REPO / SETUPTOOLS["package-dir"][""]
RUN_CONFIG = REPO / "config.yaml"  # validated against the installed schema

# Run inside the installed venv; prints what the package resolved, as JSON.
PROBE = """
import json, sys
import gsm8k_eval, yaml
from gsm8k_eval import config, report, resources
from gsm8k_eval.prompts import PromptBuilder, PromptConfig
from snakemake.utils import validate

run_config = yaml.safe_load(open(sys.argv[1]))
validate(run_config, str(resources.schema_path()), set_default=True)
print(json.dumps({
    "package": gsm8k_eval.__file__,
    "sys_path": sys.path,
    "schema": str(resources.schema_path()),
    "config_schema": str(config.SCHEMA_PATH),
    "report_templates": str(resources.report_template_dir()),
    "report_default": str(report.DEFAULT_TEMPLATE_DIR),
    "prompt_templates": str(resources.prompt_template_dir()),
    "prompt": PromptBuilder(PromptConfig(template="chat")).render("What is 6 times 7?"),
    "validated_config": run_config,
}))
"""


def _code_packages() -> set[str]:
    """Every Python package below the package root (a directory with __init__.py)."""
    return {
        ".".join(init.parent.relative_to(PACKAGE_ROOT).parts)
        for init in PACKAGE_ROOT.glob("gsm8k_eval/**/__init__.py")
    }


def _package_dir(package: str) -> Path:
    mapping = SETUPTOOLS["package-dir"]
    if package in mapping:
        return REPO / mapping[package]
    return PACKAGE_ROOT.joinpath(*package.split("."))


def test_packages_list_every_code_package_and_existing_data_dirs() -> None:
    listed = set(SETUPTOOLS["packages"])
    data_only = {name for name in SETUPTOOLS["package-dir"] if name}
    expected = _code_packages() | data_only
    assert listed == expected, (
        f"[tool.setuptools] packages: add {expected - listed}, drop {listed - expected}"
    )
    for name in data_only:
        assert _package_dir(name).is_dir(), f"package-dir {name}: {_package_dir(name)}"


@pytest.mark.parametrize("package", sorted(PYPROJECT["tool"]["setuptools"]["package-data"]))
def test_every_package_data_pattern_matches_files(package: str) -> None:
    for pattern in SETUPTOOLS["package-data"][package]:
        assert list(_package_dir(package).glob(pattern)), f"{package}: {pattern} matches nothing"


def _run(args: list[str | Path], cwd: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, **kwargs
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result


def _source_copy(dest: Path) -> Path:
    """pyproject.toml, its readme and every directory its package-dir maps (nothing else)."""
    dest.mkdir()
    shutil.copy2(REPO / "pyproject.toml", dest)
    shutil.copy2(REPO / PYPROJECT["project"]["readme"], dest)
    for relative in set(SETUPTOOLS["package-dir"].values()):
        shutil.copytree(
            REPO / relative,
            dest / relative,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
        )
    return dest


def _venv(path: Path) -> Path:
    """A venv without pip; returns its python."""
    _run([sys.executable, "-m", "venv", "--without-pip", path], cwd=path.parent)
    return path / "bin" / "python"


def _share_site_packages(python: Path) -> Path:
    """Make this environment's third-party packages importable in the venv (after its own)."""
    site = Path(
        _run(
            [python, "-c", "import site; print(site.getsitepackages()[0])"], python.parent
        ).stdout.strip()
    )
    ours = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    # A plain path line: .pth files there (e.g. an editable install of the repo) stay inactive.
    (site / "_test_shared_deps.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    return site


@pytest.fixture(scope="module", params=["wheel", "editable"])
def installed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(kind, venv python, where the package files must be, a work dir outside the repo)."""
    tmp = tmp_path_factory.mktemp(request.param)
    source = _source_copy(tmp / "src")
    python = _venv(tmp / "venv")
    site = _share_site_packages(python)  # before installing: the build backend comes from here
    offline = ["--no-deps", "--no-index", "--no-build-isolation"]
    install = [sys.executable, "-m", "pip", "--python", python, "install", *offline]
    install.append("--ignore-installed")  # never touch this environment's gsm8k-eval
    if request.param == "wheel":
        _run([sys.executable, "-m", "pip", "wheel", *offline, "-w", tmp / "dist", source], tmp)
        (wheel,) = (tmp / "dist").glob("gsm8k_eval-*.whl")
        _run([*install, wheel], tmp)
        expected_home = site
    else:
        _run([*install, "--editable", source], tmp)
        expected_home = source
    work = tmp / "work"
    work.mkdir()
    assert not _inside(work, REPO)
    return request.param, python, expected_home, work


def _inside(path: str | Path, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(root.resolve())


def test_installed_package_finds_its_data(installed) -> None:
    kind, python, home, work = installed
    shutil.copy2(RUN_CONFIG, work / "config.yaml")
    found = json.loads(_run([python, "-c", PROBE, "config.yaml"], work).stdout)
    assert _inside(found["package"], home), found["package"]
    # The repository's source must not be importable; the test venv (.venv may sit inside the
    # repository, as in CI) only provides the dependencies.
    in_repo = [p for p in found["sys_path"] if _inside(work / p, REPO)]
    assert not [p for p in in_repo if not _inside(p, Path(sys.prefix))], found["sys_path"]
    schema = Path(found["schema"])
    assert _inside(schema, home) and schema.name == "config.schema.yaml"
    assert yaml.safe_load(schema.read_text()) == yaml.safe_load(
        (REPO / "workflow/schemas/config.schema.yaml").read_text()
    )
    assert found["config_schema"] == found["schema"]
    templates = Path(found["report_templates"])
    assert _inside(templates, home) and found["report_default"] == found["report_templates"]
    repo_templates = sorted(p.name for p in (REPO / "report/templates").glob("*.j2"))
    assert sorted(p.name for p in templates.glob("*.j2")) == repo_templates
    assert _inside(found["prompt_templates"], home)
    assert "What is 6 times 7?" in found["prompt"] and "<start_of_turn>" in found["prompt"]
    expected = yaml.safe_load(RUN_CONFIG.read_text())
    validate(expected, str(REPO / "workflow/schemas/config.schema.yaml"), set_default=True)
    assert found["validated_config"] == expected  # defaults filled in from the installed schema
    if kind == "wheel":  # the data live in the installation, not in any source tree
        assert not _inside(schema, REPO) and not _inside(templates, REPO)


def test_console_script_help(installed) -> None:
    _, python, _, work = installed
    result = _run([python.parent / "gsm8k-eval", "--help"], work)
    for stage in ("download-dataset", "fetch-model", "evaluate", "render-report"):
        assert stage in result.stdout


def test_console_script_renders_report(installed, monkeypatch: pytest.MonkeyPatch) -> None:
    """The installed CLI renders the fixture report exactly as the checkout's code does."""
    _, python, _, work = installed
    runs = {(c, bs): rollouts_for(c, bs) for c in ("base", "lora_final") for bs in (1, 4)}
    write_tree(work / "results", runs)
    (work / "run.yaml").write_text(yaml.safe_dump(CONFIG))
    out = work / "out" / "report.md"
    monkeypatch.chdir(work)  # same relative paths for both renderings
    expected = render_report_from_results(
        Path("results"), out.relative_to(work), Path("run.yaml"), COMMAND
    ).read_text()
    shutil.rmtree(out.parent)
    args = ["--results-dir", "results", "--config", "run.yaml", "--command-line", COMMAND]
    _run([python.parent / "gsm8k-eval", "render-report", *args, "--out", "out/report.md"], work)
    assert (out.parent / "figures" / "accuracy.png").is_file()
    assert "### lora_final vs base" in out.read_text()
    assert out.read_text() == expected
