"""The sampler family's old module paths still import, warn, and hand out the new objects; no
code in the repository (but this test) uses them."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

import gsm8k_eval.sampling
from gsm8k_eval.sampling import engine, static

REPO = Path(__file__).resolve().parents[1]
MOVED = {
    "gsm8k_eval.sampler": "gsm8k_eval.sampling",
    "gsm8k_eval.step": "gsm8k_eval.sampling.step",
    "gsm8k_eval.engine": "gsm8k_eval.sampling.engine",
    "gsm8k_eval.attention": "gsm8k_eval.sampling.attention",
    "gsm8k_eval.stops": "gsm8k_eval.sampling.stops",
    "gsm8k_eval.stock_sampler": "gsm8k_eval.sampling.stock",
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_warns_and_reexports_the_new_objects(old: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated: import {MOVED[old]}"):
        shim = importlib.import_module(old)
    new = importlib.import_module(MOVED[old])
    assert shim.__all__
    for name in shim.__all__:
        if name != "FixedSampler":
            assert getattr(shim, name) is getattr(new, name), name


def test_the_names_old_callers_imported_are_still_there() -> None:
    with pytest.warns(DeprecationWarning):
        sys.modules.pop("gsm8k_eval.sampler", None)
        from gsm8k_eval.sampler import FixedSampler, SamplerConfig, make_sampler
    assert FixedSampler is static.StaticSampler
    assert (SamplerConfig, make_sampler) == (
        gsm8k_eval.sampling.SamplerConfig,
        gsm8k_eval.sampling.make_sampler,
    )
    with pytest.warns(DeprecationWarning):
        sys.modules.pop("gsm8k_eval.engine", None)
        from gsm8k_eval.engine import Engine
    assert Engine is engine.Engine


def test_fixed_sampler_is_a_deprecated_alias_of_the_static_sampler() -> None:
    with pytest.warns(DeprecationWarning, match="FixedSampler is deprecated.*StaticSampler"):
        alias = static.FixedSampler
    assert alias is static.StaticSampler
    with pytest.raises(AttributeError):
        _ = static.NoSuchSampler


def _old_imports(path: Path) -> set[str]:
    """The deprecated module paths a file imports (at any depth)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= set(names) & set(MOVED)
    return found


def test_nothing_in_the_repository_uses_the_old_paths() -> None:
    here = Path(__file__).resolve()
    files = [
        p
        for folder in ("workflow", "tests", "benchmarks")
        for p in (REPO / folder).rglob("*.py")
        if p != here
    ]
    assert len(files) > 100
    users = {str(p.relative_to(REPO)): sorted(_old_imports(p)) for p in files if _old_imports(p)}
    assert not users
