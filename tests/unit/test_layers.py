"""The package's house plan, checked on its source: every module imports, imports point down the
layers only, no import circle, no import hidden inside a function, no module over 300 lines.

Layers, top down: the face (pydeliver_tasks/__init__) > tasks > steps > fleet, sandbox > commands
> otp > the base (config, settings, model, validation, store, store_url, versions, autoversion, lazy). A module may import
its own folder and anything below it; `lazy.module("pydeliver_tasks.X")` counts as importing X.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pydeliver_tasks"
BASE = {"config", "config_reader", "settings", "model", "validation", "store", "versions", "lazy",
        "autoversion", "importer", "store_url"}
RANK = {"otp": 1, "commands": 2, "fleet": 3, "sandbox": 3, "steps": 4, "tasks": 5}
MAX_LINES = 300


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> tuple[int, str]:
    """(rank, folder) of a module: its top-level part under the package."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return 6, ""  # the package's face (and `python -m pydeliver_tasks`)
    top = parts[1]
    if top in BASE:
        return 0, "base"
    return RANK[top], top


def imported(module: str, path: Path) -> set[str]:
    """Package modules this module imports (a name imported from a package that is one of its
    submodules counts as that submodule)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("pydeliver_tasks"):
                continue
            subs = {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES}
            found |= subs or {target}
            if len(subs) < len(node.names):
                found.add(target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pydeliver_tasks")}
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "module" and isinstance(node.func.value, ast.Name)
              and node.func.value.id == "lazy" and node.args
              and isinstance(node.args[0], ast.Constant)
              and str(node.args[0].value).startswith("pydeliver_tasks")):
            found.add(str(node.args[0].value))  # loaded at first use (pydeliver_tasks.lazy)
    found.discard(module)
    return {m for m in found if m in MODULES}


GRAPH = {m: imported(m, p) for m, p in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module: str) -> None:
    importlib.import_module(module)


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for module, targets in GRAPH.items():
        rank, folder = layer(module)
        for target in targets:
            t_rank, t_folder = layer(target)
            if t_rank > rank or (t_rank == rank and t_folder != folder):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports that do not point down:\n" + "\n".join(sorted(wrong))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle() -> None:
    assert cycles(GRAPH) == []


def test_lazy_loads_count_as_imports() -> None:
    assert "pydeliver_tasks.fleet.ssh" in GRAPH["pydeliver_tasks.fleet.host"]
    assert "pydeliver_tasks.fleet.ssh" in GRAPH["pydeliver_tasks.steps.build"]


def test_listing_the_tasks_loads_no_ssh_or_git_library() -> None:
    """`inv --list` imports the collection: paramiko, Fabric and GitPython stay unloaded."""
    code = ("import sys, pydeliver_tasks; print(sorted(m for m in ('paramiko', 'fabric', 'git') "
            "if m in sys.modules and type(sys.modules[m]).__name__ != '_LazyModule'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=PACKAGE.parent, check=True).stdout
    assert out.strip() == "[]", out


def test_the_circle_finder_finds_a_circle() -> None:  # the check above can fail
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    wrong = dict(GRAPH)
    wrong["pydeliver_tasks.model"] = {"pydeliver_tasks.steps.frame"}
    assert cycles(wrong)


def test_no_import_inside_a_function() -> None:
    hidden = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        hidden.append(f"{module}:{inner.lineno}")
    assert not hidden, "imports inside functions: " + ", ".join(hidden)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_over_300_lines(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module}: {lines} lines"


def test_steps_init_only_re_exports() -> None:
    tree = ast.parse((PACKAGE / "steps" / "__init__.py").read_text())
    kinds = {type(n).__name__ for n in tree.body}
    assert kinds <= {"Expr", "ImportFrom", "Assign"}, kinds
