"""No import cycles among hetreport's modules: data flows one way.

Every ``import``/``from ... import`` of a hetreport module counts, at module level or inside a function
(a deferred import hides a cycle from Python but not from a reader), except under ``TYPE_CHECKING``.
The package's ``__init__`` is left out: it only re-exports lazily (``__getattr__``), and importing a
submodule imports it anyway. Registry references (``"module:function"`` strings) are not imports.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import hetreport

ROOT = Path(hetreport.__file__).parent

#: cycles still to break, as the sorted modules of each strongly connected component; shrink this list,
#: never grow it
KNOWN: list[tuple[str, ...]] = []


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = ["hetreport", *p.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()

    def visit(node):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for n in node.orelse:
                visit(n)
            return
        if isinstance(node, ast.ImportFrom):
            base = (
                ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])) if node.level else node.module
            )
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m in modules and m != name and m != "hetreport"}


def _cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(tuple(sorted(comp)))
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items() if m != "hetreport"}


def test_no_import_cycles_beyond_the_known_ones():
    graph = _graph()
    cycles = _cycles(graph)
    new = [c for c in cycles if c not in KNOWN]
    detail = ["  " + " ; ".join(f"{m} -> {', '.join(sorted(graph[m] & set(c)))}" for m in c) for c in new]
    assert not new, "import cycles among hetreport's modules (break them: data flows one way):\n" + "\n".join(detail)


def test_known_cycles_still_exist():
    """A known cycle that was broken must leave the list, so it cannot come back unnoticed."""
    cycles = _cycles(_graph())
    gone = [c for c in KNOWN if c not in cycles]
    assert not gone, f"these cycles are broken now; remove them from KNOWN in {Path(__file__).name}: {gone}"


def test_the_checker_finds_a_cycle_and_sees_deferred_imports(tmp_path):
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b", "c")]
    modules = {"hetreport.x": tmp_path / "x.py", "hetreport.y": tmp_path / "y.py"}
    (tmp_path / "x.py").write_text("def f():\n    from .y import g\n")
    (tmp_path / "y.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .x import f\n")
    assert _imports("hetreport.x", modules["hetreport.x"], modules) == {"hetreport.y"}
    assert _imports("hetreport.y", modules["hetreport.y"], modules) == set()


@pytest.mark.parametrize(
    "module",
    [
        "hetreport.spec",
        "hetreport.prereg.design",
        "hetreport.api",
        "hetreport.project",
        "hetreport.simstudy",
        "hetreport.simstudy.engine",
        "hetreport.prereg.simulate",
        "hetreport.facts",
        "hetreport.results",
        "hetreport.models.bambi_route",
    ],
)
def test_imports_first_in_a_fresh_interpreter(module):
    """Each module whose cycle was broken imports first of all in a fresh interpreter (an order that only
    works when another module was imported before fails here)."""
    r = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=ROOT.parent,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT.parent), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
