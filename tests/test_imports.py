"""No module of ``rql`` takes part in an import circle.

Every ``import`` and ``from ... import`` of an ``rql`` module anywhere in a file counts, at the top
or inside a function (a function-level import only hides a circle until the function runs), with
relative imports resolved and ``from rql.x import name`` read as an import of ``rql.x.name`` when
that is a module. Importing ``rql.a.b`` runs the package ``rql.a``'s ``__init__`` first, so it
depends on ``rql.a`` too, except from inside ``rql.a``: a submodule only runs once its package has
started, so its own package's ``__init__`` is a dependency only when it names it (``from rql.a
import X``), and that is a circle only if the ``__init__`` imports the submodule back.
"""

from __future__ import annotations

import ast
import pathlib

SRC = pathlib.Path(__file__).resolve().parent.parent / "src" / "rql"


def module_names(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """``{dotted name: file}`` of every module under the package folder ``root`` (a package is
    named by its ``__init__.py``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _targets(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, modules) -> list[str]:
    """The modules of the package that one import statement names."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = importer.split(".") if is_package else importer.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
    out = []
    for name in names:
        while name and name not in modules:  # `import rql.x.y` of a name that is not a module: its module
            name = name.rpartition(".")[0]
        if name:
            out.append(name)
    return out


def import_graph(root: pathlib.Path = SRC) -> dict[str, set[str]]:
    """``{module: modules it imports}`` over the package folder ``root``."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for importer, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(node, importer, is_package, modules):
                parts = target.split(".")
                for k in range(2, len(parts)):  # the packages above it run first, unless the importer is inside
                    package = ".".join(parts[:k])  # (a namespace package, without __init__, runs nothing)
                    if package in modules and not (importer == package or importer.startswith(package + ".")):
                        graph[importer].add(package)
                graph[importer].add(target)
        graph[importer].discard(importer)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle (``[a, b, ..., a]``) for each group of modules that import one another, found
    with Tarjan's strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, group) for group in groups]


def _cycle_in(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest circle through the first module of a strongly connected ``group``."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no circle in {group}")  # a strongly connected group always has one


def test_the_graph_sees_function_level_relative_and_submodule_imports(tmp_path):
    pkg = tmp_path / "rql"
    for folder in ("sub", "inner", "space"):  # space: a namespace package (no __init__)
        (pkg / folder).mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import numpy\ndef f():\n    from rql.sub import b\n    from rql.space import e\n")
    (pkg / "sub" / "__init__.py").write_text("from .b import g\n")
    (pkg / "sub" / "b.py").write_text("from .. import c\nfrom rql.sub import g2\n")
    (pkg / "c.py").write_text("import rql.sub.b as b\n")
    (pkg / "inner" / "__init__.py").write_text("from rql.inner.x import h\n")
    (pkg / "inner" / "x.py").write_text("from . import y\n")
    (pkg / "inner" / "y.py").write_text("import rql.inner.z\n")
    (pkg / "inner" / "z.py").write_text("")
    (pkg / "space" / "e.py").write_text("")
    graph = import_graph(pkg)
    assert graph["rql.a"] == {"rql.sub", "rql.sub.b", "rql.space.e"}
    assert graph["rql.sub"] == {"rql.sub.b"}
    assert graph["rql.sub.b"] == {"rql.c", "rql.sub"}  # names its package's __init__, which imports it back
    assert graph["rql.c"] == {"rql.sub", "rql.sub.b"}
    # a submodule importing a sibling does not depend on its package's __init__, which imports it
    assert graph["rql.inner"] == {"rql.inner.x"} and graph["rql.inner.x"] == {"rql.inner.y"}
    assert graph["rql.inner.y"] == {"rql.inner.z"}
    assert find_cycles(graph) == [["rql.c", "rql.sub.b", "rql.c"]]  # one group: rql.c, rql.sub, rql.sub.b


def test_no_module_takes_part_in_an_import_circle():
    cycles = find_cycles(import_graph())
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)
