"""Which package code a stage runs, derived from the import graph (issue 23 §3).

A stage is a `gsm8k-eval` subcommand. Its modules are what `python -m gsm8k_eval <command>`
imports: `__main__` and the `cli` package at module level (how the parser is built), the
imports inside the subcommand's handler function (and the same-module helpers it calls), then
every import of every package module reached that way, at any depth and inside functions too
(a lazy import is still code the stage may run; `if TYPE_CHECKING:` blocks are skipped). Each
rule's `code` param is `stage_digest(<command>)`, so editing a module reruns exactly the stages
that import it. Data files (prompt templates) count with the module named like their folder.

AST only: importing this module imports neither JAX nor the modules it reads.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = "gsm8k_eval"
PACKAGE_DIR = Path(__file__).resolve().parent
CLI = f"{PACKAGE}.cli"
ENTRY = (PACKAGE, f"{PACKAGE}.__main__", CLI)
DATA_SUFFIXES = (".j2",)


def module_files(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package."""
    files = {}
    for path in sorted(Path(package_dir).rglob("*.py")):
        relative = path.relative_to(package_dir)
        if "__pycache__" in relative.parts:
            continue
        parts = [PACKAGE, *relative.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


@cache
def _tree(path: Path, stamp: tuple[int, int]) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _parse(path: Path) -> ast.Module:
    st = path.stat()
    return _tree(path, (st.st_mtime_ns, st.st_size))


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _walk(nodes: list[ast.stmt], *, deep: bool) -> list[ast.AST]:
    """Statements (and, when `deep`, everything nested), leaving out TYPE_CHECKING blocks."""
    out: list[ast.AST] = []
    stack: list[ast.AST] = list(reversed(nodes))
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            continue
        out.append(node)
        if deep or isinstance(node, ast.If | ast.Try | ast.With):
            stack.extend(reversed(list(ast.iter_child_nodes(node))))
    return out


def _imported(nodes: list[ast.AST], module: str, is_package: bool, known: set[str]) -> set[str]:
    """Package modules imported by `nodes` (`from a import b` counts `a.b` when a module)."""
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            # `import a.b.c` imports a, a.b and a.b.c
            parts = name.split(".")
            found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & known
    return found


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """Module -> the package modules it imports at any depth (lazy imports too, TYPE_CHECKING
    blocks aside), leaving out its own parent packages and submodules (not circles)."""
    files = module_files(package_dir)
    graph = {}
    for module, path in files.items():
        nodes = _walk(_parse(path).body, deep=True)
        imported = _imported(nodes, module, path.name == "__init__.py", set(files))
        graph[module] = {
            m
            for m in imported
            if m != module and not m.startswith(f"{module}.") and not module.startswith(f"{m}.")
        }
    return graph


def handler(command: str, package_dir: Path = PACKAGE_DIR) -> tuple[str, str]:
    """(cli module, function name) of `command`'s handler: the `subparser(sub, command,
    handler, ...)` call that registers it."""
    files = module_files(package_dir)
    for module, path in files.items():
        if not module.startswith(f"{CLI}."):
            continue
        for node in ast.walk(_parse(path)):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "subparser"
                and len(node.args) >= 3
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in (command, command.replace("_", "-"))
                and isinstance(node.args[2], ast.Name)
            ):
                return module, node.args[2].id
    raise KeyError(f"no `gsm8k-eval {command}` subcommand in {package_dir}/cli")


def _handler_imports(module: str, function: str, files: dict[str, Path]) -> set[str]:
    """Imports inside `function` of `module` and of the same-module functions it calls."""
    tree = _parse(files[module])
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    known, found, todo, seen = set(files), set(), [function], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        body = _walk(functions[name].body, deep=True)
        found |= _imported(body, module, False, known)
        todo += [n.func.id for n in body if isinstance(n, ast.Call) and hasattr(n.func, "id")]
    return found


def stage_modules(command: str, package_dir: Path = PACKAGE_DIR) -> set[str]:
    """Every package module `python -m gsm8k_eval <command>` can import."""
    files = module_files(package_dir)
    known = set(files)
    cli_module, function = handler(command, package_dir)
    todo = [*ENTRY, *_handler_imports(cli_module, function, files)]
    modules: set[str] = set()
    while todo:
        module = todo.pop()
        if module in modules or module not in files:
            continue
        modules.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages
        path = files[module]
        # the cli package only builds the parser at import time: its module-level imports
        deep = not (module == CLI or module.startswith(f"{CLI}."))
        nodes = _walk(_parse(path).body, deep=deep)
        todo += _imported(nodes, module, path.name == "__init__.py", known)
    return modules


def stage_files(command: str, package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """The stage's module files plus the data files in a folder named like one of them."""
    package_dir = Path(package_dir)
    files = module_files(package_dir)
    chosen = {files[m] for m in stage_modules(command, package_dir)}
    for module in stage_modules(command, package_dir):
        folder = (
            files[module].parent
            if files[module].name == "__init__.py"
            else (files[module].with_suffix(""))
        )
        if folder.is_dir():
            chosen |= {p for p in folder.rglob("*") if p.suffix in DATA_SUFFIXES}
    return sorted(chosen)


def stage_digest(command: str, package_dir: Path = PACKAGE_DIR) -> str:
    """sha256 over the relative paths and bytes of `stage_files(command)`."""
    package_dir = Path(package_dir)
    digest = hashlib.sha256()
    for path in stage_files(command, package_dir):
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()
