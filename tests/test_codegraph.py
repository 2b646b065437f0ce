"""Every stage reruns by its own code, derived from the import graph (issue 23 §3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_invariance import make_rows, write

from gsm8k_eval import codegraph

CLI = """
def subparser(sub, name, handler, help_text): ...


def add(sub):
    subparser(sub, "make", _run_make, "")


def _run_make(args):
    _helper()


def _helper():
    from pkg.a import f
"""


def _package(root: Path) -> Path:
    files = {
        "__init__.py": "",
        "__main__.py": "from pkg.cli import main\n",
        "cli/__init__.py": "from pkg.cli.commands import add\n",
        "cli/commands.py": CLI.replace("pkg.", "gsm8k_eval."),
        "a.py": (
            "import typing\nif typing.TYPE_CHECKING:\n    from gsm8k_eval import c\n"
            "def f():\n    from gsm8k_eval import b\n"
        ),
        "b.py": "x = 1\n",
        "c.py": "y = 1\n",
        "t.py": "import typing\nif typing.TYPE_CHECKING:\n    from gsm8k_eval import c\n",
        "prompts/chat.j2": "{{ q }}\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text.replace("from pkg", "from gsm8k_eval"))
    return root


def test_a_stage_digest_follows_lazy_imports_through_helpers(tmp_path: Path) -> None:
    root = _package(tmp_path / "gsm8k_eval")
    modules = codegraph.stage_modules("make", root)
    assert {"gsm8k_eval.a", "gsm8k_eval.b"} <= modules
    assert not {"gsm8k_eval.c", "gsm8k_eval.t"} & modules
    base = codegraph.stage_digest("make", root)
    for name in ("b.py", "a.py", "cli/commands.py"):
        original = (root / name).read_text()
        (root / name).write_text(original + "# edited\n")
        assert codegraph.stage_digest("make", root) != base, name
        (root / name).write_text(original)
    (root / "c.py").write_text("y = 2\n")
    assert codegraph.stage_digest("make", root) == base


def test_the_generating_stage_leaves_grading_comparing_and_rendering_out() -> None:
    evaluate = codegraph.stage_modules("evaluate")
    assert {
        "gsm8k_eval.sampling.static",
        "gsm8k_eval.sampling.engine",
        "gsm8k_eval.models",
    } <= evaluate
    other = {"scoring", "grading", "summary", "invariance", "verdict", "report", "stats"}
    assert not {f"gsm8k_eval.{name}" for name in other} & evaluate
    assert {"gsm8k_eval.scoring", "gsm8k_eval.grading"} <= codegraph.stage_modules("score")
    report = codegraph.stage_modules("render-report")
    assert {"gsm8k_eval.invariance", "gsm8k_eval.sweeps", "gsm8k_eval.parts"} <= report
    prompts = {p.name for p in codegraph.stage_files("evaluate") if p.suffix == ".j2"}
    assert prompts == {"chat.j2", "fewshot.j2", "tunix_grpo.j2"}


def _imported(tmp_path: Path, argv: list[str]) -> set[str]:
    """The package modules a real `python -m gsm8k_eval <argv>` imported (it must succeed)."""
    code = (
        "import json, runpy, sys\n"
        f"sys.argv = ['gsm8k_eval', *{argv!r}]\n"
        "try:\n    runpy.run_module('gsm8k_eval', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        f"open({str(tmp_path / 'mods.json')!r}, 'w').write(json.dumps(sorted(sys.modules)))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600)
    names = json.loads((tmp_path / "mods.json").read_text())
    return {name for name in names if name.split(".")[0] == "gsm8k_eval"}


def _generations(folder: Path) -> Path:
    folder.mkdir(parents=True)
    row = {
        "id": 0,
        "question": "q",
        "answer": "so 3\n#### 3",
        "prompt": "p",
        "response": "The answer is 3.",
        "tokens": [1, 2],
        "num_steps": 2,
        "stop_reason": "eos",
        "token_logits": [0.5, 0.25],
        "prompt_tokens": 1,
        "batch_size": 1,
        "checkpoint": "base",
    }
    (folder / "generations.jsonl").write_text(json.dumps(row) + "\n")
    (folder / "generation.json").write_text(json.dumps({"checkpoint": "base", "batch_size": 1}))
    return folder


@pytest.mark.parametrize("stage", ["score", "check-invariance", "verdict"])
def test_a_stage_imports_nothing_its_digest_misses(stage: str, tmp_path: Path) -> None:
    """Run the stage for real and compare what it imported with its derived modules."""
    rows = make_rows(2)
    inv = tmp_path / "inv.json"
    argv = {
        "score": ["score", "--generations-dir", str(_generations(tmp_path / "g"))],
        "check-invariance": [
            "check-invariance",
            "--checkpoint",
            "base",
            "--rollouts",
            f"1={write(tmp_path, 1, rows)}",
            f"2={write(tmp_path, 2, rows)}",
            "--out",
            str(inv),
        ],
        "verdict": ["verdict", "--invariance", str(inv), "--out", str(tmp_path / "v.json")],
    }
    if stage == "verdict":
        _imported(tmp_path, argv["check-invariance"])
    imported = _imported(tmp_path, argv[stage])
    missed = imported - codegraph.stage_modules(stage)
    assert not missed, f"{stage} imports {sorted(missed)}, which its code digest misses"
    assert f"gsm8k_eval.{stage.replace('check-', '').replace('score', 'grading')}" in imported


def test_no_import_circle_in_the_package() -> None:
    """Imports at any depth (lazy ones too, TYPE_CHECKING blocks aside): no circle anywhere, e.g.
    none among the sampling modules since the `sampling` package, none between evaluate and
    summary since the evaluate split."""
    import graphlib

    graph = codegraph.import_graph()
    assert len(graph) > 40 and "gsm8k_eval.sampling.engine" in graph
    assert "gsm8k_eval.sampling.types" in graph["gsm8k_eval.sampling.engine"]
    list(graphlib.TopologicalSorter(graph).static_order())  # CycleError on a circle


def test_a_planted_circle_is_found(tmp_path: Path) -> None:
    """The check above can fail: a lazy import back from b to a is a circle."""
    import graphlib

    root = _package(tmp_path / "gsm8k_eval")
    (root / "b.py").write_text("def g():\n    from gsm8k_eval import a\n")
    graph = codegraph.import_graph(root)
    assert graph["gsm8k_eval.a"] == {"gsm8k_eval.b"} and graph["gsm8k_eval.b"] == {"gsm8k_eval.a"}
    with pytest.raises(graphlib.CycleError):
        list(graphlib.TopologicalSorter(graph).static_order())
