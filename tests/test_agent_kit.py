"""One agent kit: no agent module imports another agent module.

An agent module is a module of ``rql.agents`` that defines ``make`` or ``specs``, bar the registry
(``rql.agents/__init__.py`` and ``rql.agents.extra``, whose job is to import the agents). Shared pieces
come from ``rql.agents.kit`` (or ``rql.agents.base``). Imports inside functions count too.
"""

from __future__ import annotations

import ast
import pathlib

import rql.agents

AGENTS_DIR = pathlib.Path(rql.agents.__file__).parent
REGISTRY_MODULES = {"__init__", "extra"}


def defines_agent(tree: ast.Module) -> bool:
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name in ("make", "specs")
               for n in tree.body)


def imported_modules(tree: ast.Module) -> list[tuple[int, str]]:
    """``(line, name)`` of each module of ``rql.agents`` an import names, anywhere in the tree."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from .x import y
                base = "rql.agents" + (f".{node.module}" if node.module else "")
            else:
                base = node.module or ""
            out.append((node.lineno, base))
            if base == "rql.agents":  # from rql.agents import fql
                out += [(node.lineno, f"rql.agents.{a.name}") for a in node.names]
    return [(line, name) for line, name in out if name.startswith("rql.agents.")]


def agent_import_violations(agents_dir: pathlib.Path) -> list[str]:
    trees = {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(agents_dir.glob("*.py"))}
    agents = {name for name, tree in trees.items() if defines_agent(tree) and name not in REGISTRY_MODULES}
    forbidden = agents | (REGISTRY_MODULES - {"__init__"})
    bad = []
    for name in sorted(agents):
        for line, mod in imported_modules(trees[name]):
            target = mod.split(".")[2]
            if target in forbidden and target != name:
                bad.append(f"{name}.py:{line} imports rql.agents.{target}")
    return bad


def test_agent_modules_are_found():
    trees = {p.stem: ast.parse(p.read_text()) for p in AGENTS_DIR.glob("*.py")}
    agents = {n for n, t in trees.items() if defines_agent(t)} - REGISTRY_MODULES
    assert {"rql", "flow_bc", "fql", "ifql", "rebrac", "fbrac", "fawac", "fedit", "dsrl", "qam", "bam", "cgql",
            "qsm_dac"} <= agents
    assert "kit" not in agents and "base" not in agents


def test_no_agent_module_imports_another():
    bad = agent_import_violations(AGENTS_DIR)
    assert not bad, "agent modules must take shared pieces from rql.agents.kit, not from each other:\n" + "\n".join(bad)


def test_kit_holds_the_shared_pieces():
    from rql.agents import kit

    for name in kit.__all__:
        assert hasattr(kit, name), name
