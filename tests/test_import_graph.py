"""The house has no import cycle (issue 20): every module of `emodna_hf` imports, and the graph of its imports
between the package's own modules, read from the source with `ast`, is acyclic.

Every import counts, wherever it stands: at module level, under `if TYPE_CHECKING:` and inside a function (a lazy
import that only breaks a cycle at run time is still a cycle in the design). An import of a package's submodule does
not count as an import of the package's `__init__.py`; `from package import name` counts as one unless `name` is a
submodule.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import emodna_hf

ROOT = Path(emodna_hf.__file__).parent


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ("emodna_hf", *path.relative_to(ROOT).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = _modules()


def _package_of(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        edges = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
                names: list[str] = []
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = _package_of(module)
                    for _ in range(node.level - 1):
                        base = base.rpartition(".")[0]
                    target = f"{base}.{node.module}" if node.module else base
                else:
                    target = node.module or ""
                targets = [target]
                names = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                submodules = [f"{target}.{name}" for name in names if f"{target}.{name}" in MODULES]
                edges.update(submodules)
                if target in MODULES and (len(submodules) < len(names) or not names):
                    edges.add(target)
        edges.discard(module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module):
    importlib.import_module(module)


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_cycles():
    """The check can fail: a cycle through three modules, and a pair, are found; a diamond is not a cycle."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) == []
    assert cycles({"x": {"y"}, "y": {"x"}}) == [["x", "y"]]


def test_the_graph_sees_lazy_and_type_checking_imports():
    graph = import_graph()
    # data/__init__ imports the generated package; a generator imports its acoustics module as a submodule.
    assert "emodna_hf.data.synthetic" in graph["emodna_hf.data"]
    assert "emodna_hf.data.synthetic.acoustics" in graph["emodna_hf.data.synthetic.espeak"]
    assert "emodna_hf.data.synthetic" not in graph["emodna_hf.data.synthetic.espeak"]
    # A lazy import inside a function (corpus_arguments reads a manifest's file column only when it checks one).
    assert "emodna_hf.data.spec" in graph["emodna_hf.corpus_arguments"]


def test_the_corpus_spec_is_a_leaf_of_the_data_layer():
    assert not {m for m in import_graph()["emodna_hf.data.spec"] if m.startswith("emodna_hf.")}
