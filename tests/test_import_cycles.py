"""No module-level import cycle among hetreport's modules (issue 16: data flows one way).

Walks every module's top-level ``import`` statements (those run when the module is imported; imports
inside functions and under ``if TYPE_CHECKING:`` are not) with ``ast``, adds the implicit import of each
parent package's ``__init__``, and looks for cycles in that graph. A second check imports the modules
whose cycles were broken, each in a fresh interpreter, first of all, so an order that only works when
another module was imported before fails here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "hetreport"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module, everywhere: bool):
    """Import nodes executed at import time (the module body, and inside top-level if/try/with blocks), or with
    ``everywhere`` also those inside functions and classes (run when called: a cycle hidden in a function is
    still a cycle of the design). Never those under ``if TYPE_CHECKING:``."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif everywhere and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stack.extend(node.body)
        elif everywhere and isinstance(node, (ast.For, ast.While)):
            stack.extend(node.body + node.orelse)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                stack.extend(node.body)
            stack.extend(node.orelse)
        elif isinstance(node, ast.Try):
            stack.extend(node.body + node.orelse + node.finalbody)
            for h in node.handlers:
                stack.extend(h.body)
        elif isinstance(node, ast.With):
            stack.extend(node.body)


def import_graph(everywhere: bool = False) -> dict[str, set[str]]:
    files = {(_module_name(p)): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}

    def add(src: str, target: str) -> None:
        # importing a.b.c runs a, a.b and a.b.c
        parts = target.split(".")
        for i in range(2, len(parts) + 1):
            t = ".".join(parts[:i])
            if t in files and t != src:
                graph[src].add(t)

    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        pkg = mod if is_pkg else mod.rpartition(".")[0]
        add(mod, pkg)  # a module's own package runs first
        for node in _imports(ast.parse(path.read_text(), str(path)), everywhere):
            if isinstance(node, ast.Import):
                for a in node.names:
                    add(mod, a.name)
                continue
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            add(mod, target)
            for a in node.names:  # from pkg import submodule
                add(mod, f"{target}.{a.name}")
    for m in graph:
        graph[m].discard(m)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walker_finds_a_cycle_it_is_shown():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]


def test_the_walker_reads_relative_imports_and_parent_packages():
    g = import_graph()
    assert "hetreport.prereg" in g["hetreport.prereg.plan"]
    assert "hetreport.spec" in g["hetreport.prereg.plan"]
    assert "hetreport.project" not in g["hetreport.api"]  # imported inside run_project only
    assert "hetreport.project" in import_graph(everywhere=True)["hetreport.api"]


#: the modules of the cycles issue 16 names (a package stands for all its modules): among these, data flows one way
GUARDED = {"hetreport.api": "hetreport.api", "hetreport.project": "hetreport.project", "hetreport.simstudy": "hetreport.simstudy",
           "hetreport.spec": "hetreport.spec", "hetreport.prereg.design": "hetreport.prereg.design"}


def guarded_graph(everywhere: bool) -> dict[str, set[str]]:
    """The import graph restricted to the guarded modules, each package collapsed into one node."""
    def node(m):
        for prefix, name in GUARDED.items():
            if m == prefix or m.startswith(prefix + "."):
                return name
        return None

    out: dict[str, set[str]] = {n: set() for n in GUARDED.values()}
    for src, targets in import_graph(everywhere).items():
        a = node(src)
        if a is None:
            continue
        out[a] |= {b for b in map(node, targets) if b is not None and b != a}
    return out


@pytest.mark.parametrize("everywhere", [False, True], ids=["module-level", "including-imports-in-functions"])
def test_no_import_cycle_among_the_guarded_modules(everywhere):
    g = guarded_graph(everywhere)
    assert not cycles(g), f"import cycles among {sorted(GUARDED)}: {cycles(g)} (edges: { {k: sorted(v) for k, v in g.items()} })"


def test_the_guarded_graph_keeps_the_one_way_edges():
    g = guarded_graph(True)
    assert "hetreport.project" in g["hetreport.api"] and "hetreport.simstudy" in g["hetreport.project"]
    assert "hetreport.prereg.design" in g["hetreport.spec"]


@pytest.mark.parametrize("module", ["hetreport.spec", "hetreport.prereg.design", "hetreport.api", "hetreport.project",
                                    "hetreport.simstudy", "hetreport.simstudy.engine", "hetreport.prereg.simulate"])
def test_imports_first_in_a_fresh_interpreter(module):
    r = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
