"""envs/*.yaml (for --sdm conda) pin exactly what pyproject.toml pins, and each lists every
third-party distribution that the code of its rules imports.

A rule's imports: its `gsm8k-eval <stage>` handler (and the helpers of its own module it
calls), the module-level imports of the modules `python -m gsm8k_eval` loads (the `cli`
package's subcommand modules included), then every import,
lazy ones included, of every package module reachable from there (module granularity, so a
module's lazily imported packages count for every stage that imports the module).
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib.metadata
import inspect
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from gsm8k_eval import cli

REPO = Path(__file__).resolve().parents[1]
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))
PACKAGE = "gsm8k_eval"
PACKAGE_DIR = REPO / "workflow" / PACKAGE
ENTRY_MODULES = ("gsm8k_eval", "gsm8k_eval.__main__")  # what `python -m gsm8k_eval` runs


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


def _extra_pins(extra: str) -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return _pins(project["optional-dependencies"][extra])


# The optional PyTorch reference stage: its env and modules may use the [reference] extra.
REFERENCE_EXTRA = "reference"
REFERENCE_ENV = "reference"
REFERENCE_MODULES = {"gsm8k_eval.reference"}


def _env_pins(env_file: Path) -> dict[str, str]:
    env = yaml.safe_load(env_file.read_text())
    return _pins(next(d["pip"] for d in env["dependencies"] if isinstance(d, dict)))


# Top-level names shared by many distributions: resolved one level deeper (google.auth).
NAMESPACES = {"google"}


def _normalise(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


# ------------------------------------------------------------------------ import graph (AST)


def _module_file(module: str) -> Path | None:
    """The source file of a gsm8k_eval module, None for anything else (e.g. a class name)."""
    path = PACKAGE_DIR.joinpath(*module.split(".")[1:])
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(nodes: list[ast.AST], module: str) -> set[str]:
    """Dotted names imported by `nodes` (for `from a import b`: `a` and `a.b`)."""
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[: -node.level]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def _walk(tree: ast.AST, skip_functions: bool) -> list[ast.AST]:
    """All nodes below `tree`; without function bodies when `skip_functions` (import time)."""
    found, todo = [], list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        found.append(node)
        if not (skip_functions and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))):
            todo.extend(ast.iter_child_nodes(node))
    return found


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _all_imports(module: str) -> set[str]:
    path = _module_file(module)
    return _imported_names(_walk(_tree(path), skip_functions=False), module) if path else set()


def _handler_imports(handler) -> set[str]:
    """Imports of the handler's module at import time, of the handler and of the functions
    of the same module it names (recursively)."""
    module = handler.__module__
    tree = _tree(Path(inspect.getsourcefile(handler)))
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    names = _imported_names(_walk(tree, skip_functions=True), module)
    seen, todo = set(), [handler.__name__]
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        body = _walk(functions[name], skip_functions=False)
        names |= _imported_names(body, module)
        todo += [node.id for node in body if isinstance(node, ast.Name)]
    return names


def _third_party(start: set[str], analysed: frozenset[str] = frozenset()) -> set[str]:
    """Top-level third-party import names reachable from the dotted names in `start`
    (modules in `analysed` were analysed function by function: not followed again)."""
    seen: set[str] = set(analysed)
    found: set[str] = set()
    todo = sorted(start)
    while todo:
        name = todo.pop()
        top = name.split(".")[0]
        if top != PACKAGE:
            if top not in sys.stdlib_module_names and top != "__future__":
                found.add(".".join(name.split(".")[:2]) if top in NAMESPACES else top)
        elif name not in seen and _module_file(name):
            seen.add(name)
            todo += sorted(_all_imports(name))
    return found


def _distributions(import_names: set[str]) -> dict[str, set[str]]:
    """Import name -> the installed distributions providing it (normalised names).

    A namespace package's name (`google.auth`) maps to the distributions that ship files under
    it, not to every distribution that shares the namespace."""
    installed = importlib.metadata.packages_distributions()
    tops = {name: name.split(".")[0] for name in import_names}
    missing = sorted(name for name, top in tops.items() if top not in installed)
    assert not missing, f"imported but not installed in this environment: {missing}"
    return {name: _providers(name, installed[tops[name]]) for name in import_names}


def _providers(name: str, candidates: list[str]) -> set[str]:
    if "." not in name:
        return {_normalise(d) for d in candidates}
    prefix = name.replace(".", "/") + "/"
    return {
        _normalise(d)
        for d in candidates
        if any(str(f).startswith(prefix) for f in importlib.metadata.files(d) or [])
    }


def _stage_handlers() -> dict[str, object]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: p.get_default("handler") for name, p in sub.choices.items()}


def _stage_imports(stage: str) -> set[str]:
    handlers = _stage_handlers()
    # the front end: `gsm8k_eval.cli` and its subcommand modules, whose module-level imports
    # every stage loads; inside them only the chosen handler's imports count
    front = frozenset({"gsm8k_eval.cli", *(h.__module__ for h in handlers.values())})
    entry = set()
    for module in (*ENTRY_MODULES, *sorted(front)):
        entry |= _imported_names(_walk(_tree(_module_file(module)), True), module)
    return _third_party(entry | _handler_imports(handlers[stage]), front)


def _rule_stages() -> dict[str, tuple[str, str]]:
    """Rule -> (its conda env file name, the gsm8k-eval stage its shell command runs)."""
    stages = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"(?m)^rule\s+", smk.read_text())[1:]:
            rule = block.split(":", 1)[0].strip()
            env = re.search(r"envs/([\w.-]+\.yaml)", block)
            if env is None:
                continue
            command = re.search(r"(?:-m gsm8k_eval|gsm8k-eval)\s+([a-z][a-z_-]*)", block)
            assert command, f"{smk.name}: rule {rule} has a conda env but no gsm8k-eval stage"
            stages[rule] = (env[1], command[1])
    return stages


RULE_STAGES = _rule_stages()


def test_there_is_an_env_per_stage_kind():
    assert {p.stem for p in ENV_FILES} == {"fetch", "evaluate", "report", "reference"}


def test_runtime_dependencies_exclude_torch():
    assert not any(name.startswith("torch") for name in _pyproject_pins())
    assert {"torch", "transformers"} <= set(_extra_pins(REFERENCE_EXTRA))


def _package_modules() -> set[str]:
    return {
        ".".join((PACKAGE, *p.relative_to(PACKAGE_DIR).with_suffix("").parts)).removesuffix(
            ".__init__"
        )
        for p in PACKAGE_DIR.rglob("*.py")
    }


def test_only_the_reference_module_imports_torch():
    """The runtime stays torch-free: torch and transformers are imported (lazily) by the
    reference module alone, and no other module imports that one at import time."""
    importers = {
        module
        for module in _package_modules()
        if {"torch", "transformers"} & {n.split(".")[0] for n in _all_imports(module)}
    }
    assert importers == REFERENCE_MODULES
    for module in _package_modules() - REFERENCE_MODULES:
        at_import = _imported_names(_walk(_tree(_module_file(module)), True), module)
        assert not at_import & REFERENCE_MODULES, module
    for module in REFERENCE_MODULES:
        at_import = _imported_names(_walk(_tree(_module_file(module)), True), module)
        assert not {"torch", "transformers"} & {n.split(".")[0] for n in at_import}
    assert {"torch", "transformers"} <= _stage_imports("reference")
    for stage in _stage_handlers().keys() - {"reference"}:
        assert "torch" not in _stage_imports(stage), stage


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.name)
def test_env_parses_and_agrees_with_pyproject(env_file):
    env = yaml.safe_load(env_file.read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = _pins(pip_section)
    expected = _pyproject_pins()
    if env_file.stem == REFERENCE_ENV:
        expected |= _extra_pins(REFERENCE_EXTRA)
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


def test_rules_with_envs_are_found():
    assert RULE_STAGES, "no rule with a conda env found in workflow/rules"
    handlers = _stage_handlers()
    for rule, (_, stage) in RULE_STAGES.items():
        assert stage in handlers, f"rule {rule} runs unknown stage {stage}"


@pytest.mark.parametrize("rule", sorted(RULE_STAGES))
def test_env_lists_every_distribution_its_rule_imports(rule):
    env_name, stage = RULE_STAGES[rule]
    listed = set(_env_pins(REPO / "envs" / env_name))
    needed = _distributions(_stage_imports(stage))
    missing = {name: sorted(dists) for name, dists in needed.items() if not dists & listed}
    assert not missing, (
        f"envs/{env_name} lacks what rule {rule} (gsm8k-eval {stage}) imports: {missing}"
    )


def test_import_graph_sees_lazy_imports():
    """The derivation must follow function-level imports (the fetch stage imports lazily)."""
    assert {"sentencepiece", "etils", "gguf"} <= _stage_imports("fetch-model")
    assert _stage_imports("check-invariance") <= _stage_imports("render-report")
    assert "jax" not in _stage_imports("render-report")


def test_every_third_party_import_is_a_pinned_dependency():
    """Runtime modules: the dependencies; the reference module: also the [reference] extra."""
    pins = set(_pyproject_pins())
    runtime = _package_modules() - REFERENCE_MODULES
    needed = _distributions(_third_party(runtime, frozenset(REFERENCE_MODULES)))
    missing = {name: sorted(dists) for name, dists in needed.items() if not dists & pins}
    assert not missing, f"imported but not pinned in pyproject.toml dependencies: {missing}"
    pins |= set(_extra_pins(REFERENCE_EXTRA))
    needed = _distributions(_third_party(REFERENCE_MODULES))
    missing = {name: sorted(dists) for name, dists in needed.items() if not dists & pins}
    assert not missing, f"imported but not pinned in pyproject.toml [reference]: {missing}"


# Profiles run from the project's .venv; googlebatch needs its own venv (docs/cluster.md).
SEPARATE_VENV_PROFILES = {"googlebatch"}


@pytest.mark.parametrize(
    "profile",
    sorted(p.parent.name for p in (REPO / "profiles").glob("*/config.yaml")),
)
def test_cluster_extra_installs_the_plugins_a_profile_needs(profile):
    settings = yaml.safe_load((REPO / "profiles" / profile / "config.yaml").read_text())
    needed = set()
    if "executor" in settings:
        needed.add(f"snakemake-executor-plugin-{settings['executor']}")
    if "default-storage-provider" in settings:
        needed.add(f"snakemake-storage-plugin-{settings['default-storage-provider']}")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    cluster = set(_pins(extras["cluster"]))
    if profile in SEPARATE_VENV_PROFILES:
        assert needed - cluster, f"{profile} is documented as needing its own venv"
    else:
        assert needed <= cluster, f"profiles/{profile} needs {sorted(needed - cluster)}"
